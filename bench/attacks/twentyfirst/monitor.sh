#!/bin/bash
# monitor.sh COUNT EVERY : every EVERY s (COUNT times) the registry size, keys, Redis memory and CPU
R="redis-cli -p 6421"; RPID=$(cat ${RUN:-/tmp/attack21}/redis.pid); tck=$(getconf CLK_TCK)
cpu() { awk -v t=$tck '{print ($14+$15)/t}' /proc/$RPID/stat; }
for i in $(seq 1 $1); do
  c0=$(cpu); sleep $2; c1=$(cpu)
  echo "$(date +%T) registry=$($R scard tickrelay:open-entries:relay) keys=$($R dbsize) used_memory=$($R info memory | awk -F: '/^used_memory:/{print $2}' | tr -d '\r') redis_cpu=$(echo "($c1-$c0)/$2" | bc -l | cut -c1-4)"
done
