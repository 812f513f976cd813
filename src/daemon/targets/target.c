/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "config.h"
#include "macro.h"
#include "target.h"

static const struct ublk_target_ops *const targets[] = {
        &target_null_ops,
        &target_loop_ops,
#if HAVE_NBD
        &target_nbd_ops,
#endif
        &target_qcow2_ops,
#if HAVE_RBD
        &target_rbd_ops,
#endif
};

static const char *names[ELEMENTSOF(targets) + 1];

const struct ublk_target_ops *target_find(const char *name)
{
        for (size_t i = 0; i < ELEMENTSOF(targets); i++)
                if (strcmp(targets[i]->name, name) == 0)
                        return targets[i];
        return NULL;
}

const char *const *target_names(void)
{
        for (size_t i = 0; i < ELEMENTSOF(targets); i++)
                names[i] = targets[i]->name;
        return names;
}

int target_config_new(const struct ublk_target_ops *t, void **ret)
{
        void *c;

        *ret = NULL;
        if (!t->config_size)
                return 0;
        c = calloc(1, t->config_size);
        if (!c)
                return -ENOMEM;
        if (t->config_init)
                t->config_init(c);
        *ret = c;
        return 0;
}

void target_config_free(const struct ublk_target_ops *t, void *config)
{
        if (!config)
                return;
        if (t->config_release)
                t->config_release(config);
        free(config);
}

int target_config_fd(const struct ublk_target_ops *t, const void *config, const char *key)
{
        const struct ublk_option *o = ublk_option_find(key);
        union ublk_opt_value v;

        if (!config || !o || o->kind != UBLK_OPT_FD || !t->get_option || t->get_option(config, o, &v) < 0)
                return -1;
        return v.fd;
}

/*
 * File systems whose files a user must not hand to ublkd: their data would be memory charged to
 * ublkd.service (which is protected from the OOM killer and keeps the fd in PID 1's fd store
 * across restarts), or is served by a process of the user's (FUSE: a server that stops
 * answering hangs whoever asks it, and PID 1 polls the fds in its store), or is no data at all.
 */
static const struct {
        const char *type;       /* as /proc/PID/mountinfo names it; "fuse" also fuse.* and fuseblk */
        const char *why;
} user_refused_fs[] = {
        { "tmpfs",      "keeps its data in memory" },
        { "ramfs",      "keeps its data in memory" },
        { "hugetlbfs",  "keeps its data in memory" },
        { "secretmem",  "keeps its data in memory" },
        { "devtmpfs",   "keeps its data in memory" },
        { "fuse",       "is served by a user's process" },
        { "proc",       "is a pseudo file system" },
        { "sysfs",      "is a pseudo file system" },
        { "debugfs",    "is a pseudo file system" },
        { "tracefs",    "is a pseudo file system" },
        { "securityfs", "is a pseudo file system" },
        { "configfs",   "is a pseudo file system" },
        { "cgroup",     "is a pseudo file system" },
        { "cgroup2",    "is a pseudo file system" },
        { "bpf",        "is a pseudo file system" },
        { "pstore",     "is a pseudo file system" },
        { "efivarfs",   "is a pseudo file system" },
        { "devpts",     "is a pseudo file system" },
        { "mqueue",     "is a pseudo file system" },
};

/* The mount id of fd's file, from /proc/self/fdinfo: the kernel answers without asking the
 * file system. */
static int fd_mount_id(int fd, unsigned long long *ret)
{
        _cleanup_fclose_ FILE *f = NULL;
        char path[64], line[256];

        snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
        f = fopen(path, "re");
        if (!f)
                return -errno;
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "mnt_id: %llu", ret) == 1)
                        return 0;
        return -EOPNOTSUPP;
}

bool target_backing_needs_workers(int fd, uint32_t block_size)
{
        _cleanup_free_ void *buf = NULL;
        struct iovec iov;

        /* Aligned for an O_DIRECT fd; an error other than EOPNOTSUPP (EAGAIN: not cached) is
         * the file's answer that it takes the flag. */
        if (posix_memalign(&buf, 4096, block_size) != 0)
                return false;
        iov = (struct iovec) { .iov_base = buf, .iov_len = block_size };
        return preadv2(fd, &iov, 1, 0, RWF_NOWAIT) < 0 && errno == EOPNOTSUPP;
}

/*
 * The type of the file system of fd's file, as the mount table of PID 1's mount namespace names
 * its mount: callers' files are there (ublkd's own namespace is a copy, with other mount ids).
 * Nothing asks the file system itself, which for FUSE is a user's process that may never answer.
 * -ENOENT when the mount is not in that table (a memfd's internal one, another namespace's).
 */
int target_backing_fs_type(int fd, char *type, size_t len)
{
        _cleanup_fclose_ FILE *f = NULL;
        _cleanup_free_ char *line = NULL;
        unsigned long long want, id;
        size_t size = 0;
        int r;

        r = fd_mount_id(fd, &want);
        if (r < 0)
                return r;
        f = fopen("/proc/1/mountinfo", "re");
        if (!f)
                return -errno;
        while (getline(&line, &size, f) > 0) {
                const char *sep = strstr(line, " - ");
                size_t n;

                if (sscanf(line, "%llu", &id) != 1 || id != want || !sep)
                        continue;
                sep += 3;
                n = strcspn(sep, " \n");
                if (n == 0 || n >= len)
                        return -ENAMETOOLONG;
                memcpy(type, sep, n);
                type[n] = 0;
                return 0;
        }
        return -ENOENT;
}

#define REFUSE(...) (snprintf(reason->text, sizeof(reason->text), __VA_ARGS__), -EPERM)
#define REFUSE_FIX ": a user's device needs a file on a disk file system (ext4, xfs, btrfs...) or a block device"

int target_check_user_backing(int fd, struct ublk_reason *reason)
{
        char type[64], path[64], target[64];
        struct stat st;
        ssize_t n;
        int r;

        r = target_backing_fs_type(fd, type, sizeof(type));
        if (r == -ENOENT) {
                snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
                n = readlink(path, target, sizeof(target) - 1);
                if (n > 0 && strncmp(target, "/memfd:", 7) == 0)
                        return REFUSE("The backing file is a memfd, which keeps its data in memory" REFUSE_FIX);
                return REFUSE("ublkd cannot see the mount of the backing file (another mount namespace?), "
                              "so cannot tell what holds its data" REFUSE_FIX);
        }
        if (r < 0)
                return r;
        /* Before anything that could ask a FUSE server (fstat may). */
        if (strcmp(type, "fuse") == 0 || strncmp(type, "fuse.", 5) == 0 || strcmp(type, "fuseblk") == 0)
                return REFUSE("The backing file is on %s, which is served by a user's process" REFUSE_FIX, type);
        if (fstat(fd, &st) < 0)
                return -errno;
        /* A block device node's file system (devtmpfs) says nothing of the device. */
        if (S_ISBLK(st.st_mode))
                return 0;
        for (size_t i = 0; i < ELEMENTSOF(user_refused_fs); i++)
                if (strcmp(type, user_refused_fs[i].type) == 0)
                        return REFUSE("The backing file is on %s, which %s" REFUSE_FIX, type, user_refused_fs[i].why);
        return 0;
}
