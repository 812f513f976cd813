#!/usr/bin/python3
"""Call org.ublk.ublkd1.Manager.Add with a backing fd, as a real client other than ublkctl.

usage: bus-add.py TARGET [--fd N | --socket | --opath PATH] [KEY=SIG:VALUE ...]
  --fd N      pass inherited fd N as option "backing" (open it in the shell: 3<file, 3>file, 3<dir)
  --socket    pass one end of a fresh socketpair as "backing"
  --opath P   pass an O_PATH descriptor of P as "backing"
  --key KEY   pass the fd of --fd/--opath/--socket as option KEY instead (qcow2's "image")
  --chain N   append inherited fd N to the fd array "backing-chain" (qcow2's; repeatable)
  KEY=SIG:VALUE  another option, SIG one of t u b s (b: true/false)
Prints "ID PATH" on success; on failure the D-Bus error name and message on one line, exit 1.
busctl cannot pass file descriptors; this can (python3-dbus).
"""
import os
import socket
import sys

import dbus

target, args = sys.argv[1], sys.argv[2:]
opts = {}
keep = []
fd_key = "backing"
chain = []
while args:
    a = args.pop(0)
    if a == "--key":
        fd_key = args.pop(0)
    elif a == "--chain":
        chain.append(dbus.types.UnixFd(int(args.pop(0))))
    elif a == "--fd":
        opts["backing"] = dbus.types.UnixFd(int(args.pop(0)))
    elif a == "--opath":
        opts["backing"] = dbus.types.UnixFd(os.open(args.pop(0), os.O_PATH))
    elif a == "--socket":
        keep = socket.socketpair()
        opts["backing"] = dbus.types.UnixFd(keep[0].fileno())
    else:
        key, _, rest = a.partition("=")
        sig, _, val = rest.partition(":")
        conv = {"t": dbus.UInt64, "u": dbus.UInt32, "s": dbus.String,
                "b": lambda v: dbus.Boolean(v == "true")}[sig]
        opts[key] = conv(val)

if fd_key != "backing" and "backing" in opts:
    opts[fd_key] = opts.pop("backing")
if chain:
    opts["backing-chain"] = dbus.Array(chain, signature="h")

bus = dbus.SystemBus()
mgr = dbus.Interface(bus.get_object("org.ublk.ublkd1", "/org/ublk/ublkd1"), "org.ublk.ublkd1.Manager")
try:
    dev_id, path = mgr.Add(target, dbus.Dictionary(opts, signature="sv"), timeout=120)
except dbus.exceptions.DBusException as e:
    print(f"{e.get_dbus_name()}: {e.get_dbus_message()}")
    sys.exit(1)
print(dev_id, path)
