#!/bin/bash
# start.sh [N] [CONFIG]: a fresh Redis on 127.0.0.1:6390 and N (default 3) cluster nodes
# on 127.0.0.1:7601..760N (plain ws://, node ids n1..nN, API token attack6-api-token-0123456789abcdef),
# from this directory; pids in redis.pid and node1.pid..; logs in out/node*.log.
# stop.sh stops them. CONFIG: an optional TOML file for every node.
set -e
cd "$(dirname "$0")"
N=${1:-3}
CONF=${2:-}
mkdir -p out
BIN=../../../target/release/tickrelay
redis-cli -p 6390 shutdown nosave >/dev/null 2>&1 || true
sleep 0.3
redis-server --port 6390 --bind 127.0.0.1 --save "" --appendonly no --enable-debug-command local --daemonize yes \
  --pidfile "$PWD/redis.pid" --logfile "$PWD/out/redis.log" >/dev/null
sleep 0.5
for i in $(seq 1 "$N"); do
  port=$((7600 + i))
  args=(--insecure-plain --listen 127.0.0.1:$port --cluster redis://127.0.0.1:6390
        --node-id n$i --public-url ws://127.0.0.1:$port/ws --log "${LOG:-warn}")
  [ -n "$CONF" ] && args+=(-c "$CONF")
  TICKRELAY_API_TOKEN=attack6-api-token-0123456789abcdef $BIN "${args[@]}" > out/node$i.log 2>&1 &
  echo $! > node$i.pid
done
sleep 1.5
for i in $(seq 1 "$N"); do
  curl -s -m 2 http://127.0.0.1:$((7600 + i))/healthz >/dev/null && echo "node$i up pid $(cat node$i.pid)" || echo "node$i DOWN"
done
