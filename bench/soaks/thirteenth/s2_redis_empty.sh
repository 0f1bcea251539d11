#!/bin/bash
# Scenario 2: Redis SIGKILLed at ~60 s and started again EMPTY on the same port ~8 s later, while 3 nodes
# and wss bots (arena + relay, churn) run; node 3 restarted right after Redis is back
# (MODE=term: SIGTERM TERM_DELAY s (default 1) after Redis is back, then start; MODE=kill: SIGKILL node 3 while Redis is down, start it once Redis is back).
# PROBE=1: right after node 3 restarts, one client joins every room through node 3 (probe_joins.py).
# Usage: D=/tmp/soak13/s2a RP=6483 P=782 MODE=term ./s2_redis_empty.sh
set -u
HERE=$(cd "$(dirname "$0")" && pwd); source "$HERE/common.sh"
DUR=${DUR:-200}; TERM_DELAY=${TERM_DELAY:-1}; P=${P:-782}; MODE=${MODE:-term}
mkdir -p "$D"; cd "$D"
start_redis $RP; for n in 1 2 3; do start_node $n $P$n $RP; done
PORTS="${P}1 ${P}2 ${P}3"
W="--url wss://127.0.0.1:${P}1/ws --url wss://127.0.0.1:${P}2/ws --url wss://127.0.0.1:${P}3/ws"
COMMON="--cert $D/tickrelay-dev-cert.pem --members 8 --input-rate 10 --churn 0.3 --churn-resume-share 0.5 --expect-node-loss --duration-secs $DUR --ramp-up-secs 10 --progress-secs 10"
for f in "r2-arena arena 6" "r2-relay relay 5"; do
  read name type rooms <<<"$f"
  timeout $((DUR+60)) $BIN/tickrelay-bots $W $COMMON --rooms $rooms --room-type $type --room-prefix $name --json $D/bots-$name.json >$D/bots-$name.out 2>$D/bots-$name.err &
  echo $! >$D/pids/bots-$name.pid
done
log "bots started"
sleep 45; snapshot t45-steady $PORTS
bash $HERE/watch_owners.sh $((75+TERM_DELAY)) 0.5 $PORTS &
sleep 10
[ "$MODE" = kill ] && { log "SIGKILL node3 pid $(nodepid 3) (Redis still up)"; kill -KILL $(nodepid 3); sleep 1; }
log "SIGKILL redis pid $(cat $D/pids/redis.pid)"; kill -KILL $(cat $D/pids/redis.pid)
sleep 8
log "start redis EMPTY"; start_redis $RP; log "redis back (dbsize $(redis-cli -p $RP dbsize))"
sleep ${TERM_DELAY:-1}
if [ "$MODE" = term ]; then
  log "SIGTERM node3 pid $(nodepid 3)"; kill -TERM $(nodepid 3)
  for i in $(seq 1 15); do kill -0 $(nodepid 3) 2>/dev/null || break; sleep 0.5; done; log "node3 exited"
fi
start_node 3 ${P}3 $RP
log "redis: $(redis_numbers)"
ROOMS="$(for i in 0 1 2 3 4 5; do echo -n "r2-arena-$i:arena "; done; for i in 0 1 2 3 4; do echo -n "r2-relay-$i:relay "; done)"
[ -n "${PROBE:-}" ] && python3 $HERE/probe_joins.py ${P}3 $ROOMS | tee -a $D/events.log
python3 $HERE/sessid_probe.py $PORTS | tee -a $D/events.log; for n in 1 2 3; do echo "node$n session continued: $(grep -c "session continued" $D/node$n.log)"; done | tee -a $D/events.log
sleep 3; log "redis +3s: $(redis_numbers)"
sleep 7; snapshot after-redis-restart $PORTS
sleep 20; snapshot after-redis-restart+30s $PORTS
python3 $HERE/sessid_probe.py $PORTS | tee -a $D/events.log; for n in 1 2 3; do echo "node$n session continued: $(grep -c "session continued" $D/node$n.log)"; done | tee -a $D/events.log
for f in r2-arena r2-relay; do wait $(cat $D/pids/bots-$f.pid); echo "$f exit $?" >>$D/events.log; done
log "all bots finished"
snapshot bots-done $PORTS
sleep 55; snapshot plus55s $PORTS
