/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <linux/magic.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include "macro.h"
#include "target.h"

static const struct ublk_target_ops *const targets[] = {
        &target_null_ops,
        &target_loop_ops,
};

static const char *const names[] = {
        "null",
        "loop",
        NULL,
};

const struct ublk_target_ops *target_find(const char *name)
{
        for (size_t i = 0; i < ELEMENTSOF(targets); i++)
                if (strcmp(targets[i]->name, name) == 0)
                        return targets[i];
        return NULL;
}

const char *const *target_names(void)
{
        return names;
}

#ifndef SECRETMEM_MAGIC
#define SECRETMEM_MAGIC 0x5345434d
#endif
#ifndef FUSE_SUPER_MAGIC
#define FUSE_SUPER_MAGIC 0x65735546
#endif

/* File systems whose files a user must not hand to ublkd: their data would be memory charged to
 * ublkd.service (which is protected from the OOM killer and keeps the fd in PID 1's fd store
 * across restarts), or is served by a process of the user's (FUSE: a server that stops answering
 * hangs ublkd's queue threads, and PID 1 polls every stored fd), or is no data at all. */
static const struct {
        unsigned long magic;
        const char *name;
        const char *why;
} user_refused_fs[] = {
        { TMPFS_MAGIC,         "tmpfs (or a memfd)", "keeps its data in memory" },
        { RAMFS_MAGIC,         "ramfs",              "keeps its data in memory" },
        { HUGETLBFS_MAGIC,     "hugetlbfs",          "keeps its data in memory" },
        { SECRETMEM_MAGIC,     "secretmem",          "keeps its data in memory" },
        { FUSE_SUPER_MAGIC,    "FUSE",               "is served by a user's process" },
        { PROC_SUPER_MAGIC,    "proc",               "is a pseudo file system" },
        { SYSFS_MAGIC,         "sysfs",              "is a pseudo file system" },
        { DEBUGFS_MAGIC,       "debugfs",            "is a pseudo file system" },
        { TRACEFS_MAGIC,       "tracefs",            "is a pseudo file system" },
        { SECURITYFS_MAGIC,    "securityfs",         "is a pseudo file system" },
        { CGROUP_SUPER_MAGIC,  "cgroup",             "is a pseudo file system" },
        { CGROUP2_SUPER_MAGIC, "cgroup2",            "is a pseudo file system" },
        { BPF_FS_MAGIC,        "bpf",                "is a pseudo file system" },
        { PSTOREFS_MAGIC,      "pstore",             "is a pseudo file system" },
        { EFIVARFS_MAGIC,      "efivarfs",           "is a pseudo file system" },
        { DEVPTS_SUPER_MAGIC,  "devpts",             "is a pseudo file system" },
        { ANON_INODE_FS_MAGIC, "anon_inodefs",       "is a pseudo file system" },
        { NSFS_MAGIC,          "nsfs",               "is a pseudo file system" },
};

int target_check_user_backing(int fd, struct ublk_reason *reason)
{
        struct statfs sfs;
        struct stat st;

        if (fstat(fd, &st) < 0 || fstatfs(fd, &sfs) < 0)
                return -errno;
        /* A block device node's own file system (devtmpfs) says nothing of the device. */
        if (S_ISBLK(st.st_mode))
                return 0;
        for (size_t i = 0; i < ELEMENTSOF(user_refused_fs); i++)
                if ((unsigned long) sfs.f_type == user_refused_fs[i].magic) {
                        snprintf(reason->text, sizeof(reason->text),
                                 "The backing file is on %s, which %s: a user's device needs a file on a disk "
                                 "file system (ext4, xfs, btrfs...) or a block device",
                                 user_refused_fs[i].name, user_refused_fs[i].why);
                        return -EPERM;
                }
        return 0;
}
