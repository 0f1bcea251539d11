#!/usr/bin/env bash
# Cluster mode through Redis Sentinel, a failover timed: a primary, its replica and
# one sentinel, two relay nodes pointed at the sentinel, bots playing in arena rooms
# on node 1; the primary is killed (SIGKILL) and every 0.2 s the script prints, when
# it changes, which primary the sentinel names and each node's tickrelay_directory_up.
# Then the nodes' "primary moved" log lines and the bots' report.
#
#   bash bench/sentinel_failover.sh [DOWN_AFTER_MS]
#
# DOWN_AFTER_MS: the sentinel's down-after-milliseconds (default 5000). Loopback
# only (ports 6511-6512, 26511, 7721-7722, 7731-7732); everything it starts stops
# with it. Needs redis-server (Debian: redis-server).
set -euo pipefail
case ${1:-} in
    -h | --help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    '' | [0-9]*) ;;
    *) echo "sentinel_failover.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
esac
DOWN_AFTER_MS=${1:-5000}
cd "$(dirname "$0")/.."
cargo build --release -q -p tickrelay -p tickrelay-bots --bin tickrelay --bin tickrelay-bots
BIN=$(realpath "${CARGO_TARGET_DIR:-target}")/release
DIR=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$DIR"' EXIT
redis-server --port 6511 --bind 127.0.0.1 --save "" --dir "$DIR" --logfile "$DIR/primary.log" &
PRIMARY=$!
redis-server --port 6512 --bind 127.0.0.1 --save "" --replicaof 127.0.0.1 6511 --dir "$DIR" --logfile "$DIR/replica.log" &
printf 'port 26511\nbind 127.0.0.1\ndir %s\nsentinel monitor m 127.0.0.1 6511 1\nsentinel down-after-milliseconds m %s\nsentinel failover-timeout m 10000\n' \
    "$DIR" "$DOWN_AFTER_MS" > "$DIR/sentinel.conf"
redis-server "$DIR/sentinel.conf" --sentinel --logfile "$DIR/sentinel.log" &
# The sentinel must know the replica before it can fail over to it.
for _ in $(seq 150); do
    redis-cli -p 26511 sentinel replicas m 2>/dev/null | grep -x 6512 >/dev/null && break
    sleep 0.2
done
for i in 1 2; do
    "$BIN/tickrelay" --insecure-plain --listen 127.0.0.1:772$i --metrics-listen 127.0.0.1:773$i \
        --cluster 'redis-sentinel://127.0.0.1:26511#m' --node-id n$i --public-url ws://127.0.0.1:772$i/ws \
        > "$DIR/node$i.log" 2>&1 &
done
sleep 3
SECONDS_TOTAL=$(( DOWN_AFTER_MS / 1000 + 20 ))
"$BIN/tickrelay-bots" --url ws://127.0.0.1:7721/ws --rooms 2 --members 5 --room-type arena \
    --duration-secs "$SECONDS_TOTAL" > "$DIR/bots.log" 2>&1 &
BOTS=$!
sleep 3
up() { curl -s "127.0.0.1:$1/metrics" | awk '/^tickrelay_directory_up /{print $2}'; }
started=$(date +%s%N)
kill -9 "$PRIMARY"
last=
while kill -0 "$BOTS" 2>/dev/null; do
    state="primary $(redis-cli -p 26511 sentinel get-master-addr-by-name m | tail -1), directory_up $(up 7731)/$(up 7732)"
    if [ "$state" != "$last" ]; then
        echo "$(( ($(date +%s%N) - started) / 1000000 )) ms after the kill: $state"
        last=$state
    fi
    sleep 0.2
done
grep -h "primary moved" "$DIR"/node*.log || echo "no node followed the primary"
cat "$DIR/bots.log"
