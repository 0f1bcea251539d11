#!/bin/bash
# Run B: JWT (HS256), duplicate_sessions=replace; churnB 150 s, wait 65 s. ~235 s.
cd /tmp/h25/run
export TICKRELAY_JWT_SECRET=h25-secret-0123456789abcdef0123456789abcdef
/tmp/h25/tickrelay -c /tmp/h25/h25.toml --insecure-plain --listen 127.0.0.1:7929 --auth jwt --set 'auth.duplicate_sessions="replace"' > /tmp/h25/relayB.log 2>&1 &
PID=$!; echo $PID > /tmp/h25/relayB.pid
sleep 1.5
python3 /tmp/h25/mon.py $PID 7929 232 /tmp/h25/monB.csv 5 > /tmp/h25/monB.txt 2>&1 &
MON=$!
sleep 10
cd /tmp/h25 && PORT=7929 SECS=150 SECRET=$TICKRELAY_JWT_SECRET USERS=5000 python3 churnB.py > /tmp/h25/churnB.txt 2>&1
wait $MON
kill $PID; wait $PID
echo done
