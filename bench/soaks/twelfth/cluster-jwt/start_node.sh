#!/bin/bash
# usage: start_node.sh N  (appends to node$N.log)
n=$1; port=$((7460 + n))
cd /tmp/soak8
echo "=== start $(date +%T)" >> node$n.log
timeout 1500 /work/main/target/release/tickrelay --cluster redis://127.0.0.1:6413 --node-id n$n --public-url ws://127.0.0.1:$port/ws --listen 127.0.0.1:$port --insecure-plain >> node$n.log 2>&1 &
echo $! > pids/node$n.pid
