#!/bin/bash
# crestart.sh n1:8121 n2:8122 ...   stops the named nodes, flushes Redis (6421), starts them
cd ${RUN:-/tmp/attack21}
for spec in "$@"; do p=${spec%%:*}; [ -f $p.pid ] && kill $(cat $p.pid) 2>/dev/null; done; sleep 1.2
redis-cli -p 6421 flushall >/dev/null
for spec in "$@"; do $(dirname $(readlink -f $0))/cstart.sh ${spec%%:*} ${spec##*:}; done; sleep 1.5
