#!/usr/bin/env bash
# A cluster soak on this machine: a Redis, three relay nodes (release build), bots
# spread over the three, node 1 killed with SIGKILL (or stopped with SIGTERM, as in a
# rolling restart) partway through. Prints the bots'
# report (desyncs, inputs lost and rolled back, how long bots took to play again), the
# Redis commands the cluster sent during a steady window before the kill (from
# INFO commandstats), per second, per room and per node, and the size of the rooms'
# checkpoints just before the kill.
#
#   bash bench/cluster_soak.sh [ROOMS] [MEMBERS] [SECONDS] [KILL_AT] [KILL|TERM]
#
# Defaults: 60 arena rooms of 10 bots, 60 s, node 1 killed (SIGKILL) at 30 s. Loopback only;
# everything it starts stops with it. Needs redis-server (Debian: redis-server).
set -euo pipefail
case ${1:-} in
    -h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    '' | [0-9]*) ;;
    *) echo "cluster_soak.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
esac
ROOMS=${1:-60}
MEMBERS=${2:-10}
SECONDS_TOTAL=${3:-60}
KILL_AT=${4:-30}
SIGNAL=${5:-KILL}
case $SIGNAL in
    KILL | TERM) ;;
    *) echo "cluster_soak.sh: the signal is KILL or TERM, not '$SIGNAL'" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.."
cargo build --release -q -p tickrelay -p tickrelay-bots --bin tickrelay --bin tickrelay-bots
BIN=$(realpath "${CARGO_TARGET_DIR:-target}")/release
DIR=$(mktemp -d /tmp/tickrelay-cluster-soak.XXXXXX)
REDIS_PORT=6391
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT
redis-server --bind 127.0.0.1 --port $REDIS_PORT --save "" --appendonly no --dir "$DIR" >/dev/null &
PIDS+=($!)
until redis-cli -p $REDIS_PORT ping >/dev/null 2>&1; do sleep 0.1; done
URLS=()
for n in 1 2 3; do
  port=$((7450 + n))
  # One directory, one development certificate for every node.
  (cd "$DIR" && exec "$BIN/tickrelay" --cluster "redis://127.0.0.1:$REDIS_PORT" \
    --listen "127.0.0.1:$port" --no-quic --max-rooms 10000 >"$DIR/node$n.log" 2>&1) &
  PIDS+=($!)
  eval "NODE$n=$!"
  until grep -q "listening on" "$DIR/node$n.log" 2>/dev/null; do sleep 0.1; done
  URLS+=(--url "wss://127.0.0.1:$port/ws")
done
"$BIN/tickrelay-bots" "${URLS[@]}" --cert "$DIR/tickrelay-dev-cert.pem" \
  --rooms "$ROOMS" --members "$MEMBERS" --room-type arena --input-rate 10 \
  --duration-secs "$SECONDS_TOTAL" --ramp-up-secs 5 --verify-share 0.2 --expect-node-loss \
  >"$DIR/bots.out" 2>"$DIR/bots.err" &
BOTS=$!
PIDS+=($BOTS)
# The steady window: from 10 s in to just before the kill.
sleep 10
WINDOW=$((KILL_AT - 12))
redis-cli -p $REDIS_PORT info commandstats >"$DIR/before"
sleep "$WINDOW"
redis-cli -p $REDIS_PORT info commandstats >"$DIR/after"
# Checkpoint sizes (bytes of each room's last checkpoint) before the kill.
redis-cli -p $REDIS_PORT --scan --pattern '*checkpoint:*' | while read -r key; do
  redis-cli -p $REDIS_PORT strlen "$key"
done >"$DIR/checkpoint_bytes"
sleep 2
kill -s "$SIGNAL" "$NODE1"
echo "sent node 1 SIG$SIGNAL at ${KILL_AT} s"
wait "$BOTS" || true
cat "$DIR/bots.out"
grep -v "^\s*$" "$DIR/bots.err" | tail -3 || true
echo
echo "Redis commands during the steady window (${WINDOW} s, ${ROOMS} rooms, 3 nodes):"
python3 - "$DIR/before" "$DIR/after" "$WINDOW" "$ROOMS" <<'EOF'
import re, sys
def calls(path):
    out = {}
    for line in open(path):
        m = re.match(r"cmdstat_(\w+):calls=(\d+)", line)
        if m:
            out[m.group(1)] = int(m.group(2))
    return out
before, after = calls(sys.argv[1]), calls(sys.argv[2])
secs, rooms = float(sys.argv[3]), int(sys.argv[4])
delta = {k: after[k] - before.get(k, 0) for k in after if after[k] - before.get(k, 0) > 0}
total = sum(delta.values())
print("| command | calls / s |")
print("|---|---|")
for k, v in sorted(delta.items(), key=lambda kv: -kv[1]):
    print(f"| {k} | {v / secs:.1f} |")
print(f"| total | {total / secs:.1f} |")
print(f"per room per second: {total / secs / rooms:.2f}; per node per second: {total / secs / 3:.1f}")
EOF
sort -n "$DIR/checkpoint_bytes" | awk '{v[NR] = $1} END {
  if (NR) printf "checkpoint bytes per room (%d rooms): min %d, median %d, max %d\n", NR, v[1], v[int((NR + 1) / 2)], v[NR]
  else print "no checkpoints found"
}'
for n in 1 2 3; do
  echo "node $n: $(grep -c 'room restored' "$DIR/node$n.log" || true) rooms restored, $(grep -c 'session continued' "$DIR/node$n.log" || true) sessions continued"
done
