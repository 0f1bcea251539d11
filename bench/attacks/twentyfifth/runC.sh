#!/bin/bash
# Run C: TLS relay with QUIC; tickrelay-bots over QUIC with heavy churn (6 per bot-minute, half resume) 150 s; wait 70 s. ~240 s.
mkdir -p /tmp/h25/runC && cd /tmp/h25/runC
API=h25apitoken-0123456789abcdef
/tmp/h25/tickrelay --listen 127.0.0.1:7931 --metrics-listen 127.0.0.1:7932 --api-token $API > /tmp/h25/relayC.log 2>&1 &
PID=$!; echo $PID > /tmp/h25/relayC.pid
sleep 2
python3 /tmp/h25/mon.py $PID 7932 238 /tmp/h25/monC.csv 5 > /tmp/h25/monC.txt 2>&1 &
MON=$!
sleep 10
/tmp/h25/tickrelay-bots --url quic://127.0.0.1:7931 --cert /tmp/h25/runC/tickrelay-dev-cert.pem --rooms 10 --members 10 --input-rate 10 \
   --churn 6 --churn-resume-share 0.5 --duration-secs 150 --verify-share 0.2 --progress-secs 30 > /tmp/h25/botsC.txt 2>&1
python3 /tmp/h25/truth.py 7931 $API 7932 https >> /tmp/h25/truthC.txt 2>&1
sleep 25; python3 /tmp/h25/truth.py 7931 $API 7932 https >> /tmp/h25/truthC.txt 2>&1
wait $MON
python3 /tmp/h25/truth.py 7931 $API 7932 https >> /tmp/h25/truthC.txt 2>&1
kill $PID; wait $PID
echo done
