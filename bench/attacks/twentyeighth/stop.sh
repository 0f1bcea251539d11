#!/bin/bash
WORK=${WORK:-/tmp/a28}
[ -f $WORK/relay.pid ] && kill "$(cat $WORK/relay.pid)" 2>/dev/null; rm -f $WORK/relay.pid; echo stopped
