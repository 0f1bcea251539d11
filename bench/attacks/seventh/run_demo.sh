#!/bin/sh
# run_demo.sh SCENARIO PORT SECONDS [--arg K=V ...]: the fake relay serving the demo page,
# and headless Chromium on it (demo_browser.mjs); both stop by themselves.
cd "$(dirname "$0")"
scenario=$1; port=$2; secs=$3; shift 3
python3 fakerelay.py --port "$port" --scenario "$scenario" --duration $((secs + 15)) "$@" > out/demo_fake_$scenario.json 2>/dev/null &
fake=$!
sleep 0.8
timeout $((secs + 25)) node demo_browser.mjs "$port" "$secs"
kill -TERM $fake 2>/dev/null; wait $fake 2>/dev/null
python3 -c "import json; d=json.load(open('out/demo_fake_$scenario.json')); print('fake:', {k: d.get(k) for k in ('connections','client_msgs','input_seqs')})"
