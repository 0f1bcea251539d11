#!/bin/bash
# start.sh NAME [relay args...]: stops the relay in $WORK/relay.pid (one this script started),
# starts a fresh one on 127.0.0.1:$PORT (default 7926), log in $WORK/relay_NAME.log.
# TLS=1: on its defaults (wss:// and QUIC, development certificate written in $WORK);
# otherwise plain ws:// (--insecure-plain).
WORK=${WORK:-/tmp/a26}; PORT=${PORT:-7926}; BIN=${TR_BIN:-$WORK/tickrelay}
cd "$WORK" || exit 1
[ -f relay.pid ] && kill "$(cat relay.pid)" 2>/dev/null && sleep 1
name=$1; shift
if [ "${TLS:-0}" = 1 ]; then
  "$BIN" --listen 127.0.0.1:$PORT "$@" > relay_$name.log 2>&1 &
  echo $! > relay.pid; sleep 1.5
  curl -s --cacert tickrelay-dev-cert.pem https://127.0.0.1:$PORT/healthz
else
  "$BIN" --insecure-plain --listen 127.0.0.1:$PORT "$@" > relay_$name.log 2>&1 &
  echo $! > relay.pid; sleep 1
  curl -s http://127.0.0.1:$PORT/healthz
fi
echo " pid $(cat relay.pid)"
