import asyncio, time, sys
from lib import *
NE=64; NP=int(sys.argv[1]) if len(sys.argv)>1 else 3
async def main():
    a=await C('a').connect(); b=await C('b').connect()
    ps=[await C('p%d'%i).connect() for i in range(NP)]
    other=await C('o').connect(); await other.join('unrelated')
    R='give2'
    await a.join(R); await b.join(R)
    for p in ps: await p.join(R)
    ids=list(range(1,NE+1))
    for i in ids:
        b.seq[R]=b.seq.get(R,0)+1
        await b.send(pb.ClientMessage(input=pb.Input(room=R, seq=b.seq[R], writes=pb.EntityWrites(create=[big(i)]))))
        await asyncio.sleep(0.26)
    await asyncio.sleep(1)
    print('P0 sees', len(ps[0].entities.get(R,{})), 'errs', b.errstr()[:3])
    print('unrelated RTT ms before', [round(await rtt(other),1) for _ in range(3)])
    stop=False; sent={'n':0}
    async def pp(me, peer):
        last=0
        while not stop:
            await asyncio.sleep(0.01)
            st=[m for t,m in me.msgs[last:] if m.WhichOneof('kind')=='state']; last=len(me.msgs)
            if not st: continue
            mine=[i for i,o in me.entities.get(R,{}).items() if o==me.id]
            if mine: await me.send(me.input_msg(R, give=[(i,peer.id) for i in mine])); sent['n']+=1
    def td(): 
        s=float(metric('tickrelay_tick_duration_seconds_sum').split()[1]); n=float(metric('tickrelay_tick_duration_seconds_count').split()[1]); return s,n
    s0,n0=td(); bo0=float(metric('tickrelay_bytes_out_total').split()[1])
    ta=asyncio.create_task(pp(a,b)); tb=asyncio.create_task(pp(b,a))
    b0=[p.bytes for p in ps]; t0=time.time(); await asyncio.sleep(3)
    print('unrelated RTT ms during', [round(await rtt(other),1) for _ in range(3)], 'healthz during', healthz())
    await asyncio.sleep(5); stop=True; await ta; await tb; dt=time.time()-t0
    s1,n1=td(); bo1=float(metric('tickrelay_bytes_out_total').split()[1])
    print('passive B/s each', [round((p.bytes-x)/dt/1e6,3) for p,x in zip(ps,b0)], 'MB/s; relay bytes_out MB/s %.3f'%((bo1-bo0)/dt/1e6))
    print('mean tick duration ms %.3f'%((s1-s0)/(n1-n0)*1000))
    print(metric('tickrelay_frames_superseded_total'), metric('tickrelay_tick_overruns_total'))
    print(rl_summary(a,b), 'gives inputs sent', sent)
    print('healthz after', healthz(), 'unrelated RTT ms after', [round(await rtt(other),1) for _ in range(3)])
    print('closed', a.closed, b.closed, [p.closed for p in ps], other.closed)
    for x in [a,b,other]+ps: await x.close()
asyncio.run(main())
