#!/usr/bin/env bash
# A/B of relay binaries on one arena workload, alternating them so that both see the
# same machine: each round runs every binary once (relay on CPU 0, bots on CPU 1) and
# prints the relay's CPU per delivered frame, its voluntary context switches (all
# threads, from /proc/PID/task/*/status) and the TCP segments sent on the machine
# (both ends, from `nstat`: bare ACKs are what exceeds one per message) per delivered
# frame over a steady window.
#
# Usage: bench/ab.sh [options] BINARY...
#   --rooms N        rooms (default 1)
#   --members N      bots per room (default 200)
#   --hz N           tick rate (default 20)
#   --input-rate N   inputs per bot per second (default: the tick rate; 0: none, to
#                    separate the cost of frames from the cost of inputs)
#   --npcs N         arena NPCs per room (default 60)
#   --rounds N       rounds (default 3; read the first as a warm-up)
#   --window SECS    the measured window (default 15), after 10 s of ramp-up
#   --quic           the bots connect over QUIC (default: wss)
#   --plain          the relay runs with --insecure-plain and the bots connect over
#                    ws:// (the TLS share out of the comparison)
#
# Example (the flushers' A/B in BENCHMARKS.md: commit f11bafc against its parent):
#   git worktree add /tmp/a f11bafc~1 && (cd /tmp/a && cargo build --release -p tickrelay)
#   git worktree add /tmp/b f11bafc && (cd /tmp/b && cargo build --release -p tickrelay)
#   cargo build --release -p tickrelay-bots
#   bench/ab.sh --rooms 50 --members 20 --hz 30 --npcs 16 /tmp/a/target/release/tickrelay /tmp/b/target/release/tickrelay
set -euo pipefail
source "$(dirname "$0")/relay_config.sh"

rooms=1 members=200 hz=20 npcs=60 rounds=3 window=15 input_rate= quic= plain=()
while (($#)); do
    case $1 in
        --rooms) rooms=$2; shift ;;
        --members) members=$2; shift ;;
        --hz) hz=$2; shift ;;
        --npcs) npcs=$2; shift ;;
        --input-rate) input_rate=$2; shift ;;
        --rounds) rounds=$2; shift ;;
        --window) window=$2; shift ;;
        --quic) quic=1 ;;
        --plain) plain=(--insecure-plain) ;;
        -h | --help) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "ab.sh: unknown option $1" >&2; exit 2 ;;
        *) break ;;
    esac
    shift
done
(($#)) || { echo "ab.sh: give at least one relay binary" >&2; exit 2; }
binaries=()
for bin in "$@"; do binaries+=("$(realpath "$bin")"); done
root=$(cd "$(dirname "$0")/.." && pwd)
bots=${CARGO_TARGET_DIR:-$root/target}/release/tickrelay-bots
[[ -x $bots ]] || { echo "ab.sh: build the bots first: cargo build --release -p tickrelay-bots" >&2; exit 2; }
work=$(mktemp -d "${TMPDIR:-/tmp}/tickrelay-ab.XXXXXX")
trap 'kill $relay_pid 2>/dev/null || true; rm -rf "$work"' EXIT
relay_pid=
port=$(free_port)
{
    bench_relay_config "$port" "$work/cert.pem"
    [[ -n $quic ]] || printf '\n[quic]\nenabled = false\n'
    bench_arena_room_type "$hz" "$members" "$npcs"
} >"$work/relay.toml"

# TCP segments sent on the machine so far (all of its TCP traffic: keep it quiet
# otherwise), or nothing without nstat.
tcp_segments() { { nstat -saz TcpOutSegs 2>/dev/null || true; } | awk '/TcpOutSegs/ {print $2}'; }

# CPU ticks (user + system) and voluntary context switches of every thread of $1.
sample() {
    local cpu vcsw
    cpu=$(awk '{print $14 + $15}' "/proc/$1/stat")
    vcsw=$(cat /proc/"$1"/task/*/status | awk '/^voluntary_ctxt_switches/ {s += $2} END {print s}')
    echo "$cpu $vcsw"
}

echo "| round | binary | relay cores | delivered frames/s | bytes / frame | CPU µs / frame | voluntary switches / frame | TCP segments / frame | desyncs |"
echo "|---|---|---|---|---|---|---|---|---|"
for ((round = 1; round <= rounds; round++)); do
    for bin in "${binaries[@]}"; do
        (cd "$work" && exec taskset -c 0 "$bin" --config relay.toml --log warn "${plain[@]}") >"$work/relay.log" 2>&1 &
        relay_pid=$!
        scheme=https
        ((${#plain[@]})) && scheme=http
        for _ in $(seq 100); do curl -skf "$scheme://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
        url=wss://127.0.0.1:$port/ws
        ((${#plain[@]})) && url=ws://127.0.0.1:$port/ws
        [[ -n $quic ]] && url=quic://127.0.0.1:$port
        taskset -c 1 "$bots" --url "$url" --cert "$work/cert.pem" --rooms "$rooms" \
            --members "$members" --room-type arena --input-rate "${input_rate:-$hz}" --duration-secs $((window + 13)) \
            --ramp-up-secs 5 --warm-up-secs 8 --verify-share 0.1 --progress-secs 0 --json "$work/bots.json" \
            >"$work/bots.out" 2>&1 &
        bots_pid=$!
        sleep 10
        read -r c0 v0 < <(sample $relay_pid)
        segments=$(tcp_segments)
        sleep "$window"
        read -r c1 v1 < <(sample $relay_pid)
        after_segments=$(tcp_segments)
        segments=${segments:+$((after_segments - segments))}
        wait $bots_pid || true
        kill $relay_pid && wait $relay_pid 2>/dev/null || true
        relay_pid=
        python3 - "$round" "$bin" "$c0" "$c1" "$v0" "$v1" "$window" "$(getconf CLK_TCK)" "$work" "$segments" <<'EOF'
import json, re, sys
rnd, binary, c0, c1, v0, v1, window, hz, work, segments = sys.argv[1:]
bots = json.load(open(f"{work}/bots.json"))
frames = bots["frames"] / max(bots["seconds"], 1e-3)
cores = (float(c1) - float(c0)) / float(hz) / float(window)
switches = (float(v1) - float(v0)) / float(window)
m = re.search(r"\| desyncs \| (\d+)", open(f"{work}/bots.out").read())
print(f"| {rnd} | {binary} | {cores:.3f} | {frames:.0f} | {bots['bytes'] / max(bots['frames'], 1):.0f} | {cores * 1e6 / frames:.1f} | {switches / frames:.3f} | {f'{float(segments) / float(window) / frames:.2f}' if segments else '-'} | {m.group(1) if m else '?'} |")
EOF
    done
done
