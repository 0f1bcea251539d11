#!/bin/bash
cd /tmp/soak7
m() { curl -s 127.0.0.1:7730/metrics | grep -E '^tickrelay_(connections|members|rooms|sessions_parked|sockets_refused_total|upgrades_refused_total|closes_total)' | grep -v ' 0$' | tr '\n' ' '; echo; }
sleep 35; echo "before odd: $(m)"
PORT=7730 TLS_PORT=7739 DURATION=120 timeout 200 python3 oddclient.py > drift/odd.out 2> drift/odd.err
echo "after odd: $(m)"; sleep 65; echo "after quiet 65s: $(m)"
PORT=7730 timeout 60 python3 drift/probe.py
sleep 40; echo "after probe2 +40s: $(m)"
