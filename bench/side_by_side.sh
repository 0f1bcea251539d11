#!/usr/bin/env bash
# Side-by-side runner: Colyseus 0.18 and tickrelay on the same arena workloads, one
# after the other on this machine, and one Markdown table per workload.
#
#   bench/side_by_side.sh [options]
#
# Workloads (an arena room: 100 x 100, NPCs wandering at 4 units/s, one avatar per
# client moved by its latest input at 10 units/s; each client sends one input per tick):
#   w1a  one room of 200 clients, 60 NPCs, 20 Hz
#   w1b  one room of 400 clients, 60 NPCs, 20 Hz
#   w2   100 rooms of 20 clients, 16 NPCs each, 30 Hz (the T4 shape)
#
# Servers, each a fresh process per workload, in this order:
#   colyseus  bench/peers/colyseus/server.mjs (@colyseus/core 0.18, ws-transport,
#             plain ws://), driven by bench/peers/colyseus/bots.mjs (@colyseus/sdk)
#   wss       the tickrelay release binary over wss://, driven by tickrelay-bots
#   ws        the same with --insecure-plain, bots over ws:// (the TLS share is the
#             difference between the two)
#   floor     bench/floor.rs over wss://: the least a relay can do (one thread; per
#             tick one write of a prebuilt frame of tickrelay's size to every client,
#             inputs read and dropped), driven by tickrelay-bots --verify-share 0
#   floor-ws  the same with --plain, bots over ws://: the floor for the ws row
# tickrelay gets a temporary TOML with the workload's tick rate, NPCs and member cap,
# per-IP caps lifted (every bot is 127.0.0.1), and QUIC off (not measured here).
#
# Each run: the bots connect over the ramp-up, settle, and then the steady window is
# measured: the server's CPU time (utime + stime of the server process, all its
# threads, bots excluded) from /proc/PID/stat at the window's start and end, its RSS
# from /proc/PID/status each second, and the bots' own counts of the window (frames,
# bytes, entity updates, tick-to-client latency).
#
# Options:
#   --duration SECS      the steady window measured per server (default 20)
#   --rounds N           run every server N times per workload, in turn (round 1 of
#                        each, then round 2, …), and add a table of the CPU ratios
#                        per round with their median: one run of each decides little
#                        on a shared machine (default 1)
#   --only LIST          workloads to run, comma-separated: w1a,w1b,w2 (default all)
#   --servers LIST       servers to run, comma-separated: colyseus,wss,ws,floor,floor-ws
#                        (default all; the floors take their frame size from the wss
#                        run of their round, else the ws run, else an estimate)
#   --ramp-up SECS       connect the bots over this time (w1: 5, w2: 10)
#   --settle SECS        wait this long after the ramp-up before the window (default 3)
#   --verify-share S     tickrelay-bots' share of bots that mirror their room in full and
#                        verify checksums (default 0.1; the rest follow ticks only).
#                        Colyseus bots always decode every patch (the schema needs it)
#   --js-processes N     node processes for the Colyseus bots (default: one per 200
#                        bots, at most one per CPU the bots may use)
#   --server-cpus LIST   the CPUs the server is pinned to (taskset -c; default 0)
#   --bots-cpus LIST     the CPUs the bots are pinned to (default 1). Pinning is on by
#                        default when taskset exists and there are two or more CPUs,
#                        the same for every server. The Colyseus JS bots need
#                        several times the CPU of tickrelay-bots: when their event-loop
#                        delay (notes column) nears a tick, give them more CPUs
#   --no-pin             do not pin
#   --out FILE           also write the tables here [default: side-by-side-UTCSTAMP.md]
#   --no-build           use the release binaries already built
#   --keep               keep the temporary directory (logs, samples, bot reports)
#
# Needs node and npm (node 20 installs Colyseus 0.18 with engine warnings), python3,
# curl. Installs the Colyseus peer with `npm ci` when its node_modules is missing.
# Binaries come from $CARGO_TARGET_DIR (default: target/) under release/.
set -euo pipefail
source "$(dirname "$0")/relay_config.sh"

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit "${1:-0}"; }

root=$(cd "$(dirname "$0")/.." && pwd)
peer=$root/bench/peers/colyseus
target_dir=${CARGO_TARGET_DIR:-$root/target}
window=20 only=w1a,w1b,w2 servers=colyseus,wss,ws,floor,floor-ws ramp="" settle=3 verify=0.1 js_processes=""
pin=1 server_cpus=0 bots_cpus=1 out="" build=1 keep=0 rounds=1
while [[ $# -gt 0 ]]; do
    case $1 in
        --duration) window=$2; shift ;;
        --only) only=$2; shift ;;
        --servers) servers=$2; shift ;;
        --ramp-up) ramp=$2; shift ;;
        --settle) settle=$2; shift ;;
        --verify-share) verify=$2; shift ;;
        --js-processes) js_processes=$2; shift ;;
        --server-cpus) server_cpus=$2; shift ;;
        --bots-cpus) bots_cpus=$2; shift ;;
        --no-pin) pin=0 ;;
        --out) out=$2; shift ;;
        --rounds) rounds=$2; shift ;;
        --no-build) build=0 ;;
        --keep) keep=1 ;;
        -h|--help) usage 0 ;;
        *) echo "side_by_side.sh: unknown argument '$1'" >&2; usage 2 >&2 ;;
    esac
    shift
done
for w in ${only//,/ }; do
    case $w in w1a | w1b | w2) ;; *) echo "side_by_side.sh: unknown workload '$w' (w1a, w1b, w2)" >&2; exit 2 ;; esac
done
for s in ${servers//,/ }; do
    case $s in colyseus | wss | ws | floor | floor-ws) ;; *) echo "side_by_side.sh: unknown server '$s' (colyseus, wss, ws, floor, floor-ws)" >&2; exit 2 ;; esac
done
[[ $rounds =~ ^[1-9][0-9]*$ ]] || { echo "side_by_side.sh: --rounds takes a whole number from 1" >&2; exit 2; }
for tool in node npm python3 curl; do
    command -v "$tool" >/dev/null || { echo "side_by_side.sh: needs $tool" >&2; exit 2; }
done

server_cpu=() bots_cpu=()
if ((pin)) && command -v taskset >/dev/null && (($(nproc --all) >= 2)); then
    server_cpu=(taskset -c "$server_cpus") bots_cpu=(taskset -c "$bots_cpus")
else
    pin=0
fi
bots_ncpu=$("${bots_cpu[@]}" nproc)

# --- install and build -----------------------------------------------------------------
if [[ ! -d $peer/node_modules/@colyseus/core ]]; then
    echo "side_by_side.sh: installing the Colyseus peer (npm ci in $peer)" >&2
    (cd "$peer" && npm ci --no-audit --no-fund --loglevel=error)
fi
if ((build)); then
    echo "side_by_side.sh: building release binaries (target dir $target_dir)" >&2
    (cd "$root" && CARGO_TARGET_DIR=$target_dir cargo build --release -q -p tickrelay -p tickrelay-bots &&
        CARGO_TARGET_DIR=$target_dir cargo build --release -q -p tickrelay --example floor)
fi
floor_bin=$target_dir/release/examples/floor
relay_bin=$target_dir/release/tickrelay
bots_bin=$target_dir/release/tickrelay-bots

work=$(mktemp -d "${TMPDIR:-/tmp}/tickrelay-sbs.XXXXXX")
server_pid="" bots_pid=""
stop_bots() {
    # The bots run in their own session: end the coordinator and its workers at once.
    [[ -n $bots_pid ]] && kill -TERM -- "-$bots_pid" 2>/dev/null || true
    bots_pid=""
}
stop_server() {
    if [[ -n $server_pid ]] && kill -TERM "$server_pid" 2>/dev/null; then
        for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
    server_pid=""
}
cleanup() {
    stop_bots
    stop_server
    if ((keep)); then echo "side_by_side.sh: logs and reports kept in $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Node processes for n Colyseus bots: one per 200, at most one per CPU they may use.
js_processes_for() { local n=$((($1 + 199) / 200)); echo $((n < bots_ncpu ? n : bots_ncpu)); }


# utime + stime (clock ticks, all threads) of the server, and the time.
clk_tck=$(getconf CLK_TCK)
cpu_sample() {
    local stat
    stat=$(<"/proc/$server_pid/stat") || return 1
    stat=${stat##*) }                 # fields from the 3rd on: utime is 14th, stime 15th
    read -r -a f <<<"$stat"
    printf '%s %s\n' "$(date +%s.%N)" $((f[11] + f[12]))
}
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$server_pid/status"; }

# The relay's /metrics into $run/metrics.NAME (tickrelay only).
metrics() { [[ -z $metrics_url ]] || curl -sk --max-time 2 "$metrics_url" >"$run/metrics.$1" || true; }

# Waits until `curl ARGS` succeeds, or fails if the server died.
wait_ready() {
    for _ in $(seq 150); do
        curl -s -o /dev/null --max-time 1 "$@" && return 0
        kill -0 "$server_pid" 2>/dev/null || { cat "$run/server.log" >&2; return 1; }
        sleep 0.1
    done
    echo "side_by_side.sh: the server did not answer $*" >&2
    cat "$run/server.log" >&2
    return 1
}

# --- one server on one workload ------------------------------------------------------------
# Sets: run (its directory). Writes $run/result.json.
run_one() {
    local server=$1 round=$2 port url bots_cmd=() total metrics_url=""
    run=$work/$workload-$server-$round
    mkdir -p "$run"
    port=$(free_port)
    total=$((warm + window))
    case $server in
        colyseus)
            (cd "$peer" && exec "${server_cpu[@]}" node server.mjs --port "$port" --tick-rate "$hz" --npcs "$npcs") \
                >"$run/server.log" 2>&1 &
            server_pid=$!
            wait_ready "http://127.0.0.1:$port/"
            bots_cmd=(node "$peer/bots.mjs" --url "ws://127.0.0.1:$port" --rooms "$rooms" --members "$members"
                --input-rate "$hz" --duration-secs "$total" --ramp-up-secs "$ramp_w" --warm-up-secs "$warm"
                --processes "${js_processes:-$(js_processes_for $((rooms * members)))}" --json "$run/bots.json")
            ;;
        wss | ws)
            {
                bench_relay_config "$port" "$run/cert.pem"
                printf '\n[quic]\nenabled = false\n'
                bench_arena_room_type "$hz" "$members" "$npcs"
            } >"$run/relay.toml"
            local flags=() scheme=wss
            if [[ $server == ws ]]; then flags=(--insecure-plain) scheme=ws; fi
            (cd "$run" && exec "${server_cpu[@]}" "$relay_bin" --config relay.toml --log warn "${flags[@]}") \
                >"$run/server.log" 2>&1 &
            server_pid=$!
            if [[ $scheme == ws ]]; then wait_ready "http://127.0.0.1:$port/healthz"; else wait_ready -k "https://127.0.0.1:$port/healthz"; fi
            metrics_url=$([[ $scheme == ws ]] && echo http || echo https)://127.0.0.1:$port/metrics
            url=$scheme://127.0.0.1:$port/ws
            bots_cmd=("$bots_bin" --url "$url" --cert "$run/cert.pem" --rooms "$rooms" --members "$members"
                --room-type arena --input-rate "$hz" --duration-secs "$total" --ramp-up-secs "$ramp_w"
                --warm-up-secs "$warm" --verify-share "$verify" --progress-secs 0 --json "$run/bots.json")
            ;;
        floor | floor-ws)
            # tickrelay's frame size in this run (its wss row, else its ws row), else an
            # estimate from the encoding (about 5 bytes per avatar and 4 per NPC, 40 of
            # framing).
            local frame_bytes="" measured flags=() scheme=wss
            for measured in wss ws; do
                frame_bytes=$(python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["bytes_per_frame"]))' \
                    "$work/$workload-$measured-$round/result.json" 2>/dev/null) && break
            done
            [[ -n $frame_bytes ]] || frame_bytes=$((members * 5 + npcs * 4 + 40))
            if [[ $server == floor-ws ]]; then flags=(--plain) scheme=ws; fi
            (cd "$run" && exec "${server_cpu[@]}" "$floor_bin" --listen "127.0.0.1:$port" --tick-rate "$hz" \
                --frame-bytes "$frame_bytes" --entities $((members + npcs)) --dev-cert-path cert.pem "${flags[@]}") \
                >"$run/server.log" 2>&1 &
            server_pid=$!
            if [[ $scheme == ws ]]; then wait_ready "http://127.0.0.1:$port/healthz"; else wait_ready -k "https://127.0.0.1:$port/healthz"; fi
            bots_cmd=("$bots_bin" --url "$scheme://127.0.0.1:$port/ws" --cert "$run/cert.pem" --rooms "$rooms"
                --members "$members" --room-type arena --input-rate "$hz" --duration-secs "$total"
                --ramp-up-secs "$ramp_w" --warm-up-secs "$warm" --verify-share 0 --progress-secs 0
                --json "$run/bots.json")
            ;;
    esac
    echo "side_by_side.sh: $workload $server (round $round of $rounds): $((rooms * members)) bots, ${warm} s warm-up, ${window} s window (server pid $server_pid)" >&2
    printf '%s\n' "${bots_cmd[*]}" >"$run/bots.cmd"
    local started
    started=$(date +%s.%N)
    setsid "${bots_cpu[@]}" "${bots_cmd[@]}" >"$run/bots.out" 2>"$run/bots.err" &
    bots_pid=$!
    # The window by this script's clock: from `warm` to `warm + window` after the bots
    # started, as the bots count it by theirs.
    sleep_until "$started" "$warm"
    local before after rss peak=0
    before=$(cpu_sample)
    metrics before
    for ((s = 1; s <= window; s++)); do
        sleep_until "$started" $((warm + s))
        rss=$(rss_kib) && ((rss > peak)) && peak=$rss
    done
    after=$(cpu_sample)
    metrics after
    # The bots stop on their own at the window's end; give them half a minute more.
    for _ in $(seq 300); do kill -0 "$bots_pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$bots_pid" 2>/dev/null; then
        echo "side_by_side.sh: $workload $server: the bots overran their time; stopping them" >&2
        stop_bots
    fi
    local bots_status=0
    wait "$bots_pid" || bots_status=$?
    bots_pid=""
    stop_server
    python3 - "$server" "$before" "$after" "$clk_tck" "$peak" "$bots_status" "$run" "$((rooms * members * hz))" "$round" <<'EOF' >"$run/result.json"
import json, re, sys
server, before, after, hz, peak, status, run, expected, round_ = sys.argv[1:]
t0, c0 = map(float, before.split()); t1, c1 = map(float, after.split())
cores = (c1 - c0) / float(hz) / (t1 - t0)
r = {"server": server, "round": int(round_), "cores": cores, "rss_mib": int(peak) / 1024, "bots_status": int(status)}
try:
    bots = json.load(open(f"{run}/bots.json"))
except (OSError, ValueError) as e:
    r["error"] = f"no bots report ({e})"
    print(json.dumps(r)); sys.exit()
seconds = max(bots["seconds"], 1e-3)
r["frames_per_s"] = bots["frames"] / seconds
r["cpu_us_per_frame"] = cores * 1e6 / r["frames_per_s"] if bots["frames"] else None
r["bytes_per_frame"] = bots["bytes"] / bots["frames"] if bots["frames"] else None
if server == "colyseus":
    # A share of the bots count entity updates (bots.mjs --count-share).
    r["entities_per_frame"] = bots["entity_updates_per_frame"]
    r["bytes_per_entity"] = bots["bytes_per_entity_update"]
    r["p50"], r["p99"] = bots["latency_p50_ms"], bots["latency_p99_ms"]
    r["note"] = f"bot event-loop delay p99 {bots['event_loop_delay_ms']['p99']:.1f} ms"
    if bots["joined"] != bots["bots"] or bots["dropped"]:
        r["note"] += f"; {bots['joined']} of {bots['bots']} joined, {bots['dropped']} dropped"
else:
    r["entities_per_frame"] = bots["entity_updates"] / bots["frames"] if bots["frames"] else None
    r["bytes_per_entity"] = bots["bytes"] / bots["entity_updates"] if bots["entity_updates"] else None
    table = open(f"{run}/bots.out").read()
    def row(name):
        m = re.search(r"^\| " + re.escape(name) + r" \| ([0-9.]+)", table, re.M)
        return float(m.group(1)) if m else None
    r["p50"], r["p99"] = row("latency p50"), row("latency p99")
    verdict = [l for l in table.splitlines() if l.startswith(("OK", "VIOLATED"))]
    if server.startswith("floor"):
        # The floor's frame is the same bytes for every member: it acknowledges no input.
        verdict = [re.sub(r"(; )?\d+ inputs never acknowledged", "", l) for l in verdict]
        verdict = [l for l in verdict if l.rstrip(": ") != "VIOLATED"]
    r["note"] = f"desyncs {bots['desyncs']}, checksums verified {bots['checksums']}" + ("" if status == "0" or not verdict else "; " + "; ".join(verdict))
    # The relay's own counters over the window, from /metrics.
    def metric(which, name):
        try:
            lines = open(f"{run}/metrics.{which}").read().splitlines()
        except OSError:
            return None
        return sum(float(l.split()[-1]) for l in lines if l.startswith((name + " ", name + "{")))
    def delta(name):
        a, b = metric("before", name), metric("after", name)
        return None if a is None or b is None else int(b - a)
    ticks, overruns, dropped, superseded = (delta(f"tickrelay_{n}_total") for n in ("ticks", "tick_overruns", "ticks_dropped", "frames_superseded"))
    if ticks is not None:
        r["note"] += f"; relay: {ticks} ticks, {overruns} overrun, {dropped} dropped, {superseded} frames superseded"
share = r["frames_per_s"] / int(expected)
if share < 0.99:
    r["note"] += f"; only {share:.0%} of the expected frames arrived (bots or server saturated)"
print(json.dumps(r))
EOF
}

# Sleeps until `secs` after the time stamp `from`.
sleep_until() {
    local rest
    rest=$(awk -v from="$1" -v s="$2" -v now="$(date +%s.%N)" 'BEGIN { r = from + s - now; printf "%.3f", (r > 0 ? r : 0) }')
    sleep "$rest"
}

# --- the workloads ------------------------------------------------------------------------
stamp=$(date -u +%Y%m%dT%H%M%SZ)
: "${out:=side-by-side-$stamp.md}"
: >"$work/tables.md"
for workload in ${only//,/ }; do
    case $workload in
        w1a) rooms=1 members=200 npcs=60 hz=20 ramp_w=${ramp:-5} ;;
        w1b) rooms=1 members=400 npcs=60 hz=20 ramp_w=${ramp:-5} ;;
        w2) rooms=100 members=20 npcs=16 hz=30 ramp_w=${ramp:-10} ;;
    esac
    warm=$(awk -v r="$ramp_w" -v s="$settle" 'BEGIN { printf "%d", r + s + 0.999 }')
    results=()
    for ((round = 1; round <= rounds; round++)); do
        for server in ${servers//,/ }; do
            run_one "$server" "$round"
            results+=("$run/result.json")
        done
    done
    python3 - "$workload" "$rooms" "$members" "$npcs" "$hz" "$window" "$warm" "${results[@]}" <<'EOF' | tee -a "$work/tables.md"
import json, sys
workload, rooms, members, npcs, hz, window, warm = sys.argv[1:8]
rooms, members, hz = int(rooms), int(members), int(hz)
names = {"colyseus": "Colyseus 0.18 (ws://)", "wss": "tickrelay wss://", "ws": "tickrelay ws:// (--insecure-plain)",
         "floor": "floor (wss://, bench/floor.rs)", "floor-ws": "floor (ws://, bench/floor.rs --plain)"}
def f(v, fmt):
    return "-" if v is None else format(v, fmt)
print(f"### {workload}: {rooms} room(s) of {members} clients, {npcs} NPCs per room, {hz} Hz, one input per client per tick")
print()
print(f"Expected {rooms * members * hz} frames/s delivered; {window} s window after {warm} s of ramp-up and settling.")
print()
rounds = max((json.load(open(p)).get("round", 1) for p in sys.argv[8:]), default=1)
print("| server | delivered frames/s | server CPU (cores) | CPU µs / delivered frame | bytes / frame | bytes / changed entity | changed entities / frame | client latency p50 / p99 (ms) | server RSS (MiB) | notes |")
print("|---|---|---|---|---|---|---|---|---|---|")
runs = [json.load(open(path)) for path in sys.argv[8:]]
for r in runs:
    name = names[r["server"]] + (f", round {r['round']}" if rounds > 1 else "")
    if "error" in r:
        print(f"| {name} | - | {r['cores']:.2f} | - | - | - | - | - | {r['rss_mib']:.0f} | {r['error']} |")
        continue
    print(f"| {name} | {r['frames_per_s']:.0f} | {r['cores']:.2f} | {f(r['cpu_us_per_frame'], '.1f')} "
          f"| {f(r['bytes_per_frame'], '.0f')} | {f(r['bytes_per_entity'], '.2f')} | {f(r['entities_per_frame'], '.1f')} "
          f"| {f(r['p50'], '.2f')} / {f(r['p99'], '.2f')} | {r['rss_mib']:.0f} | {r['note']} |")
print()
# Several rounds: the CPU ratios of each round (servers measured within minutes of each
# other) and their median.
pairs = [("wss", "floor"), ("ws", "floor-ws"), ("wss", "colyseus"), ("ws", "colyseus")]
cpu = {(r["server"], r["round"]): r.get("cpu_us_per_frame") for r in runs}
pairs = [p for p in pairs if any((p[0], n) in cpu and (p[1], n) in cpu for n in range(1, rounds + 1))]
if rounds > 1 and pairs:
    print("CPU µs per delivered frame, one server over another, per round:")
    print()
    print("| round | " + " | ".join(f"{a} / {b}" for a, b in pairs) + " |")
    print("|---|" + "---|" * len(pairs))
    ratios = {p: [] for p in pairs}
    for n in range(1, rounds + 1):
        cells = []
        for a, b in pairs:
            x, y = cpu.get((a, n)), cpu.get((b, n))
            if x and y:
                ratios[(a, b)].append(x / y)
            cells.append(f"{x / y:.2f}" if x and y else "-")
        print(f"| {n} | " + " | ".join(cells) + " |")
    median = lambda v: sorted(v)[len(v) // 2] if len(v) % 2 else sum(sorted(v)[len(v) // 2 - 1:len(v) // 2 + 1]) / 2
    print("| median | " + " | ".join(f"**{median(v):.2f}**" if v else "-" for v in ratios.values()) + " |")
    print()
EOF
done

{
    cat "$work/tables.md"
    echo "- $stamp, $(nproc --all) CPUs, pinned: $( ((pin)) && echo "servers on CPU $server_cpus, bots on CPU $bots_cpus" || echo no)," \
        "tickrelay $("$relay_bin" --version | cut -d' ' -f2), node $(node --version)," \
        "@colyseus/core $(node -p "require('$peer/node_modules/@colyseus/core/package.json').version")"
    pinning=" --no-pin"
    if ((pin)); then pinning=" --server-cpus $server_cpus --bots-cpus $bots_cpus"; fi
    echo "- command: \`bench/side_by_side.sh --duration $window --rounds $rounds --only $only --servers $servers --verify-share $verify$pinning\`"
} >"$work/report.md"
cp "$work/report.md" "$out"
tail -n 2 "$work/report.md"
echo "side_by_side.sh: written to $out" >&2
