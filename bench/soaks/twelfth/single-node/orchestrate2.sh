#!/bin/bash
cd /tmp/soak7
while [ ! -f end.start ]; do sleep 2; done
for r in 1 2 3; do
  echo r$r > phase; date +%T > r$r.start; timeout 300 ./phase1r.sh r$r > r$r.log 2>&1
  echo rq$r > phase; date +%T > rq$r.start; sleep 75
done
echo end2 > phase; date +%T > end2.start
