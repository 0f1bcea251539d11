#!/bin/bash
# soak.sh hidden|plain ws|quic PORT [SECS]: one relay (start.sh; with kind 1 owner_only
# from bots_hidden.toml, or no config at all), one bot fleet against it (10 rooms x 10
# relay bots, 10 inputs/s, every bot verifying, churn 0.3/min half of it resumes), the
# relay's CPU and RSS sampled, the fleet's report in soak-MODE-TRANSPORT.{txt,json},
# then the relay stopped (by its recorded pid).
here=$(cd "$(dirname "$0")" && pwd)
MODE=$1; TR=$2; PORT=$3; SECS=${4:-120}
BOTS=${TR_BOTS:-/tmp/r29/tickrelay-bots}
conf=-; [ "$MODE" = hidden ] && conf="$here/bots_hidden.toml"
if [ "$TR" = quic ]; then
  TR_LIFE=$((SECS + 60)) "$here/start.sh" "$PORT" "$conf" --tls
  url="quic://127.0.0.1:$PORT"; extra="--cert $here/dev-cert-$PORT.pem"; scheme=https; curlk=-k
else
  TR_LIFE=$((SECS + 60)) "$here/start.sh" "$PORT" "$conf"
  url="ws://127.0.0.1:$PORT/ws"; extra=""; scheme=http; curlk=""
fi
pid=$(pgrep -P "$(cat "$here/relay-$PORT.pid")" tickrelay)
out="$here/soak-$MODE-$TR${TAG:-}"
( t0=$(date +%s); while kill -0 "$pid" 2>/dev/null && [ $(( $(date +%s) - t0 )) -lt $((SECS + 30)) ]; do
    echo "$(date +%s) $(awk '{print $14+$15}' /proc/$pid/stat) $(awk '/VmRSS/{print $2}' /proc/$pid/status)"; sleep 5; done ) > "$out.proc" &
timeout $((SECS + 60)) "$BOTS" --url "$url" $extra --rooms 10 --members 10 --room-type relay --input-rate 10 \
  --verify-share 1 --churn ${CHURN:-0.3} --churn-resume-share 0.5 --duration-secs "$SECS" --progress-secs 30 \
  --json "$out.json" > "$out.txt" 2>&1
echo "bots exit $?" >> "$out.txt"
curl -s $curlk "$scheme://127.0.0.1:$PORT/metrics" | grep -v '^#' | grep -E 'inputs_refused|superseded|state_frames_total|bytes_out_total|resync|desync|closes_total' > "$out.metrics"
"$here/stop.sh" "$PORT"
wait
