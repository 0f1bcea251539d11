#!/bin/bash
mkdir -p /tmp/rk && cd /tmp/rk && rm -f ./*.log
B=/work/main/target/release
redis-server --port 6471 --bind 127.0.0.1 --save "" --appendonly no --daemonize yes --logfile /tmp/rk/redis.log
sleep 0.5
for i in 1 2 3; do
  timeout 90 $B/tickrelay --insecure-plain --listen 127.0.0.1:748$i --cluster redis://127.0.0.1:6471 --node-id n$i --public-url ws://127.0.0.1:748$i/ws > n$i.log 2>&1 &
  echo $! > n$i.pid
done
sleep 2
timeout 80 $B/tickrelay-bots --url ws://127.0.0.1:7481/ws --url ws://127.0.0.1:7482/ws --url ws://127.0.0.1:7483/ws --rooms 6 --members 10 --room-type relay --input-rate 10 --churn 0.3 --expect-node-loss --duration-secs 60 > bots.log 2>&1 &
BOTS=$!
sleep 25
pkill -9 -f "tickrelay --insecure-plain --listen 127.0.0.1:7483"
sleep 9
timeout 50 $B/tickrelay --insecure-plain --listen 127.0.0.1:7483 --cluster redis://127.0.0.1:6471 --node-id n3 --public-url ws://127.0.0.1:7483/ws > n3b.log 2>&1 &
wait $BOTS
grep -E "VIOLATED|OK:|rolled|node losses|unexpected|server errors|players" bots.log
grep -c "restored from its checkpoint" n1.log n2.log
pkill -f "cluster redis://127.0.0.1:6471"; redis-cli -p 6471 shutdown nosave
