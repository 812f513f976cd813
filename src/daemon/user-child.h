/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * What must be done with a user's credentials, done by a child process, never by ublkd.
 *
 * ublkd never changes its own credentials: a thread of ublkd with a user's uid could be
 * signalled and prlimit()ed by that user (both go by real uid), which reaches the whole daemon,
 * and any change of the effective ids resets the dumpable flag of ublkd's memory.  So the work
 * is done by ublkd run again (posix_spawn of /proc/self/exe: a fresh image that holds none of
 * ublkd's memory, mappings or other fds) with argv[1] naming it:
 *   USER_CHILD_ADD_DEV      ADD_DEV of a user's device (ctrl.c): real uid and gid the user's,
 *                           effective ids 0, no capability;
 *   USER_CHILD_PERSONALITY  registers the user's credentials on a queue's io_uring as a
 *                           personality (queue.c), so that the target's IO on the backing file
 *                           runs as the user (their fsuid: no root-reserved blocks; no
 *                           capability): every id the user's, no capability.
 * The user may kill the child, or stop it: user_child_run() then kills it and returns
 * -ECANCELED; the caller undoes what the child may have done.
 */

#include <stddef.h>
#include <sys/types.h>

#define USER_CHILD_ADD_DEV     "--add-dev-for-user"
#define USER_CHILD_PERSONALITY "--personality-for-user"

/* How long a child may take before it is killed (ADD_DEV under TCG takes well under this). */
#define USER_CHILD_TIMEOUT_MS 10000

/* Runs "ublkd MODE UID GID ARG" with fds[i] as its fd 3+i, in on its stdin, and reads exactly
 * out_len bytes of its stdout into out.  0, -ECANCELED when it did not answer (logged), or a
 * negative errno when it could not be started. */
int user_child_run(const char *mode, uid_t uid, gid_t gid, const char *arg, const int *fds, size_t n_fds,
                   const void *in, size_t in_len, void *out, size_t out_len);

/* In the child: its stdin, or whatever it must read, in full; -EPIPE at its end. */
int user_child_read(int fd, void *buf, size_t len);

/* main() of a child when argv[1] is one of the modes: its exit status; -1 for any other argv. */
int user_child_main(int argc, char **argv);

/* The personality of uid and gid (with no supplementary group) on ring_fd.  A SINGLE_ISSUER ring
 * takes registrations from its submitter only: create it with IORING_SETUP_R_DISABLED and enable
 * it after this. */
int user_child_register_personality(int ring_fd, uid_t uid, gid_t gid, unsigned *ret_personality);
