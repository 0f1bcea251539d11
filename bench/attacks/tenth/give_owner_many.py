import asyncio, time, subprocess
from lib import *
async def main():
    R='scale'
    a=await C('a').connect(); await a.join(R)
    o=await C('o').connect(); await o.join('bystander'); o2=await C('o2').connect(); await o2.join('bystander')
    ids=list(range(1,65))
    for i in ids:
        a.seq[R]=a.seq.get(R,0)+1
        await a.send(pb.ClientMessage(input=pb.Input(room=R, seq=a.seq[R], writes=pb.EntityWrites(create_for_room=[big(i)]))))
        await asyncio.sleep(0.26)
    procs=[subprocess.Popen(['python3','passive.py','5',R,'24','proc%d'%k]) for k in range(4)]
    await asyncio.sleep(3)
    print('bystander RTT before', [await rtt(o) for _ in range(3)])
    ob0=o2.bytes
    def td():
        return float(metric('tickrelay_tick_duration_seconds_sum').split()[1]), float(metric('tickrelay_tick_duration_seconds_count').split()[1])
    s0,n0=td(); bo0=bytes_out(); t0=time.time(); k=0
    while time.time()-t0<18:
        g=[(i,a.id) for i in ids] if time.time()-t0<6 else [(i,a.id) for i in ids]+[(i,0) for i in ids]
        await a.send(a.input_msg(R, give=g)); await asyncio.sleep(1/30); k+=1
        if k%150==0: print('t=%.0f bystander RTT'%(time.time()-t0), [await rtt(o) for _ in range(2)], 'healthz', healthz(), flush=True)
    s1,n1=td(); print('relay bytes_out MB/s over 18 s flood %.2f'%((bytes_out()-bo0)/(time.time()-t0)/1e6))
    print('mean tick ms %.3f'%((s1-s0)/(n1-n0)*1000), metric('tickrelay_tick_overruns_total'), metric('tickrelay_frames_superseded_total'), metric('tickrelay_ticks_dropped_total'))
    print(rl_summary(a))
    print('attacker errors', a.errstr()[-2:], 'closed', a.closed, o.closed)
    for p in procs: p.wait(timeout=30)
    for x in (a,o,o2): await x.close()
asyncio.run(main())
