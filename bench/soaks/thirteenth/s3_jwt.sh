#!/bin/bash
# Scenario 3: three JWT nodes (jwt.toml: HS256, duplicate_sessions = "replace", plain ws) on Redis $RP,
# then s3_jwt.py's tests. Usage: D=/tmp/soak13/s3 RP=6482 P=781 ./s3_jwt.sh [TEST...]
set -u
HERE=$(cd "$(dirname "$0")" && pwd); source "$HERE/common.sh"
P=${P:-781}; export P
mkdir -p "$D"; cd "$D"
redis-cli -p $RP ping >/dev/null 2>&1 || start_redis $RP
for n in 1 2 3; do kill -0 $(nodepid $n 2>/dev/null) 2>/dev/null || start_node $n $P$n $RP --config $HERE/jwt.toml --public-url ws://127.0.0.1:$P$n/ws; done
timeout 300 python3 $HERE/s3_jwt.py "$@"
for n in 1 2 3; do echo "--- node$n WARN/ERROR"; grep -E 'WARN|ERROR' $D/node$n.log | grep -v -E 'development certificate|anonymous' | sed 's/\x1b\[[0-9;]*m//g' | cut -c1-300 | sort | uniq -c | sort -rn | head -15; done
