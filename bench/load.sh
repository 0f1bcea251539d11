#!/usr/bin/env bash
# Load-scenario runner: builds the release binaries, starts a relay on its own port
# with its own temporary directory and configuration, runs one scenario with the bot
# fleet, samples the relay's CPU time and resident memory from /proc once a second,
# stops everything, and writes a Markdown table to stdout and to a file.
#
#   bench/load.sh [options] t4|t5|t6
#
# Scenarios (the targets are in BENCHMARKS.md):
#   t4  2,000 bots over wss, 100 arena rooms of 20 at 30 Hz, 30 inputs/s each
#   t5  19,000 idle wss connections, each joined to a relay room (950 rooms of 20)
#   t6  t4 over another transport (--transport, default quic), passed to the bots
#
# Options:
#   --duration SECS      how long the bots run, ramp-up included (t4/t6: 60, t5: 150)
#   --ramp-up SECS       connect the bots over this time (t4/t6: 10, t5: 90)
#   --rooms N            rooms of 20 bots instead of the scenario's (t4/t6: 100, t5: 950),
#                        to find the load one core carries
#   --naive              run the relay with --naive-fanout (full snapshot per member
#                        per tick, encoded per member): the baseline to compare with
#   --transport NAME     wss or quic: the URL scheme the bots connect with (t6: quic)
#   --processes N        bot worker processes (default: the bots decide)
#   --verify-share S     share of bots that mirror their room in full and verify every
#                        checksum (default 1); the rest follow ticks and input acks only,
#                        which leaves more of a shared machine to the relay
#   --nice-bots          run the bots at the lowest CPU priority (nice 19), so that on a
#                        machine they saturate the relay still runs first: the relay
#                        send delay then shows the relay's own delay
#   --pin                pin the relay to CPU 0 and the bots to CPU 1 (taskset), so the
#                        relay's CPU, send delay and the bots' latency are not each
#                        other's (T4/T6 as restated in issue 13)
#   --server-arg ARG     extra relay flag (repeatable)
#   --bots-arg ARG       extra bots flag (repeatable)
#   --out FILE           also write the table here [default: load-SCENARIO-UTCSTAMP.md]
#   --no-build           use the binaries already built
#   --keep               keep the temporary directory (logs, samples, reports)
#
# Binaries come from $CARGO_TARGET_DIR (default: target/) under release/.
set -euo pipefail
source "$(dirname "$0")/relay_config.sh"

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit "${1:-0}"; }

root=$(cd "$(dirname "$0")/.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$root/target}
scenario="" rooms="" duration="" ramp="" naive=0 transport="" processes="" verify="" nice_bots=0 pin=0 out="" build=1 keep=0
server_args=() bots_args=()
while [[ $# -gt 0 ]]; do
    case $1 in
        --duration) duration=$2; shift ;;
        --ramp-up) ramp=$2; shift ;;
        --rooms) rooms=$2; shift ;;
        --naive) naive=1 ;;
        --transport) transport=$2; shift ;;
        --processes) processes=$2; shift ;;
        --verify-share) verify=$2; shift ;;
        --nice-bots) nice_bots=1 ;;
        --pin) pin=1 ;;
        --server-arg) server_args+=("$2"); shift ;;
        --bots-arg) bots_args+=("$2"); shift ;;
        --out) out=$2; shift ;;
        --no-build) build=0 ;;
        --keep) keep=1 ;;
        -h|--help) usage 0 ;;
        t4|t5|t6) scenario=$1 ;;
        *) echo "load.sh: unknown argument '$1'" >&2; usage 2 >&2 ;;
    esac
    shift
done
[[ -n $scenario ]] || usage 2 >&2

# --- the scenario -----------------------------------------------------------------
case $scenario in
    t4|t6) default_rooms=100; members=20; room_type=arena; input_rate=30; : "${duration:=60}" "${ramp:=10}" ;;
    t5) default_rooms=950; members=20; room_type=relay; input_rate=0; : "${duration:=150}" "${ramp:=90}" ;;
esac
if [[ $scenario == t6 ]]; then : "${transport:=quic}"; fi
: "${rooms:=$default_rooms}"
bots=$((rooms * members))

# --- build ---------------------------------------------------------------------------
if ((build)); then
    echo "load.sh: building release binaries (target dir $target_dir)" >&2
    (cd "$root" && CARGO_TARGET_DIR=$target_dir cargo build --release -q -p tickrelay -p tickrelay-bots)
fi
relay_bin=$target_dir/release/tickrelay
bots_bin=$target_dir/release/tickrelay-bots
case ${transport:-wss} in
    wss | quic) ;;
    *) echo "load.sh: unknown transport '$transport' (wss or quic)" >&2; exit 2 ;;
esac

# --- a private directory, port and configuration ---------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/tickrelay-load.XXXXXX")
port=$(free_port)
url=wss://127.0.0.1:$port/ws
if [[ $transport == quic ]]; then url=quic://127.0.0.1:$port; fi
bench_relay_config "$port" "$work/cert.pem" >"$work/relay.toml"
if ((naive)); then server_args+=(--naive-fanout); fi

relay_pid="" bots_pid="" sampler_pid=""
cleanup() {
    # The bots run in their own session: end the coordinator and its workers at once.
    [[ -n $bots_pid ]] && kill -TERM -- "-$bots_pid" 2>/dev/null || true
    [[ -n $sampler_pid ]] && kill "$sampler_pid" 2>/dev/null || true
    if [[ -n $relay_pid ]] && kill -TERM "$relay_pid" 2>/dev/null; then
        for _ in $(seq 50); do kill -0 "$relay_pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$relay_pid" 2>/dev/null || true
    fi
    if ((keep)); then echo "load.sh: logs and samples kept in $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the relay -------------------------------------------------------------------------
relay_cmd=("$relay_bin" --config "$work/relay.toml" --log warn "${server_args[@]}")
relay_prefix=() bots_prefix=()
if ((pin)); then relay_prefix=(taskset -c 0) bots_prefix=(taskset -c 1); fi
(cd "$work" && exec "${relay_prefix[@]}" "${relay_cmd[@]}") >"$work/relay.log" 2>&1 &
relay_pid=$!

metrics() { curl -sk --max-time 2 "https://127.0.0.1:$port/metrics" || true; }
# The value of one metric (summed over its label sets) from a /metrics text.
metric() { awk -v name="$1" '$1 == name || index($1, name "{") == 1 { sum += $2 } END { printf "%d\n", sum }'; }

for _ in $(seq 100); do
    curl -skf --max-time 1 "https://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    kill -0 "$relay_pid" 2>/dev/null || { cat "$work/relay.log" >&2; exit 1; }
    sleep 0.1
done

# --- sampling: CPU ticks and RSS from /proc, connections from /metrics, once a second --
clk_tck=$(getconf CLK_TCK)
sample() {
    local stat rss hwm
    stat=$(<"/proc/$relay_pid/stat") || return 1
    stat=${stat##*) }                 # fields from the 3rd on: utime is 14th, stime 15th
    read -r -a f <<<"$stat"
    rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$relay_pid/status")
    hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$relay_pid/status")
    printf '%s %s %s %s\n' "$(date +%s.%N)" $((f[11] + f[12])) "$rss" "$hwm"
}
# The bots' CPU ticks (their own and their worker processes', once those ended), with the
# time, while they run: the last line is the latest.
bots_ticks() {
    local pid stat
    pid=$(<"$work/bots.pid") || return 0
    stat=$(<"/proc/$pid/stat") || return 0
    stat=${stat##*) }
    read -r -a f <<<"$stat"
    ((${#f[@]} > 14)) || return 0
    echo "$(date +%s.%N) $((f[11] + f[12] + f[13] + f[14]))" >>"$work/bots.ticks"
}
(
    # A failed read must not end the sampling (the script's own `set -e`).
    set +e
    while sample; do
        echo "$(metrics | metric tickrelay_connections)" >>"$work/connections"
        bots_ticks
        sleep 1
    done
) >"$work/samples" 2>/dev/null &
sampler_pid=$!

# --- the bots -------------------------------------------------------------------------
bots_cmd=("$bots_bin" --url "$url" --cert "$work/cert.pem" --rooms "$rooms" --members "$members"
    --room-type "$room_type" --input-rate "$input_rate" --duration-secs "$duration"
    --ramp-up-secs "$ramp" --progress-secs 10 --json "$work/bots.json")
if [[ -n $processes ]]; then bots_cmd+=(--processes "$processes"); fi
if [[ -n $verify ]]; then bots_cmd+=(--verify-share "$verify"); fi
bots_cmd+=("${bots_args[@]}")

metrics >"$work/metrics.before"
before=$(sample)
echo "load.sh: $scenario: $bots bots for ${duration} s against $url (relay pid $relay_pid)" >&2
bots_status=0
if ((nice_bots)); then bots_prefix+=(nice -n 19); fi
setsid "${bots_prefix[@]}" "${bots_cmd[@]}" >"$work/bots.out" &
bots_pid=$!
echo "$bots_pid" >"$work/bots.pid"
# The bots stop on their own after --duration-secs; give them a minute more at most.
limit=$(awk -v d="$duration" 'BEGIN { printf "%d", d + 60 }')
for ((waited = 0; waited < limit; waited++)); do
    kill -0 "$bots_pid" 2>/dev/null || break
    sleep 1
done
if kill -0 "$bots_pid" 2>/dev/null; then
    echo "load.sh: the bots overran their time; stopping them" >&2
    kill -TERM -- "-$bots_pid" 2>/dev/null || true
fi
wait "$bots_pid" || bots_status=$?
bots_pid=""
after=$(sample)
metrics >"$work/metrics.after"
cat "$work/bots.out" >&2

# --- the report -------------------------------------------------------------------------
# A value from the bots' Markdown table ("| latency p99 | 3.21 ms |"), unit dropped.
bot() { awk -F'|' -v k="$1" '{ gsub(/^ +| +$/, "", $2) } $2 == k { split($3, v, " "); print v[1] }' "$work/bots.out"; }
counter() { metric "$1" <"$work/metrics.after"; }
delta() { echo $(($(metric "$1" <"$work/metrics.after") - $(metric "$1" <"$work/metrics.before"))); }

read -r t0 cpu0 rss0 _ <<<"$before"
read -r t1 cpu1 rss1 hwm <<<"$after"
# A quantile of the relay's state send delay while the bots ran, as the upper bound of
# the histogram bucket it falls in ("<= 15 ms").
send_delay() {
    # /metrics lists the buckets in ascending order, +Inf last.
    awk -v q="$1" -F'[{}" ]+' '
        $1 != "tickrelay_state_send_delay_seconds_bucket" { next }
        FNR == NR { before[$3] = $4; next }
        { le[++n] = $3; count[n] = $4 - before[$3] }
        END {
            if (n == 0 || count[n] <= 0) { print "-"; exit }
            for (i = 1; i <= n; i++) if (count[i] >= q * count[n]) {
                print (le[i] == "+Inf" ? "> 5000" : "<= " le[i] * 1000); exit
            }
        }' "$work/metrics.before" "$work/metrics.after"
}
ticks=$(delta tickrelay_ticks_total)
overruns=$(delta tickrelay_tick_overruns_total)
held=$(sort -n "$work/connections" | tail -1)
# RSS when the most connections were held (T5), for memory per connection.
rss_held=$(paste -d' ' "$work/samples" "$work/connections" | sort -k5,5n -k3,3n | tail -1 | cut -d' ' -f3)
read -r cores rss_per_conn <<<"$(awk -v c0="$cpu0" -v c1="$cpu1" -v t0="$t0" -v t1="$t1" -v hz="$clk_tck" \
    -v r0="$rss0" -v r="$rss_held" -v n="$held" \
    'BEGIN { printf "%.2f %.1f\n", (c1 - c0) / hz / (t1 - t0), n ? (r - r0) / n : 0 }')"
# The bots' CPU from their first to their last sample (their run, less a second at
# most at either end).
bots_cores=$(awk 'NR == 1 { t0 = $1; c0 = $2 } { t = $1; c = $2 }
    END { if (NR > 1 && t > t0) printf "%.2f", (c - c0) / hz / (t - t0); else print "-" }' \
    hz="$clk_tck" "$work/bots.ticks" 2>/dev/null || echo -)
asked_inputs=$((bots * input_rate))
mode=shared short_cmd="bench/load.sh $scenario --duration $duration"
if ((naive)); then mode=naive short_cmd+=" --naive"; fi
if [[ $rooms != "$default_rooms" ]]; then short_cmd+=" --rooms $rooms"; fi
if [[ -n $transport ]]; then short_cmd+=" --transport $transport"; fi
if [[ -n $verify ]]; then short_cmd+=" --verify-share $verify"; fi
if ((nice_bots)); then short_cmd+=" --nice-bots"; fi
if ((pin)); then short_cmd+=" --pin"; fi
stamp=$(date -u +%Y%m%dT%H%M%SZ)
: "${out:=load-$scenario-$stamp.md}"

{
    echo "| scenario | command | duration | connections | latency p50 / p99 / max | relay send delay p50 / p99 | frames/s | inputs/s sent (asked) | bytes/s per client | desyncs (checksums verified) | overruns | server CPU | bots CPU | RSS start / peak | RSS per connection |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    printf '| %s %s %s | `%s` | %s s | %s | %s / %s / %s ms | %s / %s ms | %s | %s (%s) | %s | %s (%s) | %s of %s | %s cores | %s cores | %d / %d MiB | %s KiB |\n' \
        "$scenario" "${transport:-wss}" "$mode" "$short_cmd" "$(bot duration)" "$held" \
        "$(bot 'latency p50')" "$(bot 'latency p99')" "$(bot 'latency max')" "$(send_delay 0.5)" "$(send_delay 0.99)" \
        "$(bot 'state frames / s')" "$(bot 'inputs sent / s')" "$asked_inputs" "$(bot 'bytes / s per client')" "$(bot desyncs)" "$(bot 'checksums verified')" \
        "$overruns" "$ticks" "$cores" "$bots_cores" $((rss0 / 1024)) $((hwm / 1024)) "$rss_per_conn"
    echo
    echo "- $stamp, bots exit status $bots_status ($(grep -E '^(OK|VIOLATED)' "$work/bots.out" | paste -sd';' -))"
    echo "- relay: \`${relay_cmd[*]/#$work\//}\` (tickrelay $("$relay_bin" --version | cut -d' ' -f2), $(nproc) cores)"
    echo "- bots: \`${bots_cmd[*]/#$work\//}\`"
    echo "- connections = most held at once (the relay's \`tickrelay_connections\` gauge, sampled each second);" \
        "relay send delay = from a tick's time stamp to its frame written to the socket (tickrelay_state_send_delay_seconds, bucket bound);" \
        "inputs/s sent = inputs the bots sent per second after the warm-up (asked: bots × input rate; fewer when the bots' CPU is saturated);" \
        "server CPU = CPU time over wall time while the bots ran (ramp-up included); bots CPU = the bots' own, sampled each second while they ran (one core's worth is 1.00: saturated when pinned); RSS per connection = (RSS at the most connections - RSS before the bots) / connections"
} | tee "$out"
echo "load.sh: written to $out" >&2
