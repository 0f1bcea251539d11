#!/bin/sh
# Every close code against the Rust bots: connections the fake relay saw in 8 s,
# and what the bots reported. Runs 6 at a time on ports 7620+; about 50 s in all.
cd "$(dirname "$0")"
mkdir -p out/close
i=0
for code in 1000 1001 1002 1003 1007 1008 1009 1010 1011 1012 1013 1014 3000 3999 4000 4001 4002 4003 4400 4499 4500 4501 4502 4503 4504 4999; do
  port=$((7620 + i % 6))
  timeout 30 python3 run_bots.py close_code --port $port --bots-secs 8 --watch 3 --arg code=$code > out/close/$code.txt 2>&1 &
  i=$((i + 1))
  [ $((i % 6)) -eq 0 ] && wait
done
wait
for code in 1000 1001 1002 1003 1007 1008 1009 1010 1011 1012 1013 1014 3000 3999 4000 4001 4002 4003 4400 4499 4500 4501 4502 4503 4504 4999; do
  python3 - "$code" <<'PY'
import json, sys, re
code = sys.argv[1]
text = open("out/close/%s.txt" % code).read()
d = json.loads(text.splitlines()[0])
gave = re.findall(r"VIOLATED: \d+ clients gave up: (.*)", text)
print("%-5s connections=%-4d bots_exit=%s gave_up=%s" % (code, d["fake"].get("connections", -1), d["bots_exit"], gave[0][:70] if gave else "-"))
PY
done
