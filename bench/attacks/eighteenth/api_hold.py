import asyncio
from lib18 import *
async def main():
    a = await C().open(); print(a.welcome.user_id); await a.join("apiroom", 1)
    await asyncio.sleep(6)
    for t, k, m in a.msgs:
        if k in ("left", "event", "error"): print(k, str(getattr(m, k)).replace("\n", " ")[:200])
asyncio.run(main())
