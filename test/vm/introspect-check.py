#!/usr/bin/python3
"""Compare one interface of a live object's introspection XML with the file in dbus/.

usage: introspect-check.py LIVE.xml FILE.xml INTERFACE
Methods (with argument names, types, directions), properties (type, access) and signals must
match exactly; annotations are not compared. Prints the differences, exits 1 if any.
"""
import sys
import xml.etree.ElementTree as ET


def members(path, iface):
    root = ET.parse(path).getroot()
    for i in root.iter("interface"):
        if i.get("name") == iface:
            out = set()
            for m in i:
                if m.tag in ("method", "signal"):
                    args = tuple((a.get("name"), a.get("type"), a.get("direction", "out" if m.tag == "signal" else "in"))
                                 for a in m.findall("arg"))
                    out.add((m.tag, m.get("name"), args))
                elif m.tag == "property":
                    out.add((m.tag, m.get("name"), (m.get("type"), m.get("access"))))
            return out
    sys.exit(f"{path}: no interface {iface}")


live, doc = members(sys.argv[1], sys.argv[3]), members(sys.argv[2], sys.argv[3])
for m in sorted(live - doc):
    print(f"only in the live daemon: {m}")
for m in sorted(doc - live):
    print(f"only in {sys.argv[2]}: {m}")
sys.exit(1 if live != doc else 0)
