#!/bin/bash
# The bot fleet (80 arena bots, 30 inputs/s each, every bot dropping its connection and
# resuming about once a minute, every checksum verified) against the relay while this
# round's attacks run one after another beside it. The bots' report says whether any
# invariant broke (inputs lost, desyncs, messages lost across resumes, unexpected closes).
# Needs TR_PID, PORT (7722) and PY (the venv's python) as for the scripts.
cd "$(dirname "$0")"
PORT=${PORT:-7722}; OUT=${OUT:-/tmp/atk22}
BOTS=${BOTS:-/work/main/target/release/tickrelay-bots}
timeout 90 "$BOTS" --url ws://127.0.0.1:$PORT/ws --rooms 4 --members 20 --input-rate 30 --duration-secs 70 \
  --ramp-up-secs 3 --warm-up-secs 5 --churn 1.0 --churn-resume-share 1.0 --progress-secs 0 \
  --json $OUT/bots_mixed.json > $OUT/bots_mixed.txt 2>&1 &
BP=$!
sleep 6
RATE=200 SECS=8 timeout 60 $PY blocked_flood.py
TAIL=text RATE=10 SECS=7 timeout 60 $PY blocked_flood.py
EVERY=0.05 SECS=8 timeout 80 $PY resume_storm.py
CODE=1000 timeout 60 $PY close_during.py
MODE=contflood RATE=400000 SECS=4 timeout 60 $PY frames.py
TAG=m$$ CHURN_B=8000 CHURN_MS=10 S=20 RATE=60000 SECS=10 timeout 60 $PY slowread.py
wait $BP
tail -40 $OUT/bots_mixed.txt
