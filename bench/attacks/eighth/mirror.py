"""A spec-only mirror: packed blocks + checksum, from docs/PROTOCOL.md."""
import struct
M = (1 << 64) - 1
def mix(x):
    x ^= x >> 30; x = (x * 0xbf58476d1ce4e5b9) & M
    x ^= x >> 27; x = (x * 0x94d049bb133111eb) & M
    return x ^ (x >> 31)
def chain(words):
    h = 0x7469636b72656c61
    for w in words:
        h = mix(h ^ (w & M))
    return h
def byts(b):
    return [len(b)] + [int.from_bytes(b[i:i+8].ljust(8, b"\0"), "little") for i in range(0, len(b), 8)]
def ehash(eid, owner, kind, fields):
    h = chain([eid, owner, kind])
    for fid in sorted(fields):
        t, v = fields[fid]
        if t == "int": tn, value = 1, [v & M]
        elif t == "float": tn, value = 2, [struct.unpack("<I", struct.pack("<f", v))[0]]
        elif t == "bool": tn, value = 3, [1 if v else 0]
        elif t == "bytes": tn, value = 4, byts(v)
        else: tn, value = 5, byts(v.encode())
        h = (h + chain([eid, (fid << 8) | tn] + value)) & M
    return h
def f32(x): return struct.unpack("<f", struct.pack("<f", x))[0]
assert ehash(0,0,0,{}) == 0xe443fe8abfe9a4f7
assert ehash(42,7,3,{1:("int",-5),2:("float",1.5),3:("bool",True),4:("string","hello, world")}) == 0xa9c3b24c7f56b61f

class Desync(Exception): pass

def varint(b, i):
    r = s = 0
    while True:
        if i >= len(b): raise Desync("truncated")
        c = b[i]; i += 1; r |= (c & 0x7f) << s; s += 7
        if not c & 0x80: return r, i
def unzig(z): return (z >> 1) ^ -(z & 1)

class Mirror:
    def __init__(self, schema):
        # schema: list of pb.KindSchema
        self.kinds = {}
        for k in schema:
            fs = sorted(k.fields, key=lambda f: f.id)
            self.kinds[k.kind] = fs
        self.ents = {}   # id -> [owner, kind, {fid: (type, value)}, {fid: code}]
        self.tick = 0
    def ftype(self, f):
        return {1: "int", 2: "float", 3: "bool", 4: "bytes", 5: "string"}[f.type]
    def decode_code(self, f, c):
        t = self.ftype(f)
        if t == "int":
            if c > f.int_max - f.int_min: raise Desync(f"int code {c} out of range")
            return f.int_min + c
        if t == "float":
            steps = int(((f.float_max - f.float_min) / f.precision + 1e-9) // 1)
            if c > steps: raise Desync("float code out of range")
            return f32(f.float_min + c * f.precision)
        if c > 1: raise Desync("bool code")
        return c == 1
    def fld(self, field):
        w = field.WhichOneof("value")
        return (w, getattr(field, w))
    def apply(self, fr):
        if fr.baseline_tick == 0:
            self.ents = {}
        elif fr.baseline_tick != self.tick:
            raise Desync(f"baseline {fr.baseline_tick} != {self.tick}")
        for r in fr.removed: self.ents.pop(r, None)
        for e in fr.added:
            self.ents[e.id] = [e.owner, e.kind, {f.id: self.fld(f) for f in e.fields}, {}]
        for u in fr.changed:
            if u.id not in self.ents: raise Desync("changed unknown")
            for f in u.fields: self.ents[u.id][2][f.id] = self.fld(f)
        for blk in fr.packed:
            self.block(blk)
        self.tick = fr.tick
        if fr.HasField("checksum"):
            cs = sum(ehash(i, e[0], e[1], e[2]) for i, e in self.ents.items()) & M
            if cs != fr.checksum: raise Desync(f"checksum mismatch at tick {fr.tick}")
    def values(self, b, i, fs, mask, ent, added):
        if mask >> len(fs): raise Desync("mask bit beyond fields")
        for bit, f in enumerate(fs):
            if not mask >> bit & 1: continue
            t = self.ftype(f)
            if t in ("bytes", "string"):
                n, i = varint(b, i); raw = b[i:i+n]; i += n
                if len(raw) != n: raise Desync("trunc bytes")
                ent[2][f.id] = (t, raw if t == "bytes" else raw.decode())
                continue
            v, i = varint(b, i)
            if v & 1: c = v >> 1
            else:
                if added or f.id not in ent[3]: raise Desync("relative with no base")
                c = ent[3][f.id] + unzig(v >> 1)
                if c < 0: raise Desync("negative code")
            ent[3][f.id] = c
            ent[2][f.id] = (t, self.decode_code(f, c))
        return i
    def block(self, b):
        i = 0
        kind, i = varint(b, i)
        if kind not in self.kinds: raise Desync("undeclared kind")
        fs = self.kinds[kind]
        na, i = varint(b, i); nc, i = varint(b, i)
        eid = 0
        for n in range(na):
            st, i = varint(b, i)
            if n and st < 1: raise Desync("ids not ascending")
            eid += st
            owner, i = varint(b, i); mask, i = varint(b, i)
            ent = [owner, kind, {}, {}]
            i = self.values(b, i, fs, mask, ent, True)
            self.ents[eid] = ent
        eid = 0
        for n in range(nc):
            st, i = varint(b, i)
            if n and st < 1: raise Desync("ids not ascending")
            eid += st
            mask, i = varint(b, i)
            ent = self.ents.get(eid)
            if ent is None or ent[1] != kind: raise Desync("changed entity not held")
            i = self.values(b, i, fs, mask, ent, False)
        if i != len(b): raise Desync("bytes after last entry")
