#!/bin/bash
# start.sh [N]: redis on 127.0.0.1:6411, N nodes (default 3) on 127.0.0.1:7811.. plain ws,
# jwt auth (secret below), api token, metrics listener of node i on 79(10+i).
set -e
HERE=$(cd "$(dirname "$0")" && pwd); BIN=${BIN:-$HERE/../../../target/release}; RUN=${RUN:-/tmp/tickrelay-attack11}; mkdir -p "$RUN"; cd "$RUN"
N=${1:-3}
export TICKRELAY_JWT_SECRET=attack11-secret-0123456789abcdef0123456789
export TICKRELAY_API_TOKEN=attack11-api-token-0123456789abcdef
redis-cli -p 6411 shutdown nosave >/dev/null 2>&1 || true
sleep 0.3
redis-server --port 6411 --bind 127.0.0.1 --save '' --appendonly no --daemonize yes --pidfile $RUN/redis.pid --logfile $RUN/redis.log >/dev/null
sleep 0.5
for i in $(seq 1 "$N"); do
  port=$((7810 + i))
  timeout ${TTL:-3000} $BIN/tickrelay --insecure-plain --listen 127.0.0.1:$port --cluster redis://127.0.0.1:6411 \
     --node-id n$i --public-url ws://127.0.0.1:$port/ws --auth jwt --metrics-listen 127.0.0.1:$((7910+i)) \
     --log ${LOG:-info} ${EXTRA:-} > node$i.log 2>&1 &
  tp=$!; sleep 0.2; pgrep -P $tp > node$i.pid
done
sleep 1.5
for i in $(seq 1 "$N"); do
  curl -s -m 2 http://127.0.0.1:$((7810 + i))/healthz >/dev/null && echo "node$i up pid $(cat node$i.pid)" || echo "node$i DOWN"
done
