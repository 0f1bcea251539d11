"""E10: odd HTTP API requests against each node (cluster routing included); prints any status
outside the documented set, and checks the nodes still answer /healthz."""
import socket, time
import lib11 as L

DOC = {200, 202, 307, 400, 401, 404, 405, 408, 413, 431, 503}
T = L.API_TOKEN
cases = [
  ('POST', '/rooms/%00/events?kind=a', b'x'), ('POST', '/rooms/%FF%FE/events?kind=a', b'x'),
  ('POST', '/rooms/' + 'a' * 20000 + '/events?kind=a', b'x'), ('GET', '/rooms/' + 'b' * 3000, None),
  ('POST', '/rooms/r/events?kind=a&targets=1,-1', b''), ('POST', '/rooms/r/events?kind=a&targets=18446744073709551616', b''),
  ('POST', '/rooms/r/events?kind=a&targets=' + ','.join(['1'] * 4000), b''), ('POST', '/rooms/r/events?kind=' + 'k' * 257, b''),
  ('DELETE', '/rooms/r/users/u?ban_secs=-1', None), ('DELETE', '/rooms/r/users/u?ban_secs=2592001', None),
  ('DELETE', '/rooms/r/users/u?ban_secs=1e3', None), ('DELETE', '/rooms/r/users/%0Aevil?ban_secs=5', None),
  ('DELETE', '/rooms/r/users/' + 'u' * 300, None), ('DELETE', '/rooms/r?reason=%0A', None),
  ('DELETE', '/rooms/r?reason=' + 'r' * 300, None), ('GET', '/rooms?limit=0', None), ('GET', '/rooms?limit=501', None),
  ('GET', '/rooms?limit=99999999999999999999999', None), ('GET', '/rooms?open_only=maybe', None),
  ('GET', '/rooms?' + '&'.join('filter.k%d=v' % i for i in range(40)), None), ('GET', '/rooms?filter.=x', None),
  ('GET', '/rooms?filter.' + 'k' * 100 + '=x', None), ('GET', '/rooms?after=' + '%FF' * 10, None),
  ('PUT', '/rooms/r', None), ('HEAD', '/rooms/r', None), ('OPTIONS', '/rooms', None), ('GET', '/rooms/r/users/u', None),
  ('GET', '/rooms//', None), ('GET', '/rooms/a/b/c/d', None), ('POST', '/rooms/%2F/events?kind=a', b'x'),
]

def raw(node, method, path, body, extra=b''):
    s = socket.create_connection(('127.0.0.1', L.PORTS[node]), timeout=5)
    req = ('%s %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nConnection: close\r\n' % (method, path, T)).encode()
    if body is not None:
        req += b'Content-Length: %d\r\n' % len(body)
    s.sendall(req + extra + b'\r\n' + (body or b''))
    data = b''
    try:
        while True:
            d = s.recv(65536)
            if not d: break
            data += d
    except socket.timeout:
        pass
    s.close()
    line = data.split(b'\r\n', 1)[0].decode(errors='replace')
    return int(line.split()[1]) if line.startswith('HTTP') else line, data.split(b'\r\n\r\n', 1)[-1][:120]

odd = 0
for node in range(3):
    for m, p, b in cases:
        st, body = raw(node, m, p, b)
        if st not in DOC:
            odd += 1
            print('n%d %s %s -> %s %r' % (node + 1, m, p[:80], st, body))
# a body sent slowly, chunked without end, and a Content-Length lie
st = raw(1, 'POST', '/rooms/r/events?kind=a', b'abc', extra=b'Transfer-Encoding: chunked\r\n')
print('CL+TE', st)
for i in range(3):
    print('n%d healthz' % (i + 1), raw(i, 'GET', '/healthz', None)[0])
print('odd statuses', odd)
