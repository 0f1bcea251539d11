#!/bin/bash
# Phase 1 churn: ~330 s, <= ~240 bots in total. Usage: phase1.sh LABEL
L=$1; B=/work/main/target/release/tickrelay-bots; D=/tmp/soak7/$L; mkdir -p $D; cd $D
CERT=/tmp/soak7/b/tickrelay-dev-cert.pem
COMMON="--input-rate 10 --verify-share 0.25 --progress-secs 60 --ramp-up-secs 10"
# A (plain ws): arena 4x20 and relay 3x20, 0.6 churn/min, half resume (drop w/o close), half replaced (close 1000)
timeout -s KILL 400 $B --url ws://127.0.0.1:7710/ws --rooms 4 --members 20 --room-type arena --room-prefix p1-arena --churn 0.6 --duration-secs 180 $COMMON --json arenaA.json > arenaA.out 2>&1 &
timeout -s KILL 400 $B --url ws://127.0.0.1:7710/ws --rooms 3 --members 20 --room-type relay --room-prefix p1-relay --churn 0.6 --duration-secs 180 $COMMON --json relayA.json > relayA.out 2>&1 &
# B: QUIC arena 2x20 churn, wss relay 1x20 churn
timeout -s KILL 400 $B --url quic://127.0.0.1:7711 --cert $CERT --rooms 2 --members 20 --room-type arena --room-prefix p1-quic --churn 0.6 --duration-secs 180 $COMMON --json quicB.json > quicB.out 2>&1 &
timeout -s KILL 400 $B --url wss://127.0.0.1:7711/ws --cert $CERT --rooms 1 --members 20 --room-type relay --room-prefix p1-wssrelay --churn 0.6 --duration-secs 180 $COMMON --json wssB.json > wssB.out 2>&1 &
# Killed fleets (SIGKILL: every connection lost without a close, never resumed):
# A ws relay-type 2x20, and B QUIC arena 1x20, killed after 70-90 s, three times
for i in 1; do
  timeout -s KILL 80 $B --url ws://127.0.0.1:7710/ws --rooms 2 --members 20 --room-type relay --room-prefix p1-kill --duration-secs 200 $COMMON > killA.$i.out 2>&1 &
  k1=$!
  timeout -s KILL 90 $B --url quic://127.0.0.1:7711 --cert $CERT --rooms 1 --members 20 --room-type arena --room-prefix p1-killq --duration-secs 200 $COMMON > killB.$i.out 2>&1 &
  k2=$!
  wait $k1 $k2; sleep 10
done
wait
echo done > $D/DONE
