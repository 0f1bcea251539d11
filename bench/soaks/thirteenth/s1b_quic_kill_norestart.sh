#!/bin/bash
# Scenario 1b: QUIC vs wss bots (arena and relay, no churn) on the running 3-node cluster of s1;
# node 3 SIGKILLed at ~30 s and NOT restarted until the bots finish (RESTART_AFTER=N restarts it N s after the kill).
# (run b1 had node 1's URL first: no room opened on node 3, so the kill hit no room.)
# Usage: D=/tmp/soak13/s1 RP=6481 P=780 TAG=b1 ./s1b_quic_kill_norestart.sh
set -u
HERE=$(cd "$(dirname "$0")" && pwd); source "$HERE/common.sh"
DUR=${DUR:-100}; P=${P:-780}; TAG=${TAG:-b1}
cd "$D"
PORTS="${P}1 ${P}2 ${P}3"
# node 3's URL first: the first bot of every room (members 6) uses the first URL, so every room opens on node 3
Q="--url quic://127.0.0.1:${P}3 --url quic://127.0.0.1:${P}1 --url quic://127.0.0.1:${P}2"
W="--url wss://127.0.0.1:${P}3/ws --url wss://127.0.0.1:${P}1/ws --url wss://127.0.0.1:${P}2/ws"
COMMON="--cert $D/tickrelay-dev-cert.pem --members 6 --input-rate 10 --expect-node-loss --duration-secs $DUR --ramp-up-secs 5 --progress-secs 5"
for f in "$TAG-qa arena 3 Q" "$TAG-qr relay 3 Q" "$TAG-wa arena 3 W"; do
  read name type rooms tr <<<"$f"; [ $tr = Q ] && U=$Q || U=$W
  timeout $((DUR+60)) $BIN/tickrelay-bots $U $COMMON --rooms $rooms --room-type $type --room-prefix $name --json $D/bots-$name.json >$D/bots-$name.out 2>$D/bots-$name.err &
  echo $! >$D/pids/bots-$name.pid
done
log "$TAG bots started"
sleep 30; snapshot $TAG-before-kill $PORTS
for p in $PORTS; do echo "$p: $(curl -sk https://127.0.0.1:$p/metrics | grep -E '^tickrelay_rooms ')"; done | tee -a $D/events.log
SIG=${SIG:-KILL}   # SIG=TERM: a rolling-restart stop instead
log "$TAG SIG$SIG node3 pid $(nodepid 3)"; kill -$SIG $(nodepid 3)
if [ -n "${RESTART_AFTER:-}" ]; then sleep $RESTART_AFTER; start_node 3 ${P}3 $RP; fi
for f in qa qr wa; do wait $(cat $D/pids/bots-$TAG-$f.pid); echo "$TAG-$f exit $?" >>$D/events.log; done
log "$TAG bots finished"
kill -0 $(nodepid 3) 2>/dev/null || start_node 3 ${P}3 $RP
