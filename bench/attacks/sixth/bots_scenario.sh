#!/bin/bash
# bots_scenario.sh SCENARIO: honest load (tickrelay-bots: ROOMS rooms x MEMBERS arena bots,
# 10 inputs/s, a quarter verifying checksums) over the 3 nodes start.sh started, for
# DUR s (default 60), with, at t=AT s (default 20):
#   sleep    redis-cli debug sleep 10 (Redis stalls longer than a lease)
#   restart  Redis shut down (nosave) and started again empty on the same port
#   sigterm  node 1 gets SIGTERM (GoingAway, then 1001)
#   none     nothing
# Prints the bots' report, node metrics and where each room is (Redis and nodes).
# Outputs in out/bots-SCENARIO.*. Bounded: DUR + 30 s.
cd "$(dirname "$0")"
S=${1:-none}; DUR=${DUR:-60}; AT=${AT:-20}; ROOMS=${ROOMS:-12}; MEMBERS=${MEMBERS:-20}
BOTS=../../../target/release/tickrelay-bots
EXTRA=()
[ "$S" = sigterm ] && EXTRA=(--expect-node-loss)
metrics() {
  for p in 7601 7602 7603; do
    echo "node $p: $(curl -s -m 2 http://127.0.0.1:$p/metrics | grep -E '^tickrelay_(rooms|members|connections|rooms_lost_total|rooms_restored_total|sessions_moved_total|directory_errors_total|directory_up|checkpoints_written_total|checkpoints_skipped_total|redirects_total) ' | tr '\n' ' ')"
  done
}
echo "== before"; metrics
timeout $((DUR + 20)) $BOTS --url ws://127.0.0.1:7601/ws --url ws://127.0.0.1:7602/ws --url ws://127.0.0.1:7603/ws \
  --rooms $ROOMS --members $MEMBERS --room-type arena --input-rate 10 --duration-secs $DUR --ramp-up-secs 5 \
  --verify-share 0.25 --progress-secs 5 --room-prefix b$S "${EXTRA[@]}" --json out/bots-$S.json > out/bots-$S.log 2>&1 &
BP=$!
sleep "$AT"
echo "== t=$AT s: $S"; metrics
case "$S" in
  sleep) redis-cli -p 6390 debug sleep 10 ;;
  restart) redis-cli -p 6390 shutdown nosave; sleep 0.5
           redis-server --port 6390 --bind 127.0.0.1 --save "" --appendonly no --enable-debug-command local --daemonize yes \
             --pidfile "$PWD/redis.pid" --logfile "$PWD/out/redis.log" ;;
  sigterm) kill -TERM "$(cat node1.pid)" ;;
esac
sleep 8
echo "== 8 s after the $S command returned"; metrics
wait $BP
echo "== end"; metrics
echo "== room owners in Redis / rooms per node"
for i in $(seq 0 $((ROOMS - 1))); do printf "b$S-$i:%s " "$(redis-cli -p 6390 hget tickrelay:room:b$S-$i node)"; done; echo
grep -vE '^\s*$' out/bots-$S.log | tail -n 40
