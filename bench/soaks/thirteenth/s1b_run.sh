#!/bin/bash
# rerun wrapper: a 3-node cluster (QUIC on by default) for s1b, then b2 (SIG=KILL, no restart) and b5 (SIG=KILL, RESTART_AFTER=10), then stop.
# Usage: D=/tmp/soak13b/s1b RP=6482 P=781 ./s1b_run.sh
set -u
HERE=$(cd "$(dirname "$0")" && pwd); source "$HERE/common.sh"
mkdir -p "$D"; cd "$D"
start_redis $RP; for n in 1 2 3; do start_node $n $P$n $RP; done
sleep 2
TAG=b2 SIG=KILL bash $HERE/s1b_quic_kill_norestart.sh
sleep 20
TAG=b5 SIG=KILL RESTART_AFTER=10 bash $HERE/s1b_quic_kill_norestart.sh
bash $HERE/stop_all.sh "$D"
