#!/bin/bash
# s2c with an observer: the thirteenth session's s2_redis_empty_v3.sh (its rerun/ version, copied beside
# this script with common.sh), and observe_relay.py watching the five relay rooms through node 1 every
# 1.5 s from 40 s in (as it ran: started with the bots, which start a few seconds after the nodes).
# Usage: D=/tmp/soak14/s2c_obs RP=6496 P=795 MODE=kill PROBE=1 TERM_DELAY=3 ./s2_redis_empty_v3_obs.sh
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
P=${P:-782}
(sleep 45; timeout 200 python3 "$HERE/observe_relay.py" 175 1.5 "${P}1" r2-relay-0 r2-relay-1 r2-relay-2 r2-relay-3 r2-relay-4) &
exec "$HERE/s2_redis_empty_v3.sh"
