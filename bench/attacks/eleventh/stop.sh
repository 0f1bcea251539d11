#!/bin/bash
HERE=$(cd "$(dirname "$0")" && pwd); BIN=${BIN:-$HERE/../../../target/release}; RUN=${RUN:-/tmp/tickrelay-attack11}; mkdir -p "$RUN"; cd "$RUN"
for f in node*.pid; do [ -f "$f" ] && kill -TERM $(cat $f) 2>/dev/null; done
sleep ${WAIT:-3}
for f in node*.pid; do [ -f "$f" ] && kill -KILL $(cat $f) 2>/dev/null; rm -f $f; done
redis-cli -p 6411 shutdown nosave >/dev/null 2>&1
true
