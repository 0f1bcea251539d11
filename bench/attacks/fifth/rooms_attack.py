"""CPU cost of listing / matchmaking requests at the rate limit, against a relay holding
many rooms with large metadata (see rooms_setup.py). CONNS sessions over ws:// each send
RATE requests per second (default 48: under 50/s) for SECS, reading every answer.
MODE:
  list_big   ListRooms{limit 500}, no filter: a ~6-byte request, a 64 KiB page back
  list_scan  ListRooms with 16 filters equal to the rooms' first 15 entries and a 16th
             that matches none: every page scans 2,000 rooms comparing ~15 entries each
             (~5 KB request: the byte limit allows ~12/s)
  list_scan1 ListRooms with one filter that matches none (tiny request, 2,000-room scan)
  quick      QuickJoin with the list_scan filters (no room fits: scan, then create; the
             creator limit refuses most creations; Joined rooms are left again)
  quick1     QuickJoin with one filter matching none (tiny request)
  update     UpdateRoom of an owned room with max metadata, empty change (tiny request,
             ~5 KB RoomInfo answer)
Target: ws://127.0.0.1:PORT only. Bounded: SECS + 15 s."""
import asyncio, os, sys, time, collections
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "gen"))
from tickrelay.v1 import tickrelay_pb2 as pb  # noqa
import websockets
from rooms_setup import meta, key

PORT = int(os.environ.get("TR_PORT", "7644")); assert 7600 <= PORT <= 7700
MODE = os.environ.get("MODE", "list_big")
CONNS = int(os.environ.get("CONNS", "4"))
SECS = float(os.environ.get("SECS", "15"))
RATE = float(os.environ.get("RATE", "48"))
SRC = os.environ.get("SRC", "127.0.0.1")


def env(*msgs):
    e = pb.ClientEnvelope(); e.messages.extend(msgs); return e.SerializeToString()


SCAN_FILTERS = {key(i): ("v%02d" % i).ljust(256, "v") for i in range(15)}
SCAN_FILTERS[key(15)] = "nomatch"


def request(i, owned):
    if MODE == "list_big":
        return pb.ClientMessage(request=pb.Request(request_id=i, list_rooms=pb.ListRooms(limit=500)))
    if MODE == "list_scan":
        return pb.ClientMessage(request=pb.Request(request_id=i, list_rooms=pb.ListRooms(limit=500, filters=SCAN_FILTERS)))
    if MODE == "list_scan1":
        return pb.ClientMessage(request=pb.Request(request_id=i, list_rooms=pb.ListRooms(filters={"z": "z"})))
    if MODE == "quick":
        return pb.ClientMessage(quick_join=pb.QuickJoin(request_id=i, room_type="relay", filters=SCAN_FILTERS))
    if MODE == "quick1":
        return pb.ClientMessage(quick_join=pb.QuickJoin(request_id=i, room_type="relay", filters={"z": "z"}))
    if MODE == "update":
        return pb.ClientMessage(request=pb.Request(request_id=i, update_room=pb.UpdateRoom(room=owned)))


async def attacker(idx, stats):
    ws = await websockets.connect(f"ws://127.0.0.1:{PORT}/ws", max_size=1 << 24, ping_interval=None,
                                  local_addr=(SRC, 0), open_timeout=10)
    owned = f"upd-{idx}-{int(time.time())}"
    if MODE == "update":
        await ws.send(env(pb.ClientMessage(join=pb.JoinRoom(request_id=1, room=owned, room_type="relay",
                                                              create=pb.RoomOptions(metadata=meta(idx))))))
    close = [None]
    inbytes = [0]

    async def reader():
        try:
            async for data in ws:
                inbytes[0] += len(data)
                s = pb.ServerEnvelope(); s.ParseFromString(data)
                for m in s.messages:
                    k = m.WhichOneof("kind")
                    if k == "error":
                        k = "error:" + pb.ErrorCode.Name(m.error.code)
                    elif k == "response":
                        k = "response:" + (m.response.WhichOneof("kind") or "")
                    stats[k] += 1
                    if k == "joined" and MODE.startswith("quick"):
                        await ws.send(env(pb.ClientMessage(leave=pb.LeaveRoom(request_id=0, room=m.joined.room))))
        except websockets.ConnectionClosed as e:
            close[0] = (e.code, e.reason)
    rt = asyncio.create_task(reader())
    await asyncio.sleep(0.3)
    t0 = time.time(); i = 0
    while time.time() - t0 < SECS and close[0] is None:
        i += 1
        try:
            await ws.send(env(request(i, owned)))
        except Exception:
            break
        nxt = t0 + i / RATE
        await asyncio.sleep(max(0, nxt - time.time()))
    stats["sent"] += i
    stats["in_kbytes"] += inbytes[0] // 1024
    if close[0]:
        stats["close:%s" % (close[0],)] += 1
    rt.cancel()
    try:
        await asyncio.wait_for(ws.close(), 2)
    except Exception:
        pass


async def main():
    stats = collections.Counter()
    res = await asyncio.gather(*[attacker(i, stats) for i in range(CONNS)], return_exceptions=True)
    print(MODE, "CONNS", CONNS, "SECS", SECS, dict(stats), [repr(x)[:100] for x in res if isinstance(x, Exception)][:3])

asyncio.run(asyncio.wait_for(main(), SECS + 15))
