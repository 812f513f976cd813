/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Host unit test of which backing files ublkd refuses for a user's device (target.c), on real
 * files of this machine: a tmpfs file, a memfd and a proc file are refused, naming why; a file
 * on the file system of the test's own directory is accepted when that is a disk file system. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "check.h"
#include "target.h"

static void expect_refused(const char *what, int fd, const char *words)
{
        struct ublk_reason reason = {};
        int r = target_check_user_backing(fd, &reason);

        CHECK(r == -EPERM && strstr(reason.text, words), "%s: r=%d, reason '%s', want '%s'", what, r,
              reason.text, words);
}

int main(void)
{
        struct ublk_reason reason = {};
        char shm[] = "/dev/shm/test-backing-XXXXXX", disk[] = "test-backing-XXXXXX", type[64];
        int fd, r;

        if (access("/proc/1/mountinfo", R_OK) < 0) {
                printf("/proc/1/mountinfo is not readable here: skipped\n");
                return 77;
        }

        fd = mkstemp(shm);
        if (fd >= 0) {
                unlink(shm);
                expect_refused("tmpfs file", fd, "is on tmpfs, which keeps its data in memory");
                close(fd);
        }

        fd = memfd_create("backing", 0);
        CHECK(fd >= 0, "memfd_create: %m");
        if (fd >= 0) {
                expect_refused("memfd", fd, "is a memfd, which keeps its data in memory");
                close(fd);
        }

        fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
        CHECK(fd >= 0, "/proc/self/status: %m");
        if (fd >= 0) {
                expect_refused("proc file", fd, "is on proc, which is a pseudo file system");
                close(fd);
        }

        /* The test's own directory (the build tree): accepted on a disk file system. */
        fd = mkstemp(disk);
        CHECK(fd >= 0, "mkstemp in the build tree: %m");
        if (fd >= 0) {
                unlink(disk);
                r = target_backing_fs_type(fd, type, sizeof(type));
                CHECK(r == 0 && type[0], "fs type of a build-tree file: r=%d", r);
                if (r == 0 && (strcmp(type, "ext4") == 0 || strcmp(type, "xfs") == 0 || strcmp(type, "btrfs") == 0)) {
                        r = target_check_user_backing(fd, &reason);
                        CHECK(r == 0, "a file on %s refused: %s", type, reason.text);
                } else
                        printf("the build tree is on %s: not checked as a disk file system\n", type);
                close(fd);
        }
        return check_summary();
}
