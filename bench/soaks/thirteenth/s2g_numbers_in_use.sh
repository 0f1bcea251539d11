#!/bin/bash
# s2g (rerun only): does numbers-in-use keep a dead node's number from a new node start after an empty Redis restart?
# Node 3 SIGKILLed under wss bots; once its sessions are continued on nodes 1/2, Redis is SIGKILLed and started
# empty; 3 s later the node-starts counter is set so that the NEXT number drawn is the dead node's, and node 3 started.
# Usage: D=/tmp/soak13b/s2g RP=6489 P=788 ./s2g_numbers_in_use.sh
set -u
HERE=$(cd "$(dirname "$0")" && pwd); source "$HERE/common.sh"
mkdir -p "$D"; cd "$D"
start_redis $RP; for n in 1 2 3; do start_node $n $P$n $RP; done
nums() { echo "in-use=$(redis-cli -p $RP zrange tickrelay:numbers-in-use 0 -1 withscores | tr '\n' ,) numbers=$(for k in $(redis-cli -p $RP --scan --pattern 'tickrelay:node-number:*'); do echo -n ${k##*:}=$(redis-cli -p $RP get $k | sed 's#.*:##; s#/ws##'),; done) starts=$(redis-cli -p $RP get tickrelay:node-starts)"; }
W="--url wss://127.0.0.1:${P}3/ws --url wss://127.0.0.1:${P}1/ws --url wss://127.0.0.1:${P}2/ws"
timeout 150 $BIN/tickrelay-bots $W --cert $D/tickrelay-dev-cert.pem --members 6 --rooms 2 --room-type arena --room-prefix g --input-rate 5 --expect-node-loss --duration-secs 75 --ramp-up-secs 3 --progress-secs 10 --json $D/bots-g.json >$D/bots-g.out 2>$D/bots-g.err &
BP=$!
sleep 15; log "before kill: $(nums)"
DEAD=$(for k in $(redis-cli -p $RP --scan --pattern 'tickrelay:node-number:*'); do [ "$(redis-cli -p $RP get $k | grep -c ":${P}3/")" = 1 ] && echo ${k##*:}; done)
LIVE2=$(for k in $(redis-cli -p $RP --scan --pattern 'tickrelay:node-number:*'); do [ "$(redis-cli -p $RP get $k | grep -c ":${P}2/")" = 1 ] && echo ${k##*:}; done)
log "node3's number: $DEAD, node2's: $LIVE2; SIGKILL node3"; kill -KILL $(nodepid 3)
sleep 12; log "12 s after kill: $(nums); continued: $(cat node1.log node2.log | grep -c 'session continued')"
log "SIGKILL redis"; kill -KILL $(cat $D/pids/redis.pid); sleep 5
start_redis $RP; log "redis back EMPTY: $(nums)"
if [ -n "${NODELAY:-}" ]; then
  # the documented window: no wait, and the next draw aimed at LIVE node 2's number
  TARGET=$(for k in $(redis-cli -p $RP --scan --pattern 'tickrelay:node-number:*' 2>/dev/null); do :; done; echo $LIVE2)
else sleep 3; log "3 s later: $(nums)"; TARGET=$DEAD; fi
redis-cli -p $RP set tickrelay:node-starts $((TARGET - 1)) >/dev/null; log "node-starts set to $((TARGET - 1)) (next draw = $TARGET): $(nums)"
start_node 3 ${P}3 $RP
log "after node3' start: $(nums)"
python3 $HERE/sessid_probe.py ${P}1 ${P}2 ${P}3 | tee -a $D/events.log
sleep 5; log "5 s later: $(nums)"; python3 $HERE/sessid_probe.py ${P}1 ${P}2 ${P}3 | tee -a $D/events.log
wait $BP; log "bots exit $?"; grep -h "held by another\|collide" node*.log | cut -c1-220 | tee -a $D/events.log
