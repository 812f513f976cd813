#!/usr/bin/env python3
"""Where an nbd attach's time goes: bench-guest.sh's ATTACH lines against the uevents that
`udevadm monitor --kernel --udev` saw meanwhile.

usage: attach.py RESULTS UEVENTS OFFSET_NS
RESULTS: ATTACH {json} lines, each one attach: server, conns, round, side ("ublkd" or
"nbd-client"), dev (ublkbN, nbdN), and CLOCK_REALTIME stamps in ns: t_cmd (the command
started), t_ret (it returned), t_usable (blockdev --getsize64 read a size above 0).
UEVENTS: udevadm monitor's output (CLOCK_MONOTONIC stamps); OFFSET_NS: realtime - monotonic.
Prints, per server, connection count and side, the median (min-max) in ms from the command's
start of each stage the uevents mark:
  ublkd:      ublkcN added (ADD_DEV done: after the NBD handshakes), ublkbN added (START_DEV's
              add_disk done, partition scan included), udev done with ublkbN, ublkctl returned,
              usable
  nbd-client: nbdN changed (the kernel has the connections and the size), nbd-client returned,
              usable, udev done with nbdN
"""
import json
import re
import statistics
import sys

res_path, uev_path, offset = sys.argv[1], sys.argv[2], int(sys.argv[3])
attaches = [json.loads(l.split(" ", 1)[1]) for l in open(res_path) if l.startswith("ATTACH ")]
ev = []  # (realtime ns, source KERNEL|UDEV, action, sysname)
pat = re.compile(r"^(KERNEL|UDEV)\s*\[(\d+)\.(\d+)\]\s+(\w+)\s+(\S+)")
for line in open(uev_path):
    m = pat.match(line)
    if m:
        mono = int(m.group(2)) * 10**9 + int(m.group(3).ljust(9, "0")[:9])
        ev.append((mono + offset, m.group(1), m.group(4), m.group(5).rsplit("/", 1)[-1]))


def first(a, src, action, name, after):
    """Stamp of the first uevent (src, action, name) in a's window, after `after`."""
    for t, s, act, n in ev:
        if s == src and act == action and n == name and after <= t <= a["t_end"]:
            return t
    return None


STAGES = {
    "ublkd": [("ublkc add (ADD_DEV)", "KERNEL", "add", "c"), ("ublkb add (START_DEV)", "KERNEL", "add", "b"),
              ("udev done ublkb", "UDEV", "add", "b"), ("ublkctl returned", None, "t_ret", None),
              ("usable", None, "t_usable", None)],
    "nbd-client": [("nbd change (kernel)", "KERNEL", "change", "b"), ("nbd-client returned", None, "t_ret", None),
                   ("usable", None, "t_usable", None), ("udev done nbd", "UDEV", "change", "b")],
}
table = {}
for a in attaches:
    stages = table.setdefault((a["server"], a["conns"], a["side"]), {})
    for label, src, action, kind in STAGES[a["side"]]:
        if src is None:
            t = a[action]
        else:
            name = a["dev"] if kind == "b" else a["dev"].replace("ublkb", "ublkc")
            t = first(a, src, action, name, a["t_cmd"])
        stages.setdefault(label, []).append(None if t is None else (t - a["t_cmd"]) / 1e6)

print("\nattach: ms from the command's start, median (min-max) of the rounds; n = rounds with that stage seen")
for (server, conns, side), stages in table.items():
    print(f"{server}, {conns} connection(s), {side}:")
    for label, vals in stages.items():
        v = [x for x in vals if x is not None]
        if v:
            print(f"  {label:24} {statistics.median(v):7.0f} ({min(v):.0f}-{max(v):.0f})  n={len(v)}")
        else:
            print(f"  {label:24}       - (not seen)")
