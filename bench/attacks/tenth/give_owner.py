import asyncio, time
from lib import *
async def main():
    R='solo'
    a=await C('a').connect(); c=await C('c').connect(); z=await C('z').connect()
    await a.join(R); await c.join(R); await z.join('elsewhere')
    # bad UpdateRoom values
    for lab,o in [('owner=0',0),('owner=self',a.id),('owner=member of other room',z.id),('owner=2^64-1',2**64-1)]:
        r=await a.update_room(R, owner=o)
        k=r.WhichOneof('kind'); print('UpdateRoom',lab,'->',k, (pb.ErrorCode.Name(r.error.code), r.error.message[:70]) if k=='error' else ('owner', r.response.room.owner))
    await asyncio.sleep(0.2); print('C presence after bad updates', c.presence)
    r=await c.update_room(R, owner=c.id); print('non-owner C UpdateRoom(owner=C) ->', pb.ErrorCode.Name(r.error.code))
    r=await z.update_room(R, owner=z.id); print('non-member Z UpdateRoom ->', pb.ErrorCode.Name(r.error.code))
    # solo amplification: owner creates 64 room entities (paced), then each tick gives each to self and back to room
    ids=list(range(1,65))
    for i in ids:
        a.seq[R]=a.seq.get(R,0)+1
        await a.send(pb.ClientMessage(input=pb.Input(room=R, seq=a.seq[R], writes=pb.EntityWrites(create_for_room=[big(i)]))))
        await asyncio.sleep(0.26)
    await asyncio.sleep(0.5); print('room entities', len(c.entities[R]), a.errstr()[-2:])
    for label, gives in [('self-give only', lambda: [(i,a.id) for i in ids] + [(i,0) for i in ids]),]:
        b0=c.bytes; t0=time.time(); sent=0; bo0=bytes_out(); rtts=[]
        while time.time()-t0<5:
            m=a.input_msg(R, give=gives()); await a.send(m); sent+=len(m.SerializeToString()); await asyncio.sleep(1/30)
            if int((time.time()-t0)*30)%45==0: rtts.append(await rtt(z))
        dt=time.time()-t0; print('relay bytes_out MB/s %.3f'%((bytes_out()-bo0)/dt/1e6), 'unrelated(z) RTT ms during', rtts, 'healthz', healthz())
        print(label, 'C receives %.3f MB/s'%((c.bytes-b0)/dt/1e6), 'attacker sent %.0f B/s'%(sent/dt), 'errs', len(a.errors), a.errstr()[-1:])
    # a plain give to self of a room entity (no move back)
    print('GET /rooms', api_get('/rooms')[1] if True else '')
    import urllib.request
    try: urllib.request.urlopen(API+'/rooms/'+R).read()
    except Exception as e: print('no token ->', e)
    print(rl_summary(a)); print('closed', a.closed, c.closed)
    for x in (a,c,z): await x.close()
asyncio.run(main())
