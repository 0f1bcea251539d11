#!/bin/bash
# Relay A: plain ws on 7710 (defaults). Relay B: TLS + QUIC on 7711 (defaults, dev cert in /tmp/soak7/b)
cd /tmp/soak7
timeout -s INT 3600 /work/main/target/release/tickrelay --insecure-plain --listen 127.0.0.1:7710 > relayA.log 2>&1 &
echo $! > relayA.timeout.pid
cd /tmp/soak7/b
timeout -s INT 3600 /work/main/target/release/tickrelay --listen 127.0.0.1:7711 > ../relayB.log 2>&1 &
echo $! > ../relayB.timeout.pid
