#!/bin/bash
# usage: start.sh NAME PORT [extra args...]  -> writes NAME.pid, NAME.log
name=$1; port=$2; shift 2
TICKRELAY_API_TOKEN=attack19-api-token-0123456789abcdef ${BIN:-./tickrelay-head} --listen 127.0.0.1:$port "$@" >$name.log 2>&1 &
echo $! > $name.pid
sleep 0.7
