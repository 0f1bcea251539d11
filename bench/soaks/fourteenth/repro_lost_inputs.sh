#!/bin/bash
# repro_lost_inputs.sh: the smallest s2c. One relay room of 3 bots (no churn), bot 0 homed on node 3 (URL order
# node3,node1,node2), so the room lives on node 3. At +20 s node 3 is SIGKILLed, 1 s later Redis is SIGKILLed,
# DOWN s later Redis starts EMPTY, 3 s later node 3 starts again. Bots play 70 s. Prints the bots' report.
# Usage: D=/tmp/soak14/rl RP=6498 P=797 DOWN=8 ./repro_lost_inputs.sh
set -u
HERE=$(cd "$(dirname "$0")" && pwd); source "$HERE/common.sh"
DOWN=${DOWN:-8}; KILL3=${KILL3:-1}
mkdir -p "$D"; cd "$D"
start_redis $RP; for n in 1 2 3; do start_node $n $P$n $RP; done
W="--url wss://127.0.0.1:${P}3/ws --url wss://127.0.0.1:${P}1/ws --url wss://127.0.0.1:${P}2/ws"
timeout 130 $BIN/tickrelay-bots $W --cert $D/tickrelay-dev-cert.pem --members 3 --rooms 1 --room-type relay --room-prefix rl \
  --input-rate 10 --churn 0 --expect-node-loss --duration-secs 70 --ramp-up-secs 2 --progress-secs 5 --json $D/bots.json >$D/bots.out 2>$D/bots.err &
BP=$!; log "bots started"
sleep 20
[ "$KILL3" = 1 ] && { log "SIGKILL node3"; kill -KILL $(nodepid 3); sleep 1; }
log "SIGKILL redis"; kill -KILL $(cat $D/pids/redis.pid)
sleep $DOWN
log "start redis EMPTY"; start_redis $RP
sleep 3; [ "$KILL3" = 1 ] && start_node 3 ${P}3 $RP
wait $BP; log "bots exit $?"
grep -E "inputs (sent|lost)|server errors|rolled|reconnects|VIOL|OK" $D/bots.out
bash $HERE/stop_all.sh $D >/dev/null
