#!/bin/bash
# The demo page and other HTTP paths: statuses, content types, headers. Relay on :17550.
here=$(cd "$(dirname "$0")" && pwd); cd "$here"
"${TR_BIN:-$here/../../../target/release/tickrelay}" --insecure-plain --listen 127.0.0.1:17550 --demo --set api.token=secrettokensecrettoken > relay_http.out 2>&1 &
R=$!; sleep 1
for p in /demo /demo/ /demo/index.html /demo/demo.js "/demo/../metrics" "/demo/%2e%2e/metrics" "/demo//demo.js" "/demo/demo.js?x=1" "/demo/index.html/" "/DEMO/" "//demo/" "/healthz/" "/ws/" "/rooms/%FF/events"; do
  printf "%-26s " "$p"; curl -s --path-as-is -o /dev/null -w "%{http_code} %{content_type} %{size_download}\n" "http://127.0.0.1:17550$p"; done
echo "--- headers of /demo/ and /demo/demo.js (gzip asked)"
curl -s -D - -o /dev/null http://127.0.0.1:17550/demo/
curl -s -D - -o /dev/null -H 'Accept-Encoding: gzip' http://127.0.0.1:17550/demo/demo.js
echo "--- OPTIONS /demo/, TRACE /healthz, HEAD /ws"
curl -s -X OPTIONS -o /dev/null -w "%{http_code}\n" http://127.0.0.1:17550/demo/
curl -s -X TRACE -o /dev/null -w "%{http_code}\n" http://127.0.0.1:17550/healthz
curl -s -I -o /dev/null -w "%{http_code}\n" http://127.0.0.1:17550/ws
echo "--- the page served from a non-loopback host name: its own relay's origin check"
curl -s -o /dev/null -w "%{http_code}\n" -H 'Origin: http://game-host.example:17550' -H 'Connection: Upgrade' -H 'Upgrade: websocket' -H 'Sec-WebSocket-Version: 13' -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' http://127.0.0.1:17550/ws
kill $R; wait $R 2>/dev/null
