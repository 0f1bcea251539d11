#!/bin/bash
# stop.sh PORT: stops the relay start.sh started on PORT (by its recorded pid only).
here=$(cd "$(dirname "$0")" && pwd)
f="$here/relay-$1.pid"
[ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; rm -f "$f"; sleep 0.3
