"""QUIC Hello edge cases on the resume path.

Run: python3 hello_edges.py
Starts its own relay (wss + QUIC, 127.0.0.1:$PORT, default 7667). A session (over
QUIC) joins a room with 1 KiB of member data, then is dropped; resumes follow with:
received_seq 2^64-1, received_seq far above the last sent, a 64- and a 65-byte
client_id, a resume token of 32 KiB, a Hello of exactly 32 KiB and one byte over,
a Hello that is not protobuf, two Hellos in one frame stream, and a Hello with a
token in anonymous mode. Prints what each got (Welcome resumed?, close code).
"""
import asyncio, os, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib16 import *

PORT = int(os.environ.get("PORT", "7667"))


async def attempt(name, build):
    q = await quic_open(PORT)
    build(q)
    w = await asyncio.wait_for(q.welcome, 12)
    j = None
    if w is not None:
        j = await q.wait_for(lambda m: m.WhichOneof("kind") == "joined", 1.5)
    res = (f"welcome resumed={w.resumed} sid={w.session_id}" if w is not None else f"closed {q.closed}")
    print(f"{name:<38} {res}{' +Joined' if j else ''}")
    quic_drop(q)
    await asyncio.sleep(0.3)


def raw_hello(**kw):
    def f(q):
        h = pb.Hello(**{k: v for k, v in kw.items() if k != "received"})
        if "received" in kw:
            h.received_seq = kw["received"]
        b = h.SerializeToString()
        q.send_raw(varint(len(b)) + b)
    return f


async def main():
    relay = start_relay(PORT, tag="hello_edges")
    try:
        q = await quic_open(PORT); q.hello()
        w = await asyncio.wait_for(q.welcome, 5)
        tok = w.resume_token
        q.send_env(join("he", 1, "relay", data=b"m" * 1024))
        await q.wait_for(lambda m: m.WhichOneof("kind") == "joined", 3)
        print("session", w.session_id, "token length", len(tok))
        quic_drop(q)
        await asyncio.sleep(0.3)
        await attempt("received 2^64-1", raw_hello(resume_token=tok, received=2**64 - 1))
        await attempt("received 10^9", raw_hello(resume_token=tok, received=10**9))
        await attempt("received none", raw_hello(resume_token=tok))
        await attempt("client_id 64 bytes", raw_hello(resume_token=tok, client_id="c" * 64))
        await attempt("client_id 65 bytes", raw_hello(resume_token=tok, client_id="c" * 65))
        await attempt("resume token 32,000 bytes (made up)", raw_hello(resume_token="x" * 32000))
        def exact(n):
            def f(q):
                # a Hello whose serialized size is n (padding in client_id... no: unknown field 15)
                pad = n - len(pb.Hello(resume_token=tok).SerializeToString()) - 4
                b = pb.Hello(resume_token=tok).SerializeToString() + b"\x7a" + varint(pad) + b"p" * pad
                b = b[: n] if len(b) > n else b + b""  # (sizes are checked below)
                q.send_raw(varint(len(b)) + b)
                print(f"   (Hello of {len(b)} bytes)")
            return f
        await attempt("Hello 32 KiB (unknown field padding)", exact(32 * 1024))
        await attempt("Hello 32 KiB + 1", exact(32 * 1024 + 1))
        await attempt("Hello not protobuf", lambda q: q.send_raw(varint(5) + b"\xff\xff\xff\xff\xff"))
        await attempt("token in anonymous mode (first)", raw_hello(token="abc.def.ghi", resume_token=tok))
        await attempt("two Hellos back to back", lambda q: (raw_hello(resume_token=tok)(q), raw_hello(resume_token=tok)(q)))
        await attempt("token in anonymous mode", raw_hello(token="abc.def.ghi", resume_token=tok))
        await attempt("empty Hello then envelope", lambda q: (q.send_raw(varint(0)), q.send_env(cm(ping=pb.Ping(nonce=1)))))
        await attempt("resume after all that", raw_hello(resume_token=tok))
        os.system(f"grep -c -i panic {OUT}/hello_edges.log")
    finally:
        stop(relay)


asyncio.run(main())
