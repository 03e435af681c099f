#!/usr/bin/env python3
"""Writes legacy-expected.json: what gpt2-tiny-legacy.bin holds, read independently of weft.

The shared expected.json (made by torch) has no entry for the legacy fixture, and torch is not
installed here, so this reads the file with Python's own pickle module (a stub find_class
that only records names; nothing is executed) and struct, following torch's _legacy_load:
magic, protocol, sys_info, the object, the storage key list, then per key an 8-byte
little-endian element count and the raw bytes. Output has expected.json's structure; "sum"
is math.fsum of the logical elements (exact), "first" the first 4 in row-major order.

Usage: python3 gen_legacy_expected.py ../../../shared/fixtures/torch/gpt2-tiny-legacy.bin > legacy-expected.json
"""
import json, math, pickle, struct, sys

FMT = {"FloatStorage": ("float32", "<f", 4), "LongStorage": ("int64", "<q", 8),
       "BoolStorage": ("bool", "<?", 1)}

class Global:
    def __init__(self, m, n): self.m, self.n = m, n
    def __call__(self, *args): return (self.m + "." + self.n,) + args

class U(pickle.Unpickler):
    def find_class(self, m, n): return Global(m, n)
    def persistent_load(self, pid): return tuple(pid)

data = open(sys.argv[1], "rb").read()
import io
f = io.BytesIO(data)
for _ in range(3):
    pickle.load(f)
obj = U(f).load()
keys = pickle.load(f)
pos = f.tell()
storages = {}
meta = {}
for v in obj.values():
    st = v[1]
    meta[st[2]] = st[1].n
for k in keys:
    n = struct.unpack("<q", data[pos:pos + 8])[0]
    name, fmt, es = FMT[meta[k]]
    pos += 8
    storages[k] = [struct.unpack(fmt, data[pos + i * es:pos + (i + 1) * es])[0] for i in range(n)]
    pos += n * es

out = {}
for name, v in obj.items():
    fn, st, off, shape, stride = v[0], v[1], v[2], v[3], v[4]
    assert fn == "torch._utils._rebuild_tensor_v2"
    vals = []
    def rec(d, base):
        if d == len(shape):
            vals.append(float(storages[st[2]][base]))
            return
        for i in range(shape[d]):
            rec(d + 1, base + i * stride[d])
    rec(0, off)
    exp = 1; contig = True
    for s, t in zip(reversed(shape), reversed(stride)):
        if s != 1 and t != exp: contig = False
        exp *= s
    out[name] = {"dtype": FMT[st[1].n][0], "shape": list(shape), "stride": list(stride),
                 "contiguous": contig, "first": vals[:4], "sum": math.fsum(vals)}
print(json.dumps({"gpt2-tiny-legacy.bin": out}, indent=1, sort_keys=True))
