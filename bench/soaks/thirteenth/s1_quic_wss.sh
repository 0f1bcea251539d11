#!/bin/bash
# Scenario 1: QUIC + wss bots (arena and relay) on a 3-node cluster with QUIC on;
# node 3 SIGKILLed at ~60 s and restarted 10 s later; node 2 SIGTERMed at ~140 s and restarted.
# Usage: D=/tmp/soak13/s1 RP=6481 ./s1_quic_wss.sh  (Redis + nodes started by this script unless NOSTART=1)
set -u
HERE=$(cd "$(dirname "$0")" && pwd); source "$HERE/common.sh"
DUR=${DUR:-240}; P=${P:-780}   # node ports ${P}1..${P}3
mkdir -p "$D"; cd "$D"
if [ -z "${NOSTART:-}" ]; then start_redis $RP; for n in 1 2 3; do start_node $n $P$n $RP; done; fi
PORTS="${P}1 ${P}2 ${P}3"
Q="--url quic://127.0.0.1:${P}1 --url quic://127.0.0.1:${P}2 --url quic://127.0.0.1:${P}3"
W="--url wss://127.0.0.1:${P}1/ws --url wss://127.0.0.1:${P}2/ws --url wss://127.0.0.1:${P}3/ws"
COMMON="--cert $D/tickrelay-dev-cert.pem --members 8 --input-rate 10 --churn 0.3 --churn-resume-share 0.6 --expect-node-loss --duration-secs $DUR --ramp-up-secs 10 --progress-secs 20"
snapshot before-bots $PORTS
for f in "q-arena arena 5" "q-relay relay 4" "w-arena arena 4" "w-relay relay 4"; do
  read name type rooms <<<"$f"
  case $name in q-*) U=$Q;; w-*) U=$W;; esac
  timeout $((DUR+60)) $BIN/tickrelay-bots $U $COMMON --rooms $rooms --room-type $type --room-prefix $name --json $D/bots-$name.json >$D/bots-$name.out 2>$D/bots-$name.err &
  echo $! >$D/pids/bots-$name.pid
done
log "bots started"
sleep 50; snapshot t50-steady $PORTS
sleep 10; log "SIGKILL node3 pid $(nodepid 3)"; kill -KILL $(nodepid 3)
sleep 10; start_node 3 ${P}3 $RP
sleep 20; snapshot t90 $PORTS
sleep 50; log "SIGTERM node2 pid $(nodepid 2)"; kill -TERM $(nodepid 2)
for i in $(seq 1 15); do kill -0 $(nodepid 2) 2>/dev/null || break; sleep 1; done; log "node2 exited after ~${i}s"
sleep 5; start_node 2 ${P}2 $RP
for f in q-arena q-relay w-arena w-relay; do wait $(cat $D/pids/bots-$f.pid); echo "$f exit $?" >>$D/events.log; done
log "all bots finished"
snapshot bots-done $PORTS
sleep 15; snapshot plus15s $PORTS
sleep 40; snapshot plus55s $PORTS
