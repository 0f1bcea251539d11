#!/bin/bash
# Run A: anonymous relay with configured rooms + owner-only kind + API; two churn phases; bounded ~460 s.
cd /tmp/h25/run
API=h25apitoken-0123456789abcdef
/tmp/h25/tickrelay -c /tmp/h25/h25.toml --insecure-plain --listen 127.0.0.1:7925 --api-token $API > /tmp/h25/relayA.log 2>&1 &
echo $! > /tmp/h25/relay.pid
PID=$!
sleep 1.5
python3 /tmp/h25/mon.py $PID 7925 455 /tmp/h25/monA.csv 5 > /tmp/h25/monA.txt 2>&1 &
MON=$!
sleep 15
cd /tmp/h25 && PORT=7925 SECS=150 API=$API python3 churn.py > /tmp/h25/churnA1.txt 2>&1
sleep 75
PORT=7925 SECS=150 API=$API python3 churn.py > /tmp/h25/churnA2.txt 2>&1
sleep 62
wait $MON
kill $PID
wait $PID
echo done
