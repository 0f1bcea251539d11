#!/bin/bash
# Scenario 1c: churn only (no node fault): QUIC and wss arena bots, churn 0.3 with resume share 0.6,
# on the running cluster of s1. Isolates the "inputs rolled back" seen over QUIC in s1.
# Usage: D=/tmp/soak13/s1 RP=6481 P=780 TAG=c1 ./s1c_churn_only.sh
set -u
HERE=$(cd "$(dirname "$0")" && pwd); source "$HERE/common.sh"
DUR=${DUR:-90}; P=${P:-780}; TAG=${TAG:-c1}
cd "$D"
Q="--url quic://127.0.0.1:${P}1 --url quic://127.0.0.1:${P}2 --url quic://127.0.0.1:${P}3"
W="--url wss://127.0.0.1:${P}1/ws --url wss://127.0.0.1:${P}2/ws --url wss://127.0.0.1:${P}3/ws"
COMMON="--cert $D/tickrelay-dev-cert.pem --members 8 --input-rate 10 --churn 0.3 --churn-resume-share ${RESUME_SHARE:-0.6} --duration-secs $DUR --ramp-up-secs 5 --progress-secs 30 --expect-node-loss"   # (no node is lost: the flag only makes the report show rolled-back inputs)
timeout $((DUR+60)) $BIN/tickrelay-bots $Q $COMMON --rooms 4 --room-type arena --room-prefix $TAG-qa >$D/bots-$TAG-qa.out 2>$D/bots-$TAG-qa.err &
a=$!
timeout $((DUR+60)) $BIN/tickrelay-bots $W $COMMON --rooms 4 --room-type arena --room-prefix $TAG-wa >$D/bots-$TAG-wa.out 2>$D/bots-$TAG-wa.err &
b=$!
wait $a $b
for f in qa wa; do echo "== $TAG-$f"; grep -E 'reconnects|resumed|replaced|lost with|rolled|OK|VIOL' $D/bots-$TAG-$f.out; done
