#!/bin/bash
# cstart.sh NAME PORT [extra]  -> cluster node on plain ws
name=$1; port=$2; shift 2
TICKRELAY_API_TOKEN=attack19-api-token-0123456789abcdef ${BIN:-./tickrelay-head} --listen 127.0.0.1:$port --insecure-plain --cluster redis://127.0.0.1:6419 --public-url ws://127.0.0.1:$port/ws --node-id $name "$@" >$name.log 2>&1 &
echo $! > $name.pid
