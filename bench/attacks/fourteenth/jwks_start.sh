#!/bin/bash
# How a start (and --check) behaves when the identity provider misbehaves.
# Each mode: fake IdP on 127.0.0.1:18080, relay started with jwks_url, time to exit and code.
here=$(cd "$(dirname "$0")" && pwd); cd "$here"
P=18080
for mode in "refuse" "close" "hang" "trickle" "huge" "infinite" "bigheaders" "status500" "ok set_A.json" "ok set_many_2000.json"; do
  echo "$mode" > mode_start
  : > idp_start.log
  python3 fakeidp.py $P mode_start idp_start.log 40 & IDP=$!
  sleep 0.5
  if [ "$mode" = "refuse" ]; then kill $IDP; wait $IDP 2>/dev/null; fi
  t0=$(date +%s.%N)
  timeout 30 "${TR_BIN:-$here/../../../target/release/tickrelay}" --insecure-plain --listen 127.0.0.1:17543 --auth jwt \
     --set auth.jwks_url=http://127.0.0.1:$P/jwks.json --check > start_out.txt 2>&1
  rc=$?
  t1=$(date +%s.%N)
  printf "mode=%-22s rc=%s secs=%.1f  %s\n" "$mode" $rc $(echo "$t1-$t0"|bc) "$(grep -i -m1 'jwks\|signing\|key' start_out.txt | cut -c1-200)"
  kill $IDP 2>/dev/null; wait $IDP 2>/dev/null
done
