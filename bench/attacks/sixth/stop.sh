#!/bin/bash
# stop.sh: stops the nodes start.sh started (by their pids) and shuts Redis down.
cd "$(dirname "$0")"
for f in node*.pid; do
  [ -f "$f" ] || continue
  pid=$(cat "$f")
  kill -TERM "$pid" 2>/dev/null
done
for f in node*.pid; do
  [ -f "$f" ] || continue
  pid=$(cat "$f")
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  kill -KILL "$pid" 2>/dev/null
  rm -f "$f"
done
redis-cli -p 6390 shutdown nosave >/dev/null 2>&1
rm -f redis.pid
echo stopped
