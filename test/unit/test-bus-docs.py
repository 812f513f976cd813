#!/usr/bin/python3
# test-bus-docs MAN-PAGE BUS-HEADER POLKIT-POLICY INTERFACE-XML...
# The D-Bus API man page (man/org.ublk.ublkd1.5) against the API itself: every interface,
# method (with its arguments' types and names), property (with its type) and signal of the
# introspection XML (dbus/*.xml, which t-bus checks against the live daemon) is an item of the
# page; every error name of src/shared/ublkd-bus.h and every polkit action of the policy is in
# it; and every method, property, error and action the page names exists (no stale docs).
# A method is an item ".B "Name(t1 a1, t2 a2) \-> (t3 a3)"", a property ".B "Name (t)"",
# a signal ".B "Name(t1 a1)"" (the form of org.freedesktop.home1(5)).
import re
import sys
import xml.etree.ElementTree as ET

passed = failed = 0


def check(ok, msg):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print(f"FAIL: {msg}")


def args(elem, direction):
    return ", ".join(f"{a.get('type')} {a.get('name')}" for a in elem.findall("arg")
                     if a.get("direction", "in" if elem.tag == "method" else "out") == direction)


def method_item(m):
    out = args(m, "out")
    return f"{m.get('name')}({args(m, 'in')})" + (f" -> ({out})" if out else "")


man_path, header, policy, *xmls = sys.argv[1:]
raw = open(man_path, encoding="utf-8").read()
# The page as text: roff's escapes for "-", "->" and fonts resolved, quotes dropped.
text = re.sub(r"\\f[BIRP]", "", raw.replace("\\-", "-").replace("\\(en", "-"))
items = set()
for line in text.splitlines():
    m = re.match(r'\.B\s+"?(.*?)"?\s*$', line)
    if m:
        items.add(m.group(1))

methods, props, signals = {}, {}, {}
for path in xmls:
    for iface in ET.parse(path).getroot().iter("interface"):
        name = iface.get("name")
        check(name in text, f"interface {name} ({path}) is not in {man_path}")
        for m in iface.findall("method"):
            methods[m.get("name")] = item = method_item(m)
            check(item in items, f"method {name}.{item} is not an item of {man_path}")
        for p in iface.findall("property"):
            props[p.get("name")] = item = f"{p.get('name')} ({p.get('type')})"
            check(item in items, f"property {name}.{item} is not an item of {man_path}")
        for s in iface.findall("signal"):
            signals[s.get("name")] = item = f"{s.get('name')}({args(s, 'out')})"
            check(item in items, f"signal {name}.{item} is not an item of {man_path}")
check(methods and props, f"no method or property found in {xmls}")

errors = set(re.findall(r'"(org\.ublk\.ublkd1\.Error\.\w+)"', open(header, encoding="utf-8").read()))
check(errors, f"no error name found in {header}")
for e in sorted(errors):
    check(f".B {e}" in text, f"error {e} ({header}) is not an item of {man_path}")
actions = set(re.findall(r'<action id="([^"]+)"', open(policy, encoding="utf-8").read()))
check(actions, f"no polkit action found in {policy}")
for a in sorted(actions):
    check(a in text, f"polkit action {a} ({policy}) is not in {man_path}")

# The other way: what the page names must exist.
for e in sorted(set(re.findall(r"org\.ublk\.ublkd1\.Error\.\w+", text)) - errors):
    check(False, f"{man_path} names error {e}, which {header} does not define")
for a in sorted(set(re.findall(r"org\.ublk\.ublkd1\.[a-z]+(?:-[a-z]+)+", text)) - actions):
    check(False, f"{man_path} names polkit action {a}, which {policy} does not define")
for item in sorted(items):
    m = re.fullmatch(r"([A-Z]\w*)\((.*)", item)
    if m:
        check(item in (methods.get(m.group(1)), signals.get(m.group(1))),
              f"{man_path} documents {item}, which is no method or signal of {xmls}")
    m = re.fullmatch(r"([A-Z]\w*) \((\S+)\)", item)
    if m:
        check(props.get(m.group(1)) == item, f"{man_path} documents property {item}, which {xmls} do not have")

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
