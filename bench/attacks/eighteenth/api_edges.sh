#!/bin/bash
# HTTP API edges against r1 (port 7851)
P=${P:-7851}; A="Authorization: Bearer attack18-api-token-0123456789abcdef"
req() { printf '%-60s ' "$1 $2"; curl -s -o ${TMPDIR:-/tmp}/api18.out -w '%{http_code}' -X $1 -H "$A" "${@:3}" "http://127.0.0.1:$P$2"; echo " $(head -c 150 ${TMPDIR:-/tmp}/api18.out | tr '\n' ' ')"; }
req GET "/rooms/apiroom"
req DELETE "/rooms/apiroom/users/anonymous-1?ban_secs=2592000"
req DELETE "/rooms/apiroom/users/anonymous-1?ban_secs=2592001"
req DELETE "/rooms/apiroom/users/anonymous-1?ban_secs=-1"
req DELETE "/rooms/apiroom/users/anonymous-1?ban_secs=1&ban_secs=99999999999"
req DELETE "/rooms/apiroom/users/%FF?ban_secs=5"
req DELETE "/rooms/apiroom/users/a%00b?ban_secs=5"
req DELETE "/rooms/apiroom/users/$(python3 -c 'print("u"*300)')?ban_secs=5"
req DELETE "/rooms/apiroom/users/%2F?ban_secs=5"
req POST "/rooms/apiroom/events?kind=a%0Ab" -d x
req POST "/rooms/apiroom/events?kind=$(python3 -c 'print("k"*257)')" -d x
req POST "/rooms/apiroom/events?kind=k&targets=1,2,x" -d x
req POST "/rooms/apiroom/events?kind=k&targets=$(python3 -c 'print(",".join(["1"]*100000))')" -d x
req POST "/rooms/apiroom/events?kind=k&targets=18446744073709551616" -d x
req GET "/rooms?limit=0&after=%FF"
req GET "/rooms?filter.=x"
req GET "/rooms?limit=99999999999999999999"
req GET "/rooms/apiroom/../../metrics"
req GET "/rooms/%2e%2e"
req DELETE "/rooms/apiroom?reason=$(python3 -c 'print("r"*5000)')"
req GET "/rooms/apiroom"
