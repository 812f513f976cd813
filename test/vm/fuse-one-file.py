#!/usr/bin/python3
"""A FUSE file system with one file, served by this process (no libfuse: /dev/fuse directly).

usage: fuse-one-file.py MOUNTPOINT UID SIZE LOG
Mounts (as root, allow_other) a file system holding one regular file, MOUNTPOINT/img, owned by
UID, mode 0666, SIZE bytes of zeros; serves it until unmounted. Prints "ready" once mounted.
Writes "OPCODE TGID" to LOG for every request: which process asked.
It stands for a user's FUSE server: t-user-attacks checks that ublkd refuses such a file as a
user's backing without asking the server anything.
"""
import ctypes
import errno
import os
import struct
import sys

mnt, uid, size, log = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), open(sys.argv[4], "a", buffering=1)
IN_HDR = struct.Struct("=IIQQIIIHH")      # len opcode unique nodeid uid gid pid total_extlen pad
OUT_HDR = struct.Struct("=IiQ")           # len error unique
ATTR = struct.Struct("=QQQQQQIIIIIIIIII")  # ino size blocks a/m/ctime a/m/cnsec mode nlink uid gid rdev blksize flags
LOOKUP, FORGET, GETATTR, OPEN, READ, RELEASE, FLUSH, INIT, INTERRUPT, BATCH_FORGET = 1, 2, 3, 14, 15, 18, 25, 26, 36, 42


def attr(node):
    if node == 1:
        return ATTR.pack(1, 0, 0, 0, 0, 0, 0, 0, 0, 0o40755, 2, 0, 0, 0, 4096, 0)
    return ATTR.pack(2, size, size // 512, 0, 0, 0, 0, 0, 0, 0o100666, 1, uid, uid, 0, 4096, 0)


fd = os.open("/dev/fuse", os.O_RDWR)
libc = ctypes.CDLL(None, use_errno=True)
opts = "fd=%d,rootmode=40000,user_id=0,group_id=0,allow_other" % fd
if libc.mount(b"one-file", mnt.encode(), b"fuse", 0, opts.encode()) != 0:
    sys.exit("mount: " + os.strerror(ctypes.get_errno()))
print("ready", flush=True)


def reply(unique, body=b"", error=0):
    os.write(fd, OUT_HDR.pack(OUT_HDR.size + len(body), -error, unique) + body)


while True:
    try:
        req = os.read(fd, 1 << 20 | 4096)
    except OSError as e:
        if e.errno in (errno.ENODEV,):       # unmounted
            break
        if e.errno in (errno.EINTR, errno.ENOENT):
            continue
        raise
    _, op, unique, node, _, _, pid, _, _ = IN_HDR.unpack_from(req)
    tgid = pid
    try:
        with open("/proc/%d/status" % pid) as f:
            tgid = next(int(l.split()[1]) for l in f if l.startswith("Tgid:"))
    except (OSError, StopIteration):
        pass
    print(op, tgid, file=log)
    arg = req[IN_HDR.size:]
    if op == INIT:
        reply(unique, struct.pack("=IIIIHHIIHHII24x", 7, 31, 0, 0, 16, 12, 65536, 1, 16, 0, 0, 0))
    elif op == LOOKUP:
        if node == 1 and arg.rstrip(b"\0") == b"img":
            reply(unique, struct.pack("=QQQQII", 2, 0, 1, 1, 0, 0) + attr(2))
        else:
            reply(unique, error=errno.ENOENT)
    elif op == GETATTR:
        reply(unique, struct.pack("=QII", 1, 0, 0) + attr(node))
    elif op == OPEN:
        reply(unique, struct.pack("=QIi", 1, 0, 0))
    elif op == READ:
        _, offset, length = struct.unpack_from("=QQI", arg)
        reply(unique, bytes(max(0, min(length, size - offset))))
    elif op in (RELEASE, FLUSH):
        reply(unique)
    elif op in (FORGET, BATCH_FORGET, INTERRUPT):
        pass                                  # no reply for these
    else:
        reply(unique, error=errno.ENOSYS)
