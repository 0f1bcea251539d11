#!/bin/bash
# run.sh NAME SECS -- attack command...: runs the honest clients and the monitor next to
# an attack (from this directory, where the relay's pid file is); logs in out/NAME.*
NAME=$1; SECS=$2; shift 3
cd "$(dirname "$0")"
mkdir -p out
PID=$(cat "${RELAY_PID_FILE:-relay.pid}")
timeout $((SECS+15)) python3 honest.py $SECS > out/$NAME.honest 2>&1 &
timeout $((SECS+15)) python3 honest_quic.py $SECS > out/$NAME.honestq 2>&1 &
timeout $((SECS+15)) python3 mon.py $PID $SECS > out/$NAME.mon 2>&1 &
sleep 1
timeout 58 "$@" > out/$NAME.attack 2>&1
wait
tail -n 15 out/$NAME.attack; cat out/$NAME.honest out/$NAME.honestq out/$NAME.mon
