"""Run B churn (JWT, duplicate_sessions=replace): many users, token refreshes, replaces, short-lived tokens,
drop/resume with tokens, rooms per user. Env: PORT, SECS, SECRET, USERS."""
import asyncio, os, random, time, json, hmac, hashlib, base64
from lib25 import *

SECS = float(os.environ.get("SECS", "120"))
SECRET = os.environ["SECRET"].encode()
USERS = int(os.environ.get("USERS", "5000"))
END = time.time() + SECS
ops, errs = {}, {}


def count(k, n=1):
    ops[k] = ops.get(k, 0) + n


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def jwt(sub, ttl=3600):
    h = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    now = int(time.time())
    p = b64(json.dumps({"sub": sub, "exp": now + ttl, "iat": now}).encode())
    s = b64(hmac.new(SECRET, f"{h}.{p}".encode(), hashlib.sha256).digest())
    return f"{h}.{p}.{s}"


def ip():
    i = random.randrange(3000)
    return f"127.{2 + i // 60000}.{(i // 250) % 240}.{1 + i % 250}"


def user():
    return f"user-{random.randrange(USERS)}"


async def opened(sub, query="", ttl=3600):
    c = await Client.open(ip(), query, headers={"Authorization": "Bearer " + jwt(sub, ttl)})
    w = await c.welcome_()
    if w is None:
        raise RuntimeError(f"no welcome {c.closed}")
    return c, w


def rid():
    return random.randrange(1, 1 << 40)


async def worker(name, fn):
    while time.time() < END:
        try:
            await fn()
        except Exception as e:
            k = f"{name}:{type(e).__name__}"
            errs[k] = errs.get(k, 0) + 1
            await asyncio.sleep(0.2)


async def refresher():
    sub = user()
    c, w = await opened(sub, f"client=c{random.randrange(10**9)}")
    room = f"u-{sub}-{random.randrange(4)}"   # a room created by this user
    q = rid(); await c.send(join(room, q)); await c.answer(q); count("join")
    for i in range(random.randrange(1, 5)):
        q = rid()
        await c.send(cm(refresh_token=pb.RefreshToken(request_id=q, token=jwt(sub))))
        a = await c.answer(q)
        count("refresh_" + (a.WhichOneof("kind") if a is not None else "none"))
    q = rid(); await c.send(leave(room, q)); await c.answer(q); count("leave")
    await c.close(); count("close_normal")


async def replacer():
    """two clients of the same user: the second replaces the first (4002); sometimes the first is parked first"""
    sub = user()
    a, wa = await opened(sub, f"client=a{random.randrange(10**9)}")
    q = rid(); await a.send(join("lobby", q)); await a.answer(q)
    if random.random() < 0.5:
        a.drop(); count("drop_then_replace")
        await asyncio.sleep(0.2)
    b, wb = await opened(sub, f"client=b{random.randrange(10**9)}")
    q = rid(); await b.send(join("lobby", q)); await b.answer(q)
    await asyncio.sleep(0.3)
    count("replaced_closed" if a.closed and a.closed[0] == 4002 else "replace_other")
    # resume the replaced session: should be refused
    r = await Client.open(ip(), f"resume={wa.resume_token}", headers={"Authorization": "Bearer " + jwt(sub)})
    await asyncio.sleep(0.2)
    count(f"resume_replaced_{r.closed[0] if r.closed else 'open'}")
    await r.close()
    if random.random() < 0.5:
        b.drop(); count("drop")
    else:
        await b.close(); count("close_normal")


async def expirer():
    """a token that expires in 1 s (leeway 5): session closed 4500; resume with a fresh token refused"""
    sub = user()
    c, w = await opened(sub, "", ttl=1)
    q = rid(); await c.send(join(f"ex-{random.randrange(30)}", q)); await c.answer(q)
    t0 = time.time()
    while c.closed is None and time.time() - t0 < 10:
        await asyncio.sleep(0.2)
    count(f"expired_{c.closed[0] if c.closed else 'open'}")
    r = await Client.open(ip(), f"resume={w.resume_token}", headers={"Authorization": "Bearer " + jwt(sub)})
    await asyncio.sleep(0.2)
    count(f"resume_expired_{r.closed[0] if r.closed else 'open'}")
    await r.close()


async def dropresume():
    sub = user()
    c, w = await opened(sub, f"client=d{random.randrange(10**9)}")
    q = rid(); await c.send(join(f"dr-{random.randrange(20)}", q)); await c.answer(q)
    c.drop(); count("drop")
    if random.random() < 0.5:
        await asyncio.sleep(random.uniform(0.05, 2))
        other = random.random() < 0.2
        d = await Client.open(ip(), f"resume={w.resume_token}", headers={"Authorization": "Bearer " + jwt(user() if other else sub)})
        w2 = await d.welcome_(3)
        count(("other_" if other else "") + ("resume_ok" if w2 is not None and w2.resumed else "resume_fail"))
        await d.close()
    else:
        count("never_resumed")


async def main():
    tasks = []
    for name, fn, n in (("refresher", refresher, 6), ("replacer", replacer, 4), ("expirer", expirer, 6), ("dropresume", dropresume, 4)):
        for _ in range(n):
            tasks.append(asyncio.ensure_future(worker(name, fn)))
    t0 = time.time()
    while time.time() < END:
        await asyncio.sleep(10)
        print(f"[churnB {time.time()-t0:.0f}s] ops={json.dumps(ops, sort_keys=True)} errs={errs}", flush=True)
    await asyncio.gather(*tasks, return_exceptions=True)
    print(f"[churnB done] ops={json.dumps(ops, sort_keys=True)} total={sum(ops.values())} errs={errs}", flush=True)

asyncio.run(main())
