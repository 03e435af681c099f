# Writes legacy_edge_input.f32: 12 rows of 256 float32 edge cases (see legacy_README.md).
import struct, math, random
rows = []
random.seed(7)
def g(s): return random.gauss(0, s)
# 1 subnormal / tiny
rows.append([(1e-40 if i%3==0 else -3e-41 if i%3==1 else 1e-30*g(1)) for i in range(256)])
# 2 huge (f16 overflow of d)
rows.append([(3e38 if i==5 else -1e5 if i==77 else g(1e4)) for i in range(256)])
# 3 +Inf and -Inf
rows.append([(math.inf if i==3 else -math.inf if i==200 else g(1)) for i in range(256)])
# 4 NaN
rows.append([(math.nan if i in (0, 40, 255) else g(1)) for i in range(256)])
# 5 ties: amax 127 in each 32-block
r=[]
for b in range(8):
    blk=[127.0 if b%2==0 else -127.0] + [ (k+0.5)*(1 if k%2 else -1) for k in range(31)]
    r += blk
rows.append(r)
# 6 zeros with -0.0 and constant negative blocks
rows.append([(-0.0 if i<128 else -0.75) for i in range(256)])
# 7 0.25 grid
rows.append([round(g(2)*4)/4 for i in range(256)])
# 8 first element NaN then values (MAX semantics), and Inf only
rows.append([(math.nan if i%32==0 else g(1)) for i in range(128)] + [(math.inf if i%32==1 else 0.0) for i in range(128)])
with open('legacy_edge_input.f32','wb') as f:
    for row in rows:
        f.write(struct.pack('<256f', *row))
print(len(rows))
# --- extra rows (appended) ---
rows2 = []
# 9: tiny magnitudes around 2^-128 .. 2^-125 (MXFP4 exponent wrap), per 32-block
r=[]
for b in range(8):
    s = 2.0**(-129+b*0.5)
    r += [s*(1 - k/40.0)*(1 if k%2 else -1) for k in range(32)]
rows2.append(r)
# 10: near FLT_MAX and huge
r=[]
for b in range(8):
    big = 3.4028234663852886e38 if b%2==0 else 1.7e38
    r += [big if k==b else (-big*0.6 if k==31-b else g(1e37)) for k in range(32)]
rows2.append(r)
# 11: zero-sign ordering for min/max
nz=-0.0
blocks=[[0.0,nz]+[1.0]*30, [nz,0.0]+[-1.0]*30, [0.0]*16+[nz]*16, [nz]*16+[0.0]*16,
        [1.0,2.0,nz,0.0]+[3.0]*28, [-1.0,-2.0,0.0,nz]+[-3.0]*28, [nz]*32, [0.0]*32]
r=[v for blk in blocks for v in blk]
rows2.append(r)
# 12: equal magnitudes with both signs (first occurrence wins), and exact halves
blocks=[]
for b in range(8):
    blk=[g(0.5) for _ in range(32)]
    i,j = (3*b)%32, (7*b+5)%32
    if i==j: j=(j+1)%32
    a = 2.0 + b
    blk[min(i,j)] = a if b%2 else -a
    blk[max(i,j)] = -a if b%2 else a
    blocks.append(blk)
rows2.append([v for blk in blocks for v in blk])
with open('legacy_edge_input.f32','ab') as f:
    for row in rows2:
        assert len(row)==256
        f.write(struct.pack('<256f', *row))
print(len(rows)+len(rows2))
