#!/usr/bin/python3
"""Drive ublkd's bus API with malformed calls and check each is answered with a named error.

usage: bus-fuzz.py SEED COUNT DEVICE_PATH
Every call is built to be invalid (wrong signature, unknown target or option, a value out of
range, a bad fd, a huge or odd string, a method or property that does not exist, a path that
is no device), so none may change anything. Prints the number of calls and the error names
seen; exits 1 on a call that succeeded, timed out, or got no error name.
"""
import collections
import logging
import os
import random
import socket
import sys

import dbus

SEED, COUNT, DEVICE = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
logging.disable(logging.CRITICAL)      # python-dbus logs each argument it refuses to send
rng = random.Random(SEED)
bus = dbus.SystemBus()
NAME, MANAGER = "org.ublk.ublkd1", "/org/ublk/ublkd1"
MIFACE, DIFACE, PROPS = "org.ublk.ublkd1.Manager", "org.ublk.ublkd1.Device", "org.freedesktop.DBus.Properties"

keep = []
sock = socket.socketpair()
dirfd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
opath = os.open("/etc/passwd", os.O_PATH)
wronly = os.open("/dev/null", os.O_WRONLY)
BAD_FDS = [sock[0].fileno(), dirfd, opath, wronly]


def rand_str():
    kind = rng.randrange(6)
    if kind == 0:
        return ""
    if kind == 1:
        return "x" * rng.choice([65, 300, 4096, 1 << 20])
    if kind == 2:
        return "".join(chr(rng.randrange(0x20, 0x7f)) for _ in range(rng.randrange(1, 40)))
    if kind == 3:
        return "".join(chr(rng.choice([rng.randrange(0x80, 0xd7ff), rng.randrange(0xe000, 0x10ffff)]))
                       for _ in range(rng.randrange(1, 20)))
    if kind == 4:
        return rng.choice(["../../etc/passwd", "-rf", ".hidden", "a/b", "a b", "name\n", "%s%n", "null\x01"])
    return rng.choice(["null", "loop"]) + rng.choice(["", "x", " ", "\t"]) * rng.randrange(1, 3)


def rand_value():
    """A variant of a random type."""
    kind = rng.randrange(7)
    if kind == 0:
        return dbus.UInt64(rng.choice([0, 1, 511, (1 << 60) + 1, (1 << 64) - 1]), variant_level=1)
    if kind == 1:
        return dbus.UInt32(rng.choice([0, 4097, 65536, (1 << 32) - 1]), variant_level=1)
    if kind == 2:
        return dbus.Int32(rng.randrange(-(1 << 31), 1 << 31), variant_level=1)
    if kind == 3:
        return dbus.String(rand_str(), variant_level=1)
    if kind == 4:
        return dbus.Boolean(rng.random() < 0.5, variant_level=1)
    if kind == 5:
        return dbus.Array([dbus.Byte(rng.randrange(256)) for _ in range(rng.randrange(64))], signature="y",
                          variant_level=1)
    return dbus.types.UnixFd(rng.choice(BAD_FDS), variant_level=1)


# Options that are always wrong, one per kind of mistake.
BAD_OPTIONS = [
    lambda: {"size": dbus.UInt64(rng.choice([(1 << 60) + 4096, 1000]))},       # > 1 EiB; not a block multiple
    lambda: {"size": dbus.UInt32(4096)},                                         # wrong type
    lambda: {"queues": dbus.UInt32(rng.choice([0, 1 << 20]))},
    lambda: {"depth": dbus.UInt32(rng.choice([0, 4097, (1 << 32) - 1]))},
    lambda: {"logical-block-size": dbus.UInt32(rng.choice([1, 513, 8192, 3000]))},
    lambda: {"name": dbus.String(rng.choice(["", "-x", ".x", "a/b", "x" * 65, "ä", "a b"]))},
    lambda: {"direct-io": dbus.String(rand_str() + "?")},
    lambda: {"zero-copy": dbus.String("maybe")},
    lambda: {"backing": dbus.types.UnixFd(rng.choice(BAD_FDS))},
    lambda: {"backing": dbus.String("/etc/passwd")},                              # paths are never opened
    lambda: {rand_str() + "\u2603": rand_value()},                                # unknown key
    lambda: {"start": dbus.UInt32(1)},
]


def add_call():
    kind = rng.randrange(5)
    if kind == 0:       # wrong signature
        sig = rng.choice(["", "s", "ss", "a{sv}", "sa{ss}", "ua{sv}", "sa{sv}s", "sav"])
        args = {"": [], "s": ["null"], "ss": ["null", "x"], "a{sv}": [{}], "sa{ss}": ["null", {"size": "1"}],
                "ua{sv}": [1, {}], "sa{sv}s": ["null", {}, "x"], "sav": ["null", [dbus.String("x")]]}[sig]
        return MANAGER, MIFACE, "Add", sig, args
    if kind == 1:       # unknown target
        return MANAGER, MIFACE, "Add", "sa{sv}", [rand_str() + "_", {"size": dbus.UInt64(1 << 20)}]
    # A valid target with at least one bad option, among random others.
    opts = {}
    for _ in range(rng.randrange(3)):
        opts.update(rng.choice(BAD_OPTIONS)())
    opts.update(rng.choice(BAD_OPTIONS)())
    bad = rng.choice(BAD_OPTIONS)()
    opts.update(bad)
    return MANAGER, MIFACE, "Add", "sa{sv}", [rng.choice(["null", "loop"]), dbus.Dictionary(opts, signature="sv")]


def device_call():
    kind = rng.randrange(6)
    path = DEVICE
    if kind == 0:       # no such object
        path = rng.choice([MANAGER + "/device/999999", MANAGER + "/device/x", MANAGER + "/nothing",
                           "/" + "a" * rng.randrange(1, 200), MANAGER + "/device/4294967296"])
        return path, DIFACE, rng.choice(["Start", "Stop", "Remove", "Recover"]), "", []
    if kind == 1:       # extra arguments
        return path, DIFACE, rng.choice(["Start", "Stop", "Remove", "Recover"]), "s", [rand_str()]
    if kind == 2:       # unknown method
        return path, DIFACE, rng.choice(["Delete", "Resize", "start", "Kill"]), "", []
    if kind == 3:       # unknown or read-only property
        return path, PROPS, "Get", "ss", [DIFACE, rand_str() + "_"]
    if kind == 4:
        return path, PROPS, "Set", "ssv", [DIFACE, rng.choice(["Size", "Name", "State", "Backing"]), rand_value()]
    # a live device cannot start again, a non-quiesced one cannot be recovered
    return path, DIFACE, rng.choice(["Start", "Recover"]), "", []


def manager_call():
    kind = rng.randrange(5)
    if kind == 0:
        return MANAGER, MIFACE, "GetDevice", rng.choice(["u", "s", "t"]), [
            rng.choice([999999, (1 << 32) - 1])] if rng.random() < 0.5 else ["x"]
    if kind == 1:
        return MANAGER, MIFACE, "GetDeviceByName", "s", [rand_str() + "\u00e9"]
    if kind == 2:
        return MANAGER, MIFACE, "ListDevices", "s", [rand_str()]
    if kind == 3:
        return MANAGER, PROPS, "Set", "ssv", [MIFACE, rng.choice(["Version", "Targets", "KernelFeatures"]),
                                              rand_value()]
    return MANAGER, PROPS, "GetAll", "s", [rand_str() + ".Nope"]


names = collections.Counter()
for i in range(COUNT):
    path, iface, method, sig, args = rng.choice([add_call, add_call, device_call, manager_call])()
    try:
        bus.call_blocking(NAME, path, iface, method, sig, args, timeout=30)
    except dbus.exceptions.DBusException as e:
        name = e.get_dbus_name()
        if not name or name in ("org.freedesktop.DBus.Error.NoReply", "org.freedesktop.DBus.Error.Timeout",
                                "org.freedesktop.DBus.Error.ServiceUnknown",
                                "org.freedesktop.DBus.Error.NameHasNoOwner"):
            print(f"call {i}: {method}{tuple(args)!r:.200} on {path}: {name}: {e}", file=sys.stderr)
            sys.exit(1)
        names[name] += 1
        continue
    except (TypeError, ValueError):
        names["(refused by the client library)"] += 1      # e.g. a string libdbus will not send
        continue
    print(f"call {i}: {method}({sig}) {tuple(args)!r:.300} on {path} succeeded", file=sys.stderr)
    sys.exit(1)

print(f"{COUNT} calls, seed {SEED}:")
for name, n in names.most_common():
    print(f"  {n:6} {name}")
