#!/bin/bash
# Run D: is the changed_keys memory given back when the room closes? 40 s of new keys, close, rooms close (30 s ttl), 40 s again. ~150 s.
cd /tmp/h25/run
/tmp/h25/tickrelay --insecure-plain --listen 127.0.0.1:7933 > /tmp/h25/relayD.log 2>&1 &
PID=$!
sleep 1.5
python3 /tmp/h25/mon.py $PID 7933 150 /tmp/h25/monD.csv 5 > /tmp/h25/monD.txt 2>&1 &
MON=$!
sleep 5
cd /tmp/h25
PORT=7933 SECS=40 N=4 RATE=25 python3 meta_leak.py > /tmp/h25/metaD1.txt 2>&1
sleep 40
PORT=7933 SECS=40 N=4 RATE=25 python3 meta_leak.py > /tmp/h25/metaD2.txt 2>&1
wait $MON
kill $PID; wait $PID
echo done
