#!/bin/sh
# run_web.sh SCENARIO PORT SECONDS [--arg K=V ...]: the fake relay, and the TypeScript
# client driven from Node (web_client.mjs) against it; both stop by themselves.
cd "$(dirname "$0")"
scenario=$1; port=$2; secs=$3; shift 3
python3 fakerelay.py --port "$port" --scenario "$scenario" --duration $((secs + 6)) "$@" > out/web_fake_$scenario.json 2>/dev/null &
fake=$!
sleep 0.8
timeout $((secs + 15)) node --experimental-websocket --max-old-space-size=4096 web_client.mjs "$port" "$secs" 2>&1 | grep -v ExperimentalWarning | tail -5
kill -TERM $fake 2>/dev/null; wait $fake 2>/dev/null
python3 -c "import json,sys; d=json.load(open('out/web_fake_$scenario.json')); d.pop('queries',None); ct=d['conn_times']; d['conn_times']=ct[:6]+(['...']+ct[-3:] if len(ct)>9 else ct[6:]); print('fake:', json.dumps(d)[:700])"
