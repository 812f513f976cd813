/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <liburing.h>
#include <linux/capability.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctrl.h"
#include "log.h"
#include "macro.h"
#include "parse.h"
#include "user-child.h"

#define USER_CHILD_MAX_FDS 4

/* Reads len bytes; with timeout_ms >= 0, -ETIMEDOUT when they have not all come by then. */
static int read_full(int fd, void *buf, size_t len, int timeout_ms)
{
        size_t done = 0;

        while (done < len) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                ssize_t n;
                int r;

                if (timeout_ms >= 0) {
                        r = poll(&p, 1, timeout_ms);
                        if (r < 0 && errno == EINTR)
                                continue;
                        if (r < 0)
                                return -errno;
                        if (r == 0)
                                return -ETIMEDOUT;
                }
                n = read(fd, (char *) buf + done, len - done);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        return -EPIPE;
                done += (size_t) n;
        }
        return 0;
}

int user_child_read(int fd, void *buf, size_t len)
{
        return read_full(fd, buf, len, -1);
}

int user_child_run(const char *mode, uid_t uid, gid_t gid, const char *arg, const int *fds, size_t n_fds,
                   const void *in, size_t in_len, void *out, size_t out_len)
{
        _cleanup_close_ int to_child = -1, from_child = -1;
        int in_pipe[2] = { -1, -1 }, out_pipe[2] = { -1, -1 };
        posix_spawn_file_actions_t actions;
        char suid[16], sgid[16];
        char *argv[] = { (char *) "ublkd", (char *) mode, suid, sgid, (char *) arg, NULL };
        posix_spawnattr_t attr;
        sigset_t none, all;
        pid_t pid;
        int r, status = 0;

        if (uid == 0 || n_fds > USER_CHILD_MAX_FDS || in_len > PIPE_BUF)
                return -EINVAL;
        snprintf(suid, sizeof(suid), "%u", (unsigned) uid);
        snprintf(sgid, sizeof(sgid), "%u", (unsigned) gid);
        if (pipe2(in_pipe, O_CLOEXEC) < 0)
                return -errno;
        to_child = in_pipe[1];
        if (pipe2(out_pipe, O_CLOEXEC) < 0) {
                r = -errno;
                safe_close(in_pipe[0]);
                return r;
        }
        from_child = out_pipe[0];

        sigemptyset(&none);
        sigfillset(&all);
        posix_spawnattr_init(&attr);
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
        posix_spawnattr_setsigmask(&attr, &none);
        posix_spawnattr_setsigdefault(&attr, &all);
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_adddup2(&actions, in_pipe[0], STDIN_FILENO);
        posix_spawn_file_actions_adddup2(&actions, out_pipe[1], STDOUT_FILENO);
        /* dup2 to the same number clears close-on-exec too (glibc 2.29+, POSIX 2024). */
        for (size_t i = 0; i < n_fds; i++)
                posix_spawn_file_actions_adddup2(&actions, fds[i], 3 + (int) i);
        r = -posix_spawn(&pid, "/proc/self/exe", &actions, &attr, argv, environ);
        posix_spawn_file_actions_destroy(&actions);
        posix_spawnattr_destroy(&attr);
        safe_close(in_pipe[0]);
        safe_close(out_pipe[1]);
        if (r < 0)
                return r;

        /* Less than a pipe's buffer: this does not block. */
        if (in_len && write(to_child, in, in_len) != (ssize_t) in_len)
                r = -EPIPE;
        else
                r = read_full(from_child, out, out_len, USER_CHILD_TIMEOUT_MS);
        /* Once it has answered it has nothing left to do; if not, its user may have stopped it:
         * either way it ends here, and the wait cannot hang on a stopped child. */
        (void) kill(pid, SIGKILL);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
        if (r < 0) {
                log_warning("The process of ublkd %s %u %s.", mode, (unsigned) uid,
                            r == -ETIMEDOUT ? "did not answer in time and was killed" : "was killed");
                return -ECANCELED;
        }
        return 0;
}

static int drop_capabilities(void)
{
        struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
        struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};

        return syscall(SYS_capset, &hdr, data) < 0 ? -errno : 0;
}

/* Real ids the user's, the rest 0: the user may signal this process, not trace or prlimit it. */
static int become_user_real_ids(uid_t uid, gid_t gid)
{
        if (setresgid(gid, (gid_t) -1, (gid_t) -1) < 0 || setresuid(uid, (uid_t) -1, (uid_t) -1) < 0)
                return -errno;
        return drop_capabilities();
}

/* Every id the user's, no supplementary group: the kernel then clears every capability. */
static int become_user(uid_t uid, gid_t gid)
{
        if (setgroups(0, NULL) < 0 || setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0)
                return -errno;
        /* As the kernel leaves it by default (fs.suid_dumpable=0), whatever the sysctl says:
         * this process holds a ring of ublkd's. */
        (void) prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
        return drop_capabilities();
}

static int child_personality(void)
{
        /* liburing's wrapper returns the id, or a negative errno. */
        int32_t reply = io_uring_register(3, IORING_REGISTER_PERSONALITY, NULL, 0);

        return write(STDOUT_FILENO, &reply, sizeof(reply)) == (ssize_t) sizeof(reply) ? 0 : 1;
}

int user_child_main(int argc, char **argv)
{
        uint32_t uid, gid, delay_ms;
        const char *delay;
        bool add_dev;
        int r;

        if (argc < 2)
                return -1;
        add_dev = strcmp(argv[1], USER_CHILD_ADD_DEV) == 0;
        if (!add_dev && strcmp(argv[1], USER_CHILD_PERSONALITY) != 0)
                return -1;
        if (argc != 5 || parse_uint32(argv[2], &uid) < 0 || parse_uint32(argv[3], &gid) < 0 || uid == 0) {
                fprintf(stderr, "ublkd %s: for ublkd's own use only\n", argv[1]);
                return 2;
        }
        r = add_dev ? become_user_real_ids(uid, gid) : become_user(uid, gid);
        if (r < 0) {
                fprintf(stderr, "ublkd %s: cannot take on uid %u: %s\n", argv[1], uid, strerror(-r));
                return 1;
        }
        /* Tests only: time for the user to find this process (t-user-attacks). */
        delay = getenv("UBLKD_TEST_CHILD_DELAY_MS");
        if (delay && parse_uint32(delay, &delay_ms) >= 0)
                (void) usleep(delay_ms * 1000);
        /* _exit(): nothing to clean up, and no exit handler (a sanitizer's) to keep it alive. */
        _exit(add_dev ? ublk_ctrl_add_dev_child(argv[4]) : child_personality());
}

int user_child_register_personality(int ring_fd, uid_t uid, gid_t gid, unsigned *ret_personality)
{
        int32_t reply;
        int r;

        r = user_child_run(USER_CHILD_PERSONALITY, uid, gid, "-", &ring_fd, 1, NULL, 0, &reply, sizeof(reply));
        if (r < 0)
                return r;
        if (reply <= 0)
                return reply < 0 ? reply : -EPROTO;
        *ret_personality = (unsigned) reply;
        return 0;
}
