#!/usr/bin/python3
"""Run a command on a new pseudo-terminal and answer one prompt, as a person would.

usage: pty-answer.py [--hold FILE] PROMPT ANSWER TIMEOUT_S COMMAND [ARG...]
Copies everything the command writes to stdout; when PROMPT appears in it, types ANSWER and
Enter (for a password prompt, once the terminal's echo is off, as it is when it reads).
--hold FILE: once PROMPT has appeared, create FILE.prompted and wait for FILE to exist before
answering (a test does something while the command waits at its prompt). Exits with the command's exit status; 124 if it is still running after TIMEOUT_S,
125 if PROMPT never appeared but the command ended.
"""
import os
import pty
import select
import sys
import termios
import time

args = sys.argv[1:]
hold = None
if args[:1] == ["--hold"]:
    hold, args = args[1], args[2:]
prompt, answer, timeout, argv = args[0].encode(), args[1].encode(), float(args[2]), args[3:]
pid, fd = pty.fork()
if pid == 0:
    os.execvp(argv[0], argv)

out, answered, end = b"", False, time.monotonic() + timeout
while True:
    left = end - time.monotonic()
    if left <= 0:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        sys.stdout.buffer.write(out)
        sys.exit(124)
    ready, _, _ = select.select([fd], [], [], left)
    if not ready:
        continue
    try:
        data = os.read(fd, 4096)
    except OSError:         # EIO: the command closed the terminal
        data = b""
    if not data:
        break
    out += data
    if not answered and prompt in out:
        # A password prompt turns echo off, flushing what was typed before: wait for that.
        if hold:
            open(hold + ".prompted", "w").close()
            while not os.path.exists(hold) and time.monotonic() < end:
                time.sleep(0.05)
        if b"assword" in prompt:
            wait_end = time.monotonic() + 10
            while termios.tcgetattr(fd)[3] & termios.ECHO and time.monotonic() < wait_end:
                time.sleep(0.02)
        os.write(fd, answer + b"\n")
        answered = True
sys.stdout.buffer.write(out)
_, status = os.waitpid(pid, 0)
rc = os.waitstatus_to_exitcode(status)
sys.exit(rc if answered or rc != 0 else 125)
