"""Probe: a request in an envelope with first_event_seq at and past 2^53 - 1 and no SendEvent
in it: which answer comes back (the fuzzer saw such requests unanswered)."""
import asyncio, os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib27 import *  # noqa


async def main():
    for fes in (0, 1, 2**53 - 1, 2**53, 2**64 - 1):
        for name, m in (("join", pb.ClientMessage(join=pb.JoinRoom(request_id=77, room="pr-x", room_type="relay"))),
                        ("list", pb.ClientMessage(request=pb.Request(request_id=78, list_rooms=pb.ListRooms(limit=1)))),
                        ("ping", pb.ClientMessage(ping=pb.Ping(nonce=79)))):
            s = session(os.environ.get("TRANSPORT", "ws"))
            await s.open() if isinstance(s, QuicSession) else await s.open("")
            await s.send(env(m, first_event_seq=fes))
            await asyncio.sleep(0.4)
            print(f"first_event_seq={fes} {name}: kinds {s.kinds} errors {s.errors} answered {s.answered} closed {s.closed}")
            await s.close()

asyncio.run(asyncio.wait_for(main(), 60))
