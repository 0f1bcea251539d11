import asyncio, sys, time
from lib import *
async def main():
    n=int(sys.argv[1]); R=sys.argv[2]; dur=float(sys.argv[3])
    cs=[await C('p%d'%i).connect() for i in range(n)]
    for x in cs: await x.join(R)
    t0=time.time(); marks=[]
    while time.time()-t0<dur:
        await asyncio.sleep(1); marks.append(sum(x.bytes for x in cs))
    rates=[round((marks[i+1]-marks[i])/n/1e6,3) for i in range(len(marks)-1)]
    print(sys.argv[4], 'per-member MB/s each second', rates, 'closed', [x.closed for x in cs if x.closed][:3])
    for x in cs: await x.close()
asyncio.run(main())
