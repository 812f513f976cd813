#!/usr/bin/env python3
"""Medians and ratios of the benchmark's RESULT lines (bench/lib.sh: result).

usage: summary.py FILE OURS_LABEL BASE_LABEL
Each RESULT row has rw, depth, jobs, target, side ("ours" or "base"), dev, iops.
Prints, per (rw, depth, jobs, target), the median IOPS of each side and the ratio
ours / base, then the round-by-round ratios (ours / base of the same run): their
median, a 95 % interval for it, and in how many rounds ours was at or above base;
then the medians as one markdown table (a column group per target) for
bench/RESULTS.md. Rows with "events" (BENCH_EVENTS: counts per IO) add a table of each
event's median count per IO on each side.
"""
import json
import math
import statistics
import sys

path, ours_label, base_label = sys.argv[1:4]
rows = [json.loads(l.split(" ", 1)[1]) for l in open(path) if l.startswith("RESULT ")]
if not rows:
    sys.exit("summary: no RESULT lines in " + path)
vals, devs, keys, targets, by_run, events = {}, {}, [], [], {}, {}
for r in rows:
    k = (r["rw"], r["depth"], r["jobs"])
    if k not in keys:
        keys.append(k)
    if r["target"] not in targets:
        targets.append(r["target"])
    vals.setdefault(k + (r["target"], r["side"]), []).append(r["iops"])
    devs[k + (r["target"], r["side"])] = r["dev"]
    by_run[k + (r["target"], r["side"], r["run"])] = r["iops"]
    for e, n in r.get("events", {}).items():
        events.setdefault(e, {}).setdefault(k + (r["target"], r["side"]), []).append(n)


def med(k, target, side):
    v = vals.get(k + (target, side))
    return statistics.median(v) if v else 0


def ratio(o, b):
    return o / b if b else 0


keys.sort(key=lambda k: (k[0], k[1], k[2]))
runs = max(r["run"] for r in rows)
print(f"\nmedians (IOPS) of {runs} run(s) and ratios, {ours_label} / {base_label}:")
print("(spread: (max - min) / median of each side's runs, to tell a difference from noise)")
print(f"{'rw':10} {'depth':>5} {'jobs':>4}  {'target':>9}  {ours_label:>9} {'dev':>8} {'spread':>6}"
      f"  {base_label:>9} {'dev':>8} {'spread':>6}  ratio")


def spread(k, target, side):
    v = vals.get(k + (target, side))
    m = statistics.median(v) if v else 0
    return (max(v) - min(v)) / m if m else 0


for k in keys:
    for t in targets:
        o, b = med(k, t, "ours"), med(k, t, "base")
        if not o and not b:
            continue
        print(f"{k[0]:10} {k[1]:>5} {k[2]:>4}  {t:>9}  {o:>9.0f} {devs.get(k + (t, 'ours'), '-'):>8}"
              f" {spread(k, t, 'ours'):6.0%}  {b:>9.0f} {devs.get(k + (t, 'base'), '-'):>8}"
              f" {spread(k, t, 'base'):6.0%}  {ratio(o, b):5.2f}x")


def paired(k, target):
    """Ratios ours / base of the runs that have both sides."""
    out = []
    for run in range(1, runs + 1):
        o, b = by_run.get(k + (target, "ours", run)), by_run.get(k + (target, "base", run))
        if o is not None and b:
            out.append(o / b)
    return out


def median_interval(xs, level=0.95):
    """A distribution-free interval for the median of what xs sample: the j-th smallest and
    j-th largest of xs, for the largest j that covers the median with probability >= level
    (each x is below the median with probability 1/2, so that is a binomial sum). None for
    fewer than 6 values, where even (min, max) covers less."""
    xs, n = sorted(xs), len(xs)
    best = None
    for j in range(1, n // 2 + 1):
        if sum(math.comb(n, i) for i in range(j, n - j + 1)) / 2 ** n < level:
            break
        best = (xs[j - 1], xs[n - j])
    return best


print(f"\nround by round, {ours_label} / {base_label} of the same run"
      " (interval: 95 % for the median ratio, from the order statistics):")
print(f"{'rw':10} {'depth':>5} {'jobs':>4}  {'target':>9}  median  interval     at/above  ratios")
for k in keys:
    for t in targets:
        p = paired(k, t)
        if p:
            ahead = sum(1 for x in p if x >= 1)
            ci = median_interval(p)
            ci = f"{ci[0]:.2f}-{ci[1]:.2f}" if ci else "-"
            print(f"{k[0]:10} {k[1]:>5} {k[2]:>4}  {t:>9}  {statistics.median(p):5.2f}x  {ci:11}  {ahead:>3} of {len(p):<3}"
                  f" {' '.join(f'{x:.2f}' for x in p)}")

if events:
    print(f"\nevents per IO, median of the runs, {ours_label} / {base_label}:")
    print(f"{'rw':10} {'depth':>5} {'jobs':>4}  {'target':>9}  {'event':44} {ours_label:>9} {base_label:>9}")
    for k in keys:
        for t in targets:
            for e in sorted(events):
                o, b = events[e].get(k + (t, "ours")), events[e].get(k + (t, "base"))
                if o is None and b is None:
                    continue
                o = f"{statistics.median(o):9.3f}" if o else f"{'-':>9}"
                b = f"{statistics.median(b):9.3f}" if b else f"{'-':>9}"
                print(f"{k[0]:10} {k[1]:>5} {k[2]:>4}  {t:>9}  {e:44} {o} {b}")

print("\n| rw | depth | jobs/queues | " +
      " | ".join(f"{t} {ours_label} | {t} {base_label} | ratio" for t in targets) + " |")
print("| --- | ---: | ---: | " + " | ".join("---: | ---: | ---:" for _ in targets) + " |")
for k in keys:
    cells = []
    for t in targets:
        o, b = med(k, t, "ours"), med(k, t, "base")
        cells.append(f"{o:.0f} | {b:.0f} | {ratio(o, b):.2f}x")
    print(f"| {k[0]} | {k[1]} | {k[2]} | " + " | ".join(cells) + " |")
