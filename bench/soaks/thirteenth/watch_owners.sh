#!/bin/bash
# watch_owners.sh SECS INTERVAL PORTS... : every INTERVAL s, each node's tickrelay_rooms gauge and
# the rooms open on it per the node's own /metrics, plus Redis room owners; one line per sample.
# Writes $D/owners.log. Needs D, RP.
secs=$1 iv=$2; shift 2
end=$(( $(date +%s) + secs ))
while [ $(date +%s) -lt $end ]; do
  line="$(date +%T.%N | cut -c1-12)"
  for p in "$@"; do
    v=$(curl -sk --max-time 1 https://127.0.0.1:$p/metrics | awk '/^tickrelay_(rooms|members|directory_up|rooms_lost_total|sessions_moved_total|rooms_restored_total) /{printf "%s=%s ", substr($1,11), $2}')
    line="$line | $p: ${v:-down}"
  done
  owners=$(for k in $(redis-cli -p $RP --scan --pattern 'tickrelay:room:*' 2>/dev/null); do redis-cli -p $RP hget $k node 2>/dev/null; done | sed 's#wss://127.0.0.1:##; s#/ws##' | sort | uniq -c | tr '\n' ' ')
  line="$line | redis owners: ${owners:-none} dbsize=$(redis-cli -p $RP dbsize 2>/dev/null || echo down) nodenums=$(for k in $(redis-cli -p $RP --scan --pattern 'tickrelay:node-number:*' 2>/dev/null); do echo -n "${k##*:}=$(redis-cli -p $RP get $k | sed 's#wss://127.0.0.1:##; s#/ws##'),"; done) starts=$(redis-cli -p $RP get tickrelay:node-starts 2>/dev/null)"
  echo "$line" >>"$D/owners.log"
  sleep $iv
done
