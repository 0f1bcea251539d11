#!/bin/bash
cd /tmp/soak7
while [ ! -f p1a/DONE ]; do sleep 2; done
echo q1 > phase; date +%T > q1.start; sleep 120
echo p1b > phase; date +%T > p1b.start; timeout 420 ./phase1.sh p1b > p1b.log 2>&1
echo q2 > phase; date +%T > q2.start; sleep 120
echo p2 > phase; date +%T > p2.start
PORT=7710 TLS_PORT=7711 DURATION=330 timeout 420 python3 oddclient.py > p2.out 2> p2.err
echo q3 > phase; date +%T > q3.start; sleep 185
echo end > phase; date +%T > end.start
