#!/usr/bin/env bash
# User-space instructions of the relay (or, with --bots, of the bots) per state frame sent, counted by valgrind's
# callgrind: unlike CPU time, the count hardly moves between runs (about 1 % for the
# same build) or with what else the machine does, so it shows changes of a few per
# cent that time cannot. Runs one
# arena room of a few bots (callgrind slows the relay about 50 times) with one input
# per bot per tick, zeroes the counters once they are in, counts over the window and
# prints instructions per state frame sent (each frame's share of the room's tick, its
# write, and one input read and applied). Kernel time is not counted.
#
# Usage: bench/instructions.sh [--members N] [--window SECS] [--plain | --quic] [--bots] BINARY...
#   --members N    bots in the room (default 10)
#   --window SECS  the counted window (default 30), after 10 s of ramp-up
#   --plain        ws:// (--insecure-plain) instead of wss://
#   --quic         quic:// instead of wss://
#   --bots         count the bots' process instead (one process; each BINARY is then
#                  a tickrelay-bots build, and the relay is target/release/tickrelay
#                  outside valgrind)
#   --keep DIR     keep each run's callgrind output in DIR (cg-1.out, cg-2.out, … per
#                  BINARY in order), for `callgrind_annotate --inclusive=yes FILE`
# Needs valgrind (Debian: apt-get install valgrind) and the release bots:
#   cargo build --release -p tickrelay-bots
set -euo pipefail
source "$(dirname "$0")/relay_config.sh"

members=10 window=30 plain="" quic="" count_bots="" keep=""
while (($#)); do
    case $1 in
        --members) members=$2; shift ;;
        --window) window=$2; shift ;;
        --plain) plain=1 ;;
        --quic) quic=1 ;;
        --bots) count_bots=1 ;;
        --keep) keep=$(realpath "$2"); mkdir -p "$keep"; shift ;;
        -h | --help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "instructions.sh: unknown option $1" >&2; exit 2 ;;
        *) break ;;
    esac
    shift
done
(($#)) || { echo "usage: bench/instructions.sh [options] BINARY..." >&2; exit 2; }
command -v callgrind_control >/dev/null || { echo "instructions.sh: valgrind is not installed" >&2; exit 1; }
root=$(cd "$(dirname "$0")/.." && pwd)
bots=${CARGO_TARGET_DIR:-$root/target}/release/tickrelay-bots
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

echo "| binary | transport | bots | state frames | instructions | instructions / frame |"
echo "|---|---|---|---|---|---|"
run=0
for bin in "$@"; do
    run=$((run + 1))
    bin=$(realpath "$bin")
    port=$(free_port)
    { bench_relay_config "$port" "$work/cert.pem"; [[ -n $quic ]] || printf '\n[quic]\nenabled = false\n'
      bench_arena_room_type 20 "$members" 60; } >"$work/relay.toml"
    extra=() scheme=wss path=/ws
    [[ -n $plain ]] && extra=(--insecure-plain) scheme=ws
    [[ -n $quic ]] && scheme=quic path=
    # Under callgrind: the relay, or with --bots the bots (the binary given).
    relay_bin=$bin bots_bin=$bots relay_run=(valgrind --tool=callgrind --callgrind-out-file="$work/cg.out") bots_run=()
    if [[ -n $count_bots ]]; then
        relay_bin=${CARGO_TARGET_DIR:-$root/target}/release/tickrelay bots_bin=$bin bots_run=("${relay_run[@]}") relay_run=()
    fi
    (cd "$work" && exec "${relay_run[@]}" "$relay_bin" --config relay.toml --log warn "${extra[@]}") >"$work/relay.log" 2>&1 &
    relay=$!
    for _ in $(seq 300); do
        curl -skf "https://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
        curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
        sleep 0.2
    done
    "${bots_run[@]}" "$bots_bin" --url "$scheme://127.0.0.1:$port$path" --cert "$work/cert.pem" --rooms 1 \
        --members "$members" --room-type arena --input-rate 20 --duration-secs $((window + 25)) \
        --ramp-up-secs 2 --warm-up-secs 10 --verify-share 0.1 --progress-secs 0 --processes 1 \
        --json "$work/bots.json" >"$work/bots.out" 2>&1 &
    bots_pid=$!
    counted=$relay
    [[ -n $count_bots ]] && counted=$bots_pid
    # Under callgrind the bots connect slowly: let them settle longer.
    sleep $([[ -n $count_bots ]] && echo 20 || echo 10)
    http=https; [[ -n $plain ]] && http=http
    frames_at() { curl -skf "$http://127.0.0.1:$port/metrics" | awk '/^tickrelay_state_frames_total /{print $2}'; }
    callgrind_control -z "$counted" >/dev/null 2>&1
    start=$(frames_at)
    sleep "$window"
    callgrind_control -d "$counted" >/dev/null 2>&1
    end=$(frames_at)
    wait "$bots_pid" || true
    kill -INT "$relay"; wait "$relay" 2>/dev/null || true
    total=$(grep -h '^totals:' "$work"/cg.out.* | awk '{s += $2} END {print s}')
    if [[ -n $keep ]]; then
        # The dump taken at the end of the window (the last part written).
        cp "$(ls -v "$work"/cg.out.* | tail -1)" "$keep/cg-$run.out"
    fi
    rm -f "$work"/cg.out*
    python3 -c 'import sys; b, t, m, f, i = sys.argv[1:]; f = int(float(f)); print(f"| {b} | {t} | {m} | {f} | {int(i):,} | {int(i) / f:,.0f} |" if f else f"| {b} | {t} | {m} | 0 | {int(i):,} | no frames: the relay or the bots failed |")' \
        "$bin" "$scheme" "$members" "$(python3 -c "print(float('$end') - float('$start'))")" "$total"
done
