#!/bin/bash
# start.sh NAME [relay args...]: a fresh relay on 127.0.0.1:$PORT (default 7781), log in
# $WORK/relay_NAME.log ($WORK/relay.log points at it), pid in $WORK/relay.pid. TLS=1: wss:// +
# QUIC with the development certificate (written to $WORK/run); otherwise --insecure-plain.
WORK=${WORK:-/tmp/a28}; PORT=${PORT:-7781}; BIN=${TR_BIN:-/tmp/atk28-target/release/tickrelay}
mkdir -p "$WORK/run"; cd "$WORK/run" || exit 1
[ -f ../relay.pid ] && kill "$(cat ../relay.pid)" 2>/dev/null && sleep 1.5
name=$1; shift
ln -sf relay_$name.log ../relay.log
if [ "${TLS:-0}" = 1 ]; then
  "$BIN" --listen 127.0.0.1:$PORT "$@" > ../relay_$name.log 2>&1 &
else
  "$BIN" --insecure-plain --listen 127.0.0.1:$PORT "$@" > ../relay_$name.log 2>&1 &
fi
echo $! > ../relay.pid; sleep 1.5
echo "relay pid $(cat ../relay.pid)"
