import csv, sys, collections, time
rows = list(csv.DictReader(open("/tmp/soak8/samples.csv")))
t_end_load = int(sys.argv[1]) if len(sys.argv) > 1 else 0
series = collections.defaultdict(list)
for r in rows:
    try: series[(r["source"], r["measure"])].append((int(r["ts"]), float(r["value"])))
    except ValueError: pass
t0 = min(int(r["ts"]) for r in rows)
def fmt(v): return f"{v:.0f}" if v == int(v) else f"{v:.3f}"
print("| source | measure | baseline (t) | peak (t) | last (t) |")
print("|---|---|---|---|---|")
for (src, m), pts in sorted(series.items()):
    if "closes_total" in m and all(v == 0 for _, v in pts): continue
    b = pts[0]; p = max(pts, key=lambda x: x[1]); l = pts[-1]
    print(f"| {src} | {m} | {fmt(b[1])} (+{b[0]-t0}s) | {fmt(p[1])} (+{p[0]-t0}s) | {fmt(l[1])} (+{l[0]-t0}s) |")
