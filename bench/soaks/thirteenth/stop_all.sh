#!/bin/bash
# stop_all.sh D : stops the nodes and Redis this run started (pids recorded in $D/pids), by pid only.
D=$1
for f in "$D"/pids/node*.pid "$D"/pids/redis.pid; do
  [ -f "$f" ] || continue; p=$(cat "$f"); [ -n "$p" ] || continue
  c=$(cat /proc/$p/comm 2>/dev/null)
  if [ "$c" = tickrelay ] || [ "$c" = redis-server ]; then kill -TERM $p; echo "stopped $c $p ($f)"; fi
done
sleep 3
for f in "$D"/pids/node*.pid "$D"/pids/redis.pid; do p=$(cat "$f" 2>/dev/null); c=$(cat /proc/$p/comm 2>/dev/null); { [ "$c" = tickrelay ] || [ "$c" = redis-server ]; } && { kill -KILL $p; echo "killed $c $p"; }; done
true
