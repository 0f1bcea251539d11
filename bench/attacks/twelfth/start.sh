#!/bin/bash
# start.sh PORT CONFIG [extra relay args...]: the release relay (TR_BIN, by default
# /tmp/r29/tickrelay) on 127.0.0.1:PORT over plain ws://, bounded to TR_LIFE seconds
# (default 900) by `timeout`; pid in relay-PORT.pid, log in relay-PORT.log (beside
# this script). Pass --tls to serve wss:// and QUIC instead (the dev cert is written
# to dev-cert-PORT.pem here).
here=$(cd "$(dirname "$0")" && pwd)
BIN=${TR_BIN:-/tmp/r29/tickrelay}
PORT=$1; CONF=$2; shift 2
plain=--insecure-plain
if [ "$1" = "--tls" ]; then plain="--dev-cert-path $here/dev-cert-$PORT.pem"; shift; fi
conf=""
[ "$CONF" != "-" ] && conf="--config $CONF"
timeout ${TR_LIFE:-900} "$BIN" $conf $plain --listen "127.0.0.1:$PORT" --log warn "$@" >"$here/relay-$PORT.log" 2>&1 &
echo $! >"$here/relay-$PORT.pid"
sleep 0.8
