#!/bin/bash
# Run M: Listing.changed_keys on a single node. Control (MODE=same) 60 s, then new key names 120 s, hold 30 s, close, wait 45 s. ~280 s.
cd /tmp/h25/run
/tmp/h25/tickrelay --insecure-plain --listen 127.0.0.1:7926 > /tmp/h25/relayM.log 2>&1 &
PID=$!; echo $PID > /tmp/h25/relayM.pid
sleep 1.5
python3 /tmp/h25/mon.py $PID 7926 285 /tmp/h25/monM.csv 5 > /tmp/h25/monM.txt 2>&1 &
MON=$!
sleep 10
cd /tmp/h25
PORT=7926 MODE=same SECS=60 N=4 RATE=25 python3 meta_leak.py > /tmp/h25/metaM_same.txt 2>&1
sleep 5
PORT=7926 SECS=120 N=4 RATE=25 HOLD=30 python3 meta_leak.py > /tmp/h25/metaM_new.txt 2>&1
wait $MON
kill $PID; wait $PID
echo done
