#!/bin/bash
# e3: bots over 3 nodes; node 1 SIGTERMed at 15 s and (RESTART=1) started again at once under the same id.
HERE=$(cd "$(dirname "$0")" && pwd); BIN=${BIN:-$HERE/../../../target/release}; RUN=${RUN:-/tmp/tickrelay-attack11}; mkdir -p "$RUN"; cd "$RUN"
TOKEN=$(cd $HERE && python3 -c "import lib11; print(lib11.jwt('bot', 3600))")
timeout 70 $BIN/tickrelay-bots --url ws://127.0.0.1:7811/ws --url ws://127.0.0.1:7812/ws --url ws://127.0.0.1:7813/ws \
  --token "$TOKEN" --rooms 6 --members 5 --duration-secs 40 --input-rate 10 --expect-node-loss --room-prefix ${PREFIX:-e3} \
  --json $RUN/e3-${PREFIX:-e3}.json > $RUN/e3-${PREFIX:-e3}.out 2>&1 &
BP=$!
sleep 15
old=$(cat node1.pid)
$HERE/node.sh 1 stop
if [ "${RESTART:-1}" = 1 ]; then
  while kill -0 $old 2>/dev/null; do sleep 0.02; done
  $HERE/node.sh 1 start
  echo "n1 restarted"
fi
wait $BP
tail -45 $RUN/e3-${PREFIX:-e3}.out
