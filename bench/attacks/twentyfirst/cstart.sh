#!/bin/bash
# cstart.sh NAME PORT [extra flags]  -> cluster node on plain ws, Redis on 6421, files in $RUN
name=$1; port=$2; shift 2
cd ${RUN:-/tmp/attack21}
TICKRELAY_API_TOKEN=attack21-api-token-0123456789abcdef ${BIN:-/tmp/attack21/tickrelay-head} --listen 127.0.0.1:$port --insecure-plain --cluster redis://127.0.0.1:6421 --public-url ws://127.0.0.1:$port/ws --node-id $name "$@" >$name.log 2>&1 &
echo $! > $name.pid
