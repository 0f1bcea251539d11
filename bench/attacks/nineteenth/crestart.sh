#!/bin/bash
for p in n1 n2 n3; do [ -f $p.pid ] && kill $(cat $p.pid) 2>/dev/null; done; sleep 1.2
redis-cli -p 6419 flushall >/dev/null
for spec in "$@"; do ./cstart.sh ${spec%%:*} ${spec##*:}; done; sleep 1.5
