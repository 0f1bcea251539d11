#!/bin/sh
# Starts a plain ws:// relay on 127.0.0.1:${PORT:-7551}; extra args are passed on
# (e.g. --set auth.mode=jwt ...). Prints its pid. Stop it with kill <pid>.
HERE=$(dirname "$0")
BIN=${BIN:-$HERE/../../../target/release/tickrelay}
$BIN --insecure-plain --listen 127.0.0.1:${PORT:-7551} "$@" > /tmp/fifteenth-relay.log 2>&1 &
echo $!
