#!/bin/bash
# Relay C (THP disabled), repeated identical cycles: 100 s churn (bots + python odd client), 65 s quiet.
cd /tmp/soak7/c; B=/work/main/target/release/tickrelay-bots; PID=$1
s() { echo "$(date +%T),$1,$(awk '/VmRSS/{r=$2}/RssAnon/{a=$2}END{print r","a}' /proc/$PID/status),$(ls /proc/$PID/fd | wc -l),$(curl -s 127.0.0.1:7740/metrics | awk '/^tickrelay_(connections|members|rooms|sessions_parked) /{printf "%s=%s ", $1, $2}')" >> cycles.csv; }
echo "ts,label,rss_kib,rssanon_kib,fds,gauges" > cycles.csv
s base
for c in 1 2 3 4 5; do
  COMMON="--input-rate 10 --verify-share 0.25 --progress-secs 0 --ramp-up-secs 5 --churn 2"
  timeout -s KILL 130 $B --url ws://127.0.0.1:7740/ws --rooms 4 --members 20 --room-type arena --room-prefix c-arena $COMMON --duration-secs 100 > arena.$c.out 2>&1 &
  timeout -s KILL 130 $B --url ws://127.0.0.1:7740/ws --rooms 3 --members 20 --room-type relay --room-prefix c-relay $COMMON --duration-secs 100 > relay.$c.out 2>&1 &
  timeout -s KILL 60 $B --url ws://127.0.0.1:7740/ws --rooms 2 --members 20 --room-type relay --room-prefix c-kill $COMMON --duration-secs 100 > kill.$c.out 2>&1 &
  (cd /tmp/soak7 && PORT=7740 TLS_PORT=7749 DURATION=95 timeout 160 python3 oddclient.py > c/odd.$c.out 2>&1) &
  sleep 50; s "c$c-mid"
  wait; s "c$c-end"; sleep 65; s "c$c-quiet"
done
