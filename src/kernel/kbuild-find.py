#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Which kernel build tree the module is built against (src/kernel/meson.build).

kbuild-find.py series TREE
    prints the series of the kernel build tree TREE ("6.12"), read from its
    include/generated/uapi/linux/version.h; nothing if it has none.
kbuild-find.py check TREE SERIES...
    exits 0 if TREE is of one of SERIES; else prints what it is instead
    ("Linux 7.3", "a tree without version.h") and exits 1.
kbuild-find.py find GLOB SERIES...
    prints the build tree, among those GLOB matches that are of one of SERIES,
    to build against: the running kernel's if it is one, else the newest (by
    the numbers in its release); nothing if none is.
"""
import glob
import os
import re
import sys


def series(tree):
    try:
        with open(os.path.join(tree, 'include/generated/uapi/linux/version.h')) as f:
            text = f.read()
    except OSError:
        return ''
    major = re.search(r'LINUX_VERSION_MAJOR (\d+)', text)
    minor = re.search(r'LINUX_VERSION_PATCHLEVEL (\d+)', text)
    return '%s.%s' % (major.group(1), minor.group(1)) if major and minor else ''


def release_key(tree):
    release = os.path.basename(os.path.dirname(os.path.normpath(tree)))
    return [int(x) for x in re.findall(r'\d+', release)]


def find(pattern, wanted):
    trees = [t for t in glob.glob(pattern) if os.path.isdir(t) and series(t) in wanted]
    running = '/lib/modules/%s/build' % os.uname().release
    if running in trees:
        return running
    return max(trees, key=release_key) if trees else ''


def check(tree, wanted):
    found = series(tree)
    if found in wanted:
        return 0
    print('Linux ' + found if found else 'a tree without version.h', end='')
    return 1


if __name__ == '__main__':
    if len(sys.argv) == 3 and sys.argv[1] == 'series':
        print(series(sys.argv[2]), end='')
    elif len(sys.argv) >= 4 and sys.argv[1] == 'check':
        sys.exit(check(sys.argv[2], sys.argv[3:]))
    elif len(sys.argv) >= 4 and sys.argv[1] == 'find':
        print(find(sys.argv[2], sys.argv[3:]), end='')
    else:
        sys.exit(__doc__)
