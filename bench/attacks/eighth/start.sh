#!/bin/bash
# start.sh PORT [extra relay args...]: starts the release relay on 127.0.0.1:PORT over
# plain ws:// (log in relay-PORT.log, pid in relay.pid, both beside this script).
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
PORT=$1; shift
"$root/target/release/tickrelay" --insecure-plain --listen "127.0.0.1:$PORT" --log warn "$@" >"$here/relay-$PORT.log" 2>&1 &
echo $! >"$here/relay.pid"
sleep 0.7
