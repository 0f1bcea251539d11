#!/bin/bash
# Shared helpers (sourced). Binaries are copies in $SOAK/bin (SOAK: /tmp/soak13 by default; the rerun
# used /tmp/soak13b); runtime state in $D.
SOAK=${SOAK:-/tmp/soak13}
BIN=$SOAK/bin
ts() { date +%T; }
log() { echo "$(ts) $*" | tee -a "$D/events.log"; }
start_redis() { # PORT
  mkdir -p "$D/pids"
  (cd "$D" && timeout 2400 redis-server --port "$1" --bind 127.0.0.1 --save "" --appendonly no >>"$D/redis.log" 2>&1 & echo $! >"$D/pids/redis.timeout")
  until redis-cli -p "$1" ping >/dev/null 2>&1; do sleep 0.1; done
  realpid "$(cat $D/pids/redis.timeout)" redis-server >"$D/pids/redis.pid"
}
start_node() { # N PORT REDISPORT [extra args...]
  local n=$1 port=$2 rp=$3; shift 3
  mkdir -p "$D/pids"
  echo "=== start $(ts) ===" >>"$D/node$n.log"; local from=$(wc -l <"$D/node$n.log")
  (cd "$D" && timeout 2400 "$BIN/tickrelay" --cluster "redis://127.0.0.1:$rp" --listen "127.0.0.1:$port" "$@" >>"$D/node$n.log" 2>&1 & echo $! >"$D/pids/node$n.timeout")
  local t=$(cat "$D/pids/node$n.timeout") c=""
  for i in $(seq 1 100); do c=$(realpid "$t" tickrelay); [ -n "$c" ] && break; sleep 0.05; done
  echo "$c" >"$D/pids/node$n.pid"
  for i in $(seq 1 100); do tail -n +$from "$D/node$n.log" | grep -q "listening on" && break; kill -0 "$c" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$c" 2>/dev/null; then log "node$n started pid $c port $port"; else log "node$n FAILED to start: $(tail -n 3 $D/node$n.log)"; fi
}
# realpid PID COMM: the descendant of PID whose command is COMM (past the subshell and timeout)
realpid() {
  local p=$1
  for i in 1 2 3 4; do
    [ "$(cat /proc/$p/comm 2>/dev/null)" = "$2" ] && { echo $p; return; }
    p=$(pgrep -P "$p" | head -1); [ -z "$p" ] && return
  done
}
nodepid() { cat "$D/pids/node$1.pid"; }
# snapshot LABEL PORTS... : RSS, fds, gauges of each node, Redis key counts
snapshot() {
  local label=$1; shift
  {
    echo "## $label $(ts)"
    local n=1
    for port in "$@"; do
      local pid=$(nodepid $n)
      if kill -0 "$pid" 2>/dev/null; then
        echo "node$n pid=$pid rss_kb=$(awk '/VmRSS/{print $2}' /proc/$pid/status) fds=$(ls /proc/$pid/fd | wc -l) threads=$(awk '/Threads/{print $2}' /proc/$pid/status)"
        curl -sk --max-time 3 "https://127.0.0.1:$port/metrics" ${METRICS_HTTP:+} | grep -E '^tickrelay_[a-z_]+(\{[^}]*\})? ' | \
          grep -E '^tickrelay_(sessions|connections|rooms|members|parked|quic|directory_up|sessions_parked|open)[a-z_]*( |\{)|_total\{code="(1001|1013|4002|4500|4504|4000|1006|4501|4502)"|^tickrelay_(rooms_restored|sessions_moved|rooms_lost|directory_errors|resumes|redirects)_total' | \
          grep -v ' 0$' | sed "s/^/  node$n /"
      else echo "node$n pid=$pid not running"; fi
      n=$((n+1))
    done
    echo "redis dbsize=$(redis-cli -p $RP dbsize) keys: $(redis-cli -p $RP --scan --pattern '*' | awk -F: '{print $2}' | sort | uniq -c | tr '\n' ' ')"
  } | tee -a "$D/snapshots.txt"
}
# redis_numbers: the node-starts counter, the numbers in use and the node numbers Redis holds
redis_numbers() {
  echo "starts=$(redis-cli -p $RP get tickrelay:node-starts) in-use=$(redis-cli -p $RP zrange tickrelay:numbers-in-use 0 -1 withscores | tr '\n' ,) numbers=$(for k in $(redis-cli -p $RP --scan --pattern 'tickrelay:node-number:*'); do echo -n ${k##*:},; done)"
}
