#!/usr/bin/env bash
# What one transport costs the relay against another on the same frames: W1a's shape
# (one arena room of MEMBERS bots, 60 NPCs, 20 Hz, one input per bot per tick), the
# relay on CPU 0 and the bots on CPU 1, each transport run in turn on a fresh relay;
# prints the relay's and the bots' CPU ticks (utime + stime, 1/100 s) over 10 s of the
# steady window. With --packets (QUIC runs only) it also counts the relay's socket
# calls in that window (`perf stat` on syscall tracepoints: tracing slows the relay, so
# its CPU figure is then not comparable) and sorts 20,000 packets of the run by
# direction and size (`tcpdump` on lo, installed with apt-get if missing). With
# --rtt-ms N, QUIC runs go through `bench/udp_delay.rs` (on the bots' CPU), which
# delays each datagram N/2 ms each way: the relay sees an N ms round trip, as across a
# network (WebSocket runs are unchanged: a TCP proxy would end TCP at itself, and the
# relay's side of TCP would be loopback's all the same).
#
#   bench/transport_cost.sh [--members N] [--packets] [--rtt-ms N] [--no-build] TRANSPORT...
#
# TRANSPORT: wss, ws (the relay with --insecure-plain) or quic. Example, two rounds:
#   bench/transport_cost.sh wss quic wss quic
set -euo pipefail
source "$(dirname "$0")/relay_config.sh"
cd "$(dirname "$0")/.."

members=200 packets=false build=true rtt_ms=0 transports=()
while (($#)); do
    case $1 in
        --members) members=$2; shift 2 ;;
        --packets) packets=true; shift ;;
        --rtt-ms) rtt_ms=$2; shift 2 ;;
        --no-build) build=false; shift ;;
        wss | ws | quic) transports+=("$1"); shift ;;
        *) echo "transport_cost.sh: unknown argument '$1'" >&2; exit 2 ;;
    esac
done
((${#transports[@]})) || { echo "transport_cost.sh: name at least one transport (wss, ws, quic)" >&2; exit 2; }
if $build; then
    cargo build --release -q -p tickrelay -p tickrelay-bots --bin tickrelay --bin tickrelay-bots
    ((rtt_ms == 0)) || cargo build --release -q --example udp_delay
fi
if $packets && ! command -v tcpdump >/dev/null; then
    apt-get install -y -qq tcpdump >/dev/null || { apt-get update -qq && apt-get install -y -qq tcpdump >/dev/null; }
fi
bin=${CARGO_TARGET_DIR:-target}/release
work=$(mktemp -d)
relay= delayer=
trap '[[ -n $relay ]] && kill "$relay" 2>/dev/null; [[ -n $delayer ]] && kill "$delayer" 2>/dev/null; rm -rf "$work"' EXIT

# utime + stime of a process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

for transport in "${transports[@]}"; do
    port=$(free_port)
    { bench_relay_config "$port" "$work/cert.pem"; bench_arena_room_type 20 "$members" 60; } >"$work/relay.toml"
    plain=() url=wss://127.0.0.1:$port/ws
    case $transport in
        ws) plain=(--insecure-plain) url=ws://127.0.0.1:$port/ws ;;
        quic) url=quic://127.0.0.1:$port ;;
    esac
    if [[ $transport == quic ]] && ((rtt_ms > 0)); then
        front=$(free_port)
        taskset -c 1 "$bin/examples/udp_delay" "127.0.0.1:$front" "127.0.0.1:$port" $((rtt_ms / 2)) &
        delayer=$!
        url=quic://127.0.0.1:$front
    fi
    taskset -c 0 "$bin/tickrelay" --config "$work/relay.toml" "${plain[@]}" >"$work/relay.log" 2>&1 &
    relay=$!
    for _ in $(seq 50); do [[ -s $work/cert.pem ]] && break; sleep 0.1; done
    sleep 0.5
    taskset -c 1 "$bin/tickrelay-bots" --url "$url" --cert "$work/cert.pem" --rooms 1 --members "$members" \
        --room-type arena --input-rate 20 --warm-up-secs 8 --verify-share 0.1 --duration-secs 30 \
        >"$work/bots.log" 2>&1 &
    bots=$!
    sleep 14
    relay0=$(cpu_ticks "$relay") bots0=$(cpu_ticks "$bots")
    if $packets && [[ $transport == quic ]]; then
        timeout 5 tcpdump -i lo -n -q -c 20000 -w "$work/cap.pcap" udp port "$port" 2>/dev/null &
        perf stat -x, -o "$work/calls.csv" -p "$relay" \
            -e 'syscalls:sys_enter_sendmsg,syscalls:sys_enter_sendmmsg,syscalls:sys_enter_recvmsg,syscalls:sys_enter_recvmmsg,syscalls:sys_enter_epoll_wait' \
            -- sleep 10
    else
        sleep 10
    fi
    relay1=$(cpu_ticks "$relay") bots1=$(cpu_ticks "$bots")
    wait "$bots" || true
    desyncs=$(grep -m1 '| desyncs |' "$work/bots.log" || echo "| desyncs | ? |")
    frames=$(grep -m1 '| state frames / s |' "$work/bots.log" || echo "| state frames / s | ? |")
    p99=$(grep -m1 '| latency p99 |' "$work/bots.log" || echo "| latency p99 | ? |")
    desyncs="$desyncs $frames $p99"
    via=""
    [[ -n $delayer ]] && via=" (round trip $rtt_ms ms)"
    echo "$transport$via: relay $((relay1 - relay0)) ticks, bots $((bots1 - bots0)) ticks in 10 s; $desyncs"
    if $packets && [[ $transport == quic ]]; then
        awk -F, '/syscalls/ {sub("syscalls:sys_enter_", "", $3); printf "  relay %s calls: %s\n", $3, $1}' "$work/calls.csv"
        # Packet sizes by direction (UDP payload bytes), the most frequent first.
        tcpdump -n -q -r "$work/cap.pcap" 2>/dev/null |
            awk -v port="$port" '{dir = ($3 ~ "\\." port "$") ? "relay -> bots" : "bots -> relay"; print dir, $NF}' |
            sort | uniq -c | sort -rn | head -12 | awk '{printf "  %s %s %s: %s packets of %s bytes\n", $2, $3, $4, $1, $5}'
    fi
    kill "$relay"
    wait "$relay" 2>/dev/null || true
    relay=
    if [[ -n $delayer ]]; then
        kill "$delayer"
        wait "$delayer" 2>/dev/null || true
        delayer=
    fi
done
