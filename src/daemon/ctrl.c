/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "ctrl.h"
#include "log.h"
#include "macro.h"
#include "user-child.h"
#include "uring.h"

#ifdef UBLKD_TSAN
char uring_map_order;    /* uring.h */
#endif

#define UBLK_CONTROL_PATH "/dev/ublk-control"
/* Only ublkd's own driver (src/kernel/module/usercopy.c) has it. */
#define UBLK_SPLICE_PARAM "/sys/module/ublk_drv/parameters/splice"

struct ctrl_op {
        unsigned legacy_op;
        unsigned ioctl_op;
};

#define CTRL_OP(name) ((struct ctrl_op) { UBLK_CMD_##name, UBLK_U_CMD_##name })

#define CTRL_UD_CMD     1
#define CTRL_UD_CANCEL  2
/* How long each attempt at START_DEV may take before it is cancelled and sent again (see
 * ctrl_submit): it normally takes well under a second, even under TCG. */
static const unsigned start_dev_timeouts_sec[] = { 2, 6, 15 };

/* CLOCK_MONOTONIC µs after which a DEL_DEV waiting for its char device gives up; 0: never. */
static _Atomic uint64_t del_dev_deadline_usec;

static uint64_t now_usec(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

void ublk_ctrl_bound_del_dev(unsigned sec)
{
        del_dev_deadline_usec = now_usec() + (uint64_t) sec * 1000000;
}

/* The same for DEL_DEVs of this thread only (ublk_ctrl_del_dev_within()). */
static _Thread_local uint64_t del_dev_call_deadline_usec;

static bool del_dev_deadline_passed(void)
{
        uint64_t deadline = del_dev_deadline_usec, now = now_usec();

        return (deadline != 0 && now >= deadline) ||
               (del_dev_call_deadline_usec != 0 && now >= del_dev_call_deadline_usec);
}

/* Waits for the command's CQE, skipping the cancel's own; -ETIME after timeout_sec (0: no limit). */
static int ctrl_wait(struct io_uring *ring, unsigned timeout_sec, int *res)
{
        struct __kernel_timespec ts = { .tv_sec = timeout_sec };
        struct io_uring_cqe *cqe;
        int r;

        for (;;) {
                r = io_uring_wait_cqe_timeout(ring, &cqe, timeout_sec ? &ts : NULL);
                if (r == -EINTR)
                        continue;
                if (r < 0)
                        return r;
                if (cqe->user_data == CTRL_UD_CMD) {
                        *res = cqe->res;
                        io_uring_cqe_seen(ring, cqe);
                        return 0;
                }
                io_uring_cqe_seen(ring, cqe);
        }
}

/* One attempt: 0 with the command's result in *res, -ETIME if it was cancelled after timeout_sec
 * (0: never), or a negative errno of io_uring itself. */
static int ctrl_submit_once(int fd, unsigned cmd_op, const struct ublksrv_ctrl_cmd *cmd, unsigned timeout_sec,
                            int *res)
{
        struct io_uring ring;
        struct io_uring_sqe *sqe;
        int r;

        r = uring_init(4, &ring, IORING_SETUP_SQE128);
        if (r < 0)
                return r;

        sqe = io_uring_get_sqe(&ring);
        if (!sqe) {
                uring_exit(&ring);
                return -EBUSY;
        }
        /* liburing 2.3 has no io_uring_prep_cmd(): fill the SQE by hand. */
        memset(sqe, 0, 2 * sizeof(*sqe));
        sqe->opcode = IORING_OP_URING_CMD;
        sqe->fd = fd;
        sqe->cmd_op = cmd_op;
        sqe->user_data = CTRL_UD_CMD;
        memcpy(sqe->cmd, cmd, sizeof(*cmd));

        r = io_uring_submit(&ring);
        if (r >= 0 && _IOC_NR(cmd_op) == UBLK_CMD_DEL_DEV)
                /* Looks at the deadline every second: it may be set while this waits. */
                do
                        r = ctrl_wait(&ring, 1, res);
                while (r == -ETIME && !del_dev_deadline_passed());
        else if (r >= 0)
                r = ctrl_wait(&ring, timeout_sec, res);
        if (r == -ETIME) {
                /* Cancelling interrupts a command that waits, and takes back one that never ran. */
                sqe = io_uring_get_sqe(&ring);
                io_uring_prep_cancel64(sqe, CTRL_UD_CMD, 0);
                sqe->user_data = CTRL_UD_CANCEL;
                r = io_uring_submit(&ring);
                if (r >= 0)
                        r = ctrl_wait(&ring, 0, res);
                /* Otherwise it was busy, could not be interrupted, and finished on its own. */
                if (r >= 0 && (*res == -ECANCELED || *res == -EINTR))
                        r = -ETIME;
        }
        uring_exit(&ring);
        return r;
}

/*
 * Sends one control command and returns its result.  START_DEV, rarely (seen on 7.2 under
 * TCG, about once in a hundred starts), goes into the kernel and never comes back, with no
 * thread of ours working on it; cancelling it and sending it again gets it done.  A START_DEV
 * that was cancelled before it ran, or interrupted while it waited for the queues, changed
 * nothing, so it is safe to repeat; one busy adding the disk cannot be interrupted and ends
 * on its own.  Other commands are not repeated: DEL_DEV, for one, is done once interrupted.
 */
static int ctrl_submit(int fd, unsigned cmd_op, const struct ublksrv_ctrl_cmd *cmd)
{
        bool is_start = _IOC_NR(cmd_op) == UBLK_CMD_START_DEV;
        int r, res = 0;

        for (unsigned attempt = 0;; attempt++) {
                r = ctrl_submit_once(fd, cmd_op, cmd, is_start ? start_dev_timeouts_sec[attempt] : 0, &res);
                if (r == -ETIME && !is_start)
                        return -EBUSY;  /* a DEL_DEV past ublk_ctrl_bound_del_dev()'s deadline */
                if (r != -ETIME)
                        return r < 0 ? r : res;
                log_warning("ublk device %u: START_DEV did not complete in %u s and was cancelled (%s); %s",
                            cmd->dev_id, start_dev_timeouts_sec[attempt],
                            res == -ECANCELED ? "it had not started" : "it was waiting for the queues",
                            attempt + 1 < ELEMENTSOF(start_dev_timeouts_sec) ? "sending it again" : "giving up");
                if (attempt + 1 >= ELEMENTSOF(start_dev_timeouts_sec))
                        return -ETIMEDOUT;
        }
}

static bool module_param_is_yes(const char *path)
{
        char c = 0;
        int fd = open(path, O_RDONLY | O_CLOEXEC);

        if (fd < 0)
                return false;
        if (read(fd, &c, 1) != 1)
                c = 0;
        close(fd);
        return c == 'Y';
}

static int ctrl_cmd(const struct ublk_ctrl *ctrl, struct ctrl_op op, struct ublksrv_ctrl_cmd *cmd)
{
        return ctrl_submit(ctrl->fd, ctrl->ioctl_encode ? op.ioctl_op : op.legacy_op, cmd);
}

int ublk_ctrl_open(struct ublk_ctrl *ctrl)
{
        struct ublksrv_ctrl_cmd cmd = { .dev_id = (uint32_t) -1, .queue_id = (uint16_t) -1 };
        uint64_t features = 0;
        int r;

        *ctrl = (struct ublk_ctrl) { .fd = -1 };
        ctrl->fd = open(UBLK_CONTROL_PATH, O_RDWR | O_CLOEXEC);
        if (ctrl->fd < 0)
                return negative_errno();

        /* Kernels before 6.5 reject this opcode: they only speak the legacy set. */
        cmd.addr = (uintptr_t) &features;
        cmd.len = sizeof(features);
        r = ctrl_submit(ctrl->fd, UBLK_U_CMD_GET_FEATURES, &cmd);
        if (r >= 0) {
                ctrl->features = features;
                ctrl->ioctl_encode = !!(features & UBLK_F_CMD_IOCTL_ENCODE);
        }
        ctrl->splice = (features & UBLK_F_USER_COPY) && module_param_is_yes(UBLK_SPLICE_PARAM);
        return 0;
}

void ublk_ctrl_close(struct ublk_ctrl *ctrl)
{
        ctrl->fd = safe_close(ctrl->fd);
}

int ublk_ctrl_add_dev(const struct ublk_ctrl *ctrl, struct ublksrv_ctrl_dev_info *info)
{
        struct ublksrv_ctrl_cmd cmd = {
                .dev_id = info->dev_id,
                .queue_id = (uint16_t) -1,
                .addr = (uintptr_t) info,
                .len = sizeof(*info),
        };

        return ctrl_cmd(ctrl, CTRL_OP(ADD_DEV), &cmd);
}

/* A user's device: ADD_DEV from a child process (user-child.h) whose real uid and gid are the
 * user's and which has no capability, so that the kernel makes the device unprivileged and the
 * user's (it takes the owner from the sender's real ids, and drops UBLK_F_UNPRIVILEGED_DEV for a
 * sender with CAP_SYS_ADMIN).  It gets the control fd as fd 3 and the device info on stdin, and
 * writes back ADD_DEV's result and the info as the kernel filled it in. */
struct add_dev_reply {
        int32_t r;
        struct ublksrv_ctrl_dev_info info;
};

int ublk_ctrl_add_dev_child(const char *ioctl_encode)
{
        struct ublk_ctrl ctrl = { .fd = 3, .ioctl_encode = strcmp(ioctl_encode, "1") == 0 };
        struct add_dev_reply reply = {};

        reply.r = user_child_read(STDIN_FILENO, &reply.info, sizeof(reply.info));
        if (reply.r >= 0) {
                reply.info.flags |= UBLK_F_UNPRIVILEGED_DEV;
                reply.r = ublk_ctrl_add_dev(&ctrl, &reply.info);
        }
        return write(STDOUT_FILENO, &reply, sizeof(reply)) == (ssize_t) sizeof(reply) ? 0 : 1;
}

int ublk_ctrl_add_dev_as(const struct ublk_ctrl *ctrl, struct ublksrv_ctrl_dev_info *info, uid_t uid, gid_t gid)
{
        struct ublksrv_ctrl_dev_info now;
        struct add_dev_reply reply;
        int r;

        if (uid == 0)
                return -EINVAL;         /* a root-owned device is a privileged one */
        r = user_child_run(USER_CHILD_ADD_DEV, uid, gid, ctrl->ioctl_encode ? "1" : "0", &ctrl->fd, 1,
                           info, sizeof(*info), &reply, sizeof(reply));
        if (r >= 0) {
                if (reply.r >= 0)
                        *info = reply.info;
                return reply.r;
        }
        /* Its user may have killed it after it added the device: a device of that user under the
         * id ublkd holds, with ublkd's mark, is that one. */
        if (r == -ECANCELED && ublk_ctrl_get_dev_info2(ctrl, info->dev_id, &now) >= 0 && now.owner_uid == uid &&
            (now.flags & UBLK_F_UNPRIVILEGED_DEV) && now.ublksrv_flags == info->ublksrv_flags)
                (void) ublk_ctrl_del_dev(ctrl, info->dev_id, true);
        return r;
}

/*
 * A command on one device.  Those on an unprivileged device carry the path of its char device
 * first in the buffer, before the command's own data: the kernel checks the sender's access to
 * that file.  GET_DEV_INFO2 carries it for every device.
 */
static int ctrl_dev_cmd(const struct ublk_ctrl *ctrl, struct ctrl_op op, uint32_t dev_id, bool with_path,
                        void *data, uint32_t len, uint64_t data0)
{
        struct ublksrv_ctrl_cmd cmd = {
                .dev_id = dev_id,
                .queue_id = (uint16_t) -1,
                .addr = (uintptr_t) data,
                .len = len,
        };
        _cleanup_free_ char *buf = NULL;
        char path[32];
        int n, r;

        cmd.data[0] = data0;
        if (!with_path)
                return ctrl_cmd(ctrl, op, &cmd);

        n = snprintf(path, sizeof(path), "/dev/ublkc%u", dev_id);
        buf = malloc((size_t) n + len);
        if (!buf)
                return -ENOMEM;
        memcpy(buf, path, (size_t) n);
        if (len)
                memcpy(buf + n, data, len);
        cmd.dev_path_len = (uint16_t) n;
        cmd.addr = (uintptr_t) buf;
        cmd.len = (uint32_t) n + len;
        r = ctrl_cmd(ctrl, op, &cmd);
        if (r >= 0 && len)
                memcpy(data, buf + n, len);
        return r;
}

int ublk_ctrl_del_dev(const struct ublk_ctrl *ctrl, uint32_t dev_id, bool unprivileged)
{
        char path[64];
        int r;

        r = ctrl_dev_cmd(ctrl, CTRL_OP(DEL_DEV), dev_id, unprivileged, NULL, 0, 0);
        if (r != -EBUSY)
                return r;
        /* Interrupted: both drivers take the char device out of sysfs once the device is
         * deleted, before they wait for it to be closed; ours may have been interrupted
         * earlier, stopping the disk, and then nothing changed. */
        snprintf(path, sizeof(path), "/sys/class/ublk-char/ublkc%u", dev_id);
        return access(path, F_OK) < 0 && errno == ENOENT ? -EBUSY : -ETIMEDOUT;
}

int ublk_ctrl_del_dev_within(const struct ublk_ctrl *ctrl, uint32_t dev_id, bool unprivileged, unsigned sec)
{
        int r;

        del_dev_call_deadline_usec = now_usec() + (uint64_t) sec * 1000000;
        r = ublk_ctrl_del_dev(ctrl, dev_id, unprivileged);
        del_dev_call_deadline_usec = 0;
        return r;
}

int ublk_ctrl_start_dev(const struct ublk_ctrl *ctrl, uint32_t dev_id, bool unprivileged, pid_t server_pid)
{
        return ctrl_dev_cmd(ctrl, CTRL_OP(START_DEV), dev_id, unprivileged, NULL, 0, (uint64_t) server_pid);
}

int ublk_ctrl_stop_dev(const struct ublk_ctrl *ctrl, uint32_t dev_id, bool unprivileged)
{
        return ctrl_dev_cmd(ctrl, CTRL_OP(STOP_DEV), dev_id, unprivileged, NULL, 0, 0);
}

int ublk_ctrl_update_size(const struct ublk_ctrl *ctrl, uint32_t dev_id, bool unprivileged, uint64_t sectors)
{
        /* No legacy opcode: a kernel with the feature has the ioctl-encoded ones. */
        struct ctrl_op op = { 0x15, UBLK_U_CMD_UPDATE_SIZE };

        if (!(ctrl->features & UBLK_F_UPDATE_SIZE))
                return -EOPNOTSUPP;
        return ctrl_dev_cmd(ctrl, op, dev_id, unprivileged, NULL, 0, sectors);
}

int ublk_ctrl_start_user_recovery(const struct ublk_ctrl *ctrl, uint32_t dev_id, bool unprivileged)
{
        return ctrl_dev_cmd(ctrl, CTRL_OP(START_USER_RECOVERY), dev_id, unprivileged, NULL, 0, 0);
}

int ublk_ctrl_end_user_recovery(const struct ublk_ctrl *ctrl, uint32_t dev_id, bool unprivileged, pid_t server_pid)
{
        return ctrl_dev_cmd(ctrl, CTRL_OP(END_USER_RECOVERY), dev_id, unprivileged, NULL, 0, (uint64_t) server_pid);
}

int ublk_ctrl_set_params(const struct ublk_ctrl *ctrl, uint32_t dev_id, bool unprivileged,
                         struct ublk_params *params)
{
        params->len = sizeof(*params);
        return ctrl_dev_cmd(ctrl, CTRL_OP(SET_PARAMS), dev_id, unprivileged, params, sizeof(*params), 0);
}

int ublk_ctrl_get_params(const struct ublk_ctrl *ctrl, uint32_t dev_id, bool unprivileged,
                         struct ublk_params *params)
{
        memset(params, 0, sizeof(*params));
        params->len = sizeof(*params);
        return ctrl_dev_cmd(ctrl, CTRL_OP(GET_PARAMS), dev_id, unprivileged, params, sizeof(*params), 0);
}

int ublk_ctrl_get_dev_info(const struct ublk_ctrl *ctrl, uint32_t dev_id, bool unprivileged,
                           struct ublksrv_ctrl_dev_info *info)
{
        return ctrl_dev_cmd(ctrl, CTRL_OP(GET_DEV_INFO), dev_id, unprivileged, info, sizeof(*info), 0);
}

int ublk_ctrl_get_dev_info2(const struct ublk_ctrl *ctrl, uint32_t dev_id, struct ublksrv_ctrl_dev_info *info)
{
        return ctrl_dev_cmd(ctrl, CTRL_OP(GET_DEV_INFO2), dev_id, true, info, sizeof(*info), 0);
}

const char *ublk_dev_state_to_string(int state)
{
        switch (state) {
        case UBLK_S_DEV_DEAD:
                return "dead";
        case UBLK_S_DEV_LIVE:
                return "live";
        case UBLK_S_DEV_QUIESCED:
                return "quiesced";
#ifdef UBLK_S_DEV_FAIL_IO
        case UBLK_S_DEV_FAIL_IO:
                return "fail-io";
#endif
        default:
                return "unknown";
        }
}
