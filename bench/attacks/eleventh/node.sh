#!/bin/bash
# node.sh I [stop|kill|start]: stop (SIGTERM), kill (SIGKILL) or start node I (same id, port) of start.sh
HERE=$(cd "$(dirname "$0")" && pwd); BIN=${BIN:-$HERE/../../../target/release}; RUN=${RUN:-/tmp/tickrelay-attack11}; mkdir -p "$RUN"; cd "$RUN"
i=$1; port=$((7810 + i))
export TICKRELAY_JWT_SECRET=attack11-secret-0123456789abcdef0123456789
export TICKRELAY_API_TOKEN=attack11-api-token-0123456789abcdef
case $2 in
 stop) kill -TERM $(cat node$i.pid) ;;
 kill) kill -KILL $(cat node$i.pid) ;;
 start)
  timeout ${TTL:-3000} $BIN/tickrelay --insecure-plain --listen 127.0.0.1:$port --cluster redis://127.0.0.1:6411 \
     --node-id n$i --public-url ws://127.0.0.1:$port/ws --auth jwt --metrics-listen 127.0.0.1:$((7910+i)) \
     --log ${LOG:-info} ${EXTRA:-} >> node$i.log 2>&1 &
  tp=$!; sleep 0.3; pgrep -P $tp > node$i.pid; echo "n$i pid $(cat node$i.pid)" ;;
esac
