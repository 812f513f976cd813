/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Host unit test of the fd store's names and their restore (state.c): "KEY-ID" for an FD
 * option kept across a restart, "KEY-ID-N" for the Nth fd of an FDS one (qcow2's
 * backing-chain).  The fds come back as systemd passes them (LISTEN_FDS, LISTEN_FDNAMES, in
 * any order) and are taken in their N order; a chain with a gap is refused whole; names that
 * are none of ours are closed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "add-options.h"
#include "check.h"
#include "state.h"

static void test_names(void)
{
        static const struct {
                const char *name, *key;
                uint32_t id;
                int index;
        } good[] = {
                { "backing-7", "backing", 7, -1 },
                { "image-0", "image", 0, -1 },
                { "backing-chain-7-0", "backing-chain", 7, 0 },
                { "backing-chain-12-31", "backing-chain", 12, 31 },
        };
        static const char *const bad[] = {
                "backing", "backing-", "backing-x", "backing-7-0", "backing-chain-7", "backing-chain-7-",
                "backing-chain-7-32", "backing-chain--1", "sockets-1-0", "size-1", "image-1-0", "", "-1",
        };
        const struct ublk_option *o;
        uint32_t id;
        int index;

        for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
                int r = state_fd_name_parse(good[i].name, &o, &id, &index);

                CHECK(r == 0 && strcmp(o->key, good[i].key) == 0 && id == good[i].id && index == good[i].index,
                      "'%s' parsed as %s/%u/%d (r=%d)", good[i].name, r == 0 ? o->key : "-", id, index, r);
        }
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                CHECK(state_fd_name_parse(bad[i], &o, &id, &index) < 0, "'%s' taken", bad[i]);
}

/* A file whose inode tells which one it is. */
static int tagged_fd(char *path_template, ino_t *ino)
{
        int fd = mkstemp(path_template);
        struct stat st;

        if (fd < 0 || fstat(fd, &st) < 0)
                return -1;
        unlink(path_template);
        *ino = st.st_ino;
        return fd;
}

static bool same_file(int fd, ino_t ino)
{
        struct stat st;

        return fd >= 0 && fstat(fd, &st) == 0 && st.st_ino == ino;
}

int main(void)
{
        /* As systemd passes them: out of their N order, with an unknown name and a chain
         * (device 9) with a gap. */
        static const char *const names[] = {
                "backing-chain-5-1", "image-5", "bogus-1", "backing-chain-5-0", "backing-chain-5-2",
                "backing-chain-9-0", "backing-chain-9-2",
        };
        enum { N = sizeof(names) / sizeof(names[0]) };
        ino_t ino[N];
        char env[512] = "", buf[32];
        int *fds = NULL, fd;
        unsigned n = 0;

        test_names();

        for (int i = 0; i < N; i++) {
                char tmpl[] = "/tmp/test-fdstore-XXXXXX";

                fd = tagged_fd(tmpl, &ino[i]);
                CHECK(fd >= 0 && dup2(fd, 3 + i) == 3 + i, "cannot make fd %d: %m", 3 + i);
                if (fd != 3 + i)
                        close(fd);
                snprintf(env + strlen(env), sizeof(env) - strlen(env), "%s%s", i ? ":" : "", names[i]);
        }
        setenv("LISTEN_FDNAMES", env, 1);
        snprintf(buf, sizeof(buf), "%d", N);
        setenv("LISTEN_FDS", buf, 1);
        snprintf(buf, sizeof(buf), "%d", (int) getpid());
        setenv("LISTEN_PID", buf, 1);
        unsetenv("NOTIFY_SOCKET");
        state_fds_load();

        CHECK(fcntl(3 + 2, F_GETFD) < 0, "the unknown name's fd was not closed");
        fd = state_fd_take("image", 5);
        CHECK(same_file(fd, ino[1]), "image-5 is not its file");
        CHECK(state_fd_take("image", 5) < 0, "image-5 taken twice");
        close(fd);
        CHECK(state_fds_take("backing-chain", 5, &fds, &n) == 0 && n == 3, "device 5's chain: %u fds", n);
        CHECK(n == 3 && same_file(fds[0], ino[3]) && same_file(fds[1], ino[0]) && same_file(fds[2], ino[4]),
              "device 5's chain is not in its order");
        for (unsigned i = 0; i < n; i++)
                close(fds[i]);
        free(fds);
        CHECK(state_fds_take("backing-chain", 5, &fds, &n) == 0 && n == 0 && !fds, "device 5's chain taken twice");
        CHECK(state_fds_take("backing-chain", 9, &fds, &n) == -ENOENT && n == 0, "a chain with a gap was taken");
        CHECK(state_fds_take("backing-chain", 4, &fds, &n) == 0 && n == 0, "device 4 has no chain");
        state_fds_drop_unused();
        CHECK(fcntl(3 + 5, F_GETFD) < 0 && fcntl(3 + 6, F_GETFD) < 0, "the gapped chain's fds were not closed");
        return check_summary();
}
