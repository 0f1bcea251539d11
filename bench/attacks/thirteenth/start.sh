#!/bin/bash
# start.sh PORT CONFIG: the release relay built in the repository's target on 127.0.0.1:PORT
# over plain ws:// (HTTP API on the same port), bounded by timeout (TR_LIFE, default 600 s).
# pid in relay-PORT.pid, log in relay-PORT.log beside this script.
here=$(cd "$(dirname "$0")" && pwd)
BIN=${TR_BIN:-$here/../../../target/release/tickrelay}
PORT=$1; CONF=$2; shift 2
timeout ${TR_LIFE:-600} "$BIN" --config "$CONF" --insecure-plain --listen "127.0.0.1:$PORT" --log warn "$@" >"$here/relay-$PORT.log" 2>&1 &
echo $! >"$here/relay-$PORT.pid"
sleep 1
