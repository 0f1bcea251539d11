#!/bin/bash
# start.sh NAME [relay args...]: stops the relay in $WORK/relay.pid (one this script started),
# starts a fresh one on 127.0.0.1:$PORT (default 7927), log in $WORK/relay_NAME.log (and
# $WORK/relay.log points at it). TLS=1: defaults (wss:// + QUIC, dev certificate in $WORK);
# otherwise plain ws:// (--insecure-plain). Always with --api-token (the HTTP API on).
# stop.sh stops it.
WORK=${WORK:-/tmp/a27}; PORT=${PORT:-7927}; BIN=${TR_BIN:-$WORK/tickrelay}
cd "$WORK" || exit 1
[ -f relay.pid ] && kill "$(cat relay.pid)" 2>/dev/null && sleep 1.5
name=$1; shift
ln -sf relay_$name.log relay.log
if [ "${TLS:-0}" = 1 ]; then
  "$BIN" --listen 127.0.0.1:$PORT --api-token atk27-api-token-0123456789 "$@" > relay_$name.log 2>&1 &
  echo $! > relay.pid; sleep 1.5
  curl -s --cacert tickrelay-dev-cert.pem https://127.0.0.1:$PORT/healthz
else
  "$BIN" --insecure-plain --listen 127.0.0.1:$PORT --api-token atk27-api-token-0123456789 "$@" > relay_$name.log 2>&1 &
  echo $! > relay.pid; sleep 1
  curl -s http://127.0.0.1:$PORT/healthz
fi
echo " pid $(cat relay.pid)"
