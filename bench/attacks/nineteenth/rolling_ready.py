"""Rolling restart as an operator scripts it: n1 serves a room; start n2, wait for its
/readyz to answer 200, then SIGTERM n1 (after WAIT seconds, 0 by default). Does the member
get GoingAway (to n2)?"""
import asyncio, os, signal, subprocess, time, urllib.request
from lib18 import *
async def main():
    v = await C().open(url="ws://127.0.0.1:7961/ws"); await v.join("roll", 1)
    subprocess.run(["./cstart.sh", "n2", "7962"])
    t0 = time.time()
    while True:
        try:
            if urllib.request.urlopen("http://127.0.0.1:7962/readyz", timeout=1).status == 200: break
        except Exception: pass
        await asyncio.sleep(0.02)
    ready = time.time() - t0
    await asyncio.sleep(float(os.environ.get("WAIT", "0")))
    os.kill(int(open("n1.pid").read()), signal.SIGTERM)
    ga = await v.wait(lambda k, m: k == "going_away", 5)
    await asyncio.sleep(0.5)
    print("n2 ready after %.2fs; SIGTERM n1 -> GoingAway: %s; close %s" % (ready, ga.going_away.url if ga else None, v.closed))
asyncio.run(main())
