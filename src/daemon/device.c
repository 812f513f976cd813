/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "device.h"
#include "devinfo.h"
#include "ids.h"
#include "log.h"
#include "macro.h"
#include "queue.h"

#define UDEV_WAIT_MS 10000
/* A removal's wait for /dev/ublkcN to be closed by someone other than ublkd (ublkd closed its
 * own): long enough for a dying server's rings to let go, short of ublkctl's bus timeout. */
#define REMOVE_DEL_DEV_SEC 10

unsigned ublk_test_start_delay_ms;
unsigned ublk_test_fetch_delay_ms;

void ublk_dev_config_init(struct ublk_dev_config *config)
{
        *config = (struct ublk_dev_config) {
                .queues = 1,
                .depth = UBLK_DEV_DEFAULT_DEPTH,
        };
}

/* The kernel caps a device's queues at nr_cpu_ids: the highest possible CPU + 1. */
static unsigned max_queues(void)
{
        unsigned long cpus = 0;
        char buf[256], *p;
        FILE *f;

        f = fopen("/sys/devices/system/cpu/possible", "re");
        if (f) {
                if (fgets(buf, sizeof(buf), f)) {
                        /* "0-3" or "0,2-5": the last number is the highest CPU. */
                        p = buf + strcspn(buf, "\n");
                        while (p > buf && (p[-1] >= '0' && p[-1] <= '9'))
                                p--;
                        cpus = strtoul(p, NULL, 10) + 1;
                }
                fclose(f);
        }
        if (cpus == 0) {
                long n = sysconf(_SC_NPROCESSORS_CONF);
                cpus = n > 0 ? (unsigned long) n : 1;
        }
        return cpus < UBLK_MAX_NR_QUEUES ? (unsigned) cpus : UBLK_MAX_NR_QUEUES;
}

int ublk_dev_config_validate(const struct ublk_dev_config *config, const char **reason)
{
        static char msg[160];
        uint32_t lbs = config->logical_block_size;

        if (config->queues < 1 || config->queues > max_queues()) {
                snprintf(msg, sizeof(msg), "queues must be between 1 and %u (the number of CPUs)", max_queues());
                *reason = msg;
                return -EINVAL;
        }
        if (config->depth < 1 || config->depth > UBLK_MAX_QUEUE_DEPTH) {
                snprintf(msg, sizeof(msg), "depth must be between 1 and %u", UBLK_MAX_QUEUE_DEPTH);
                *reason = msg;
                return -EINVAL;
        }
        if (lbs != 0 && (lbs < 512 || lbs > 4096 || (lbs & (lbs - 1)))) {
                *reason = "logical-block-size must be 512, 1024, 2048 or 4096";
                return -EINVAL;
        }
        if (lbs != 0 && config->size % lbs) {
                snprintf(msg, sizeof(msg), "size must be a multiple of the logical block size (%u)", lbs);
                *reason = msg;
                return -EINVAL;
        }
        /* The kernel counts sectors in 64 bits; keep well clear of overflow. */
        if (config->size > (UINT64_C(1) << 60)) {
                *reason = "size is larger than 1 EiB";
                return -EINVAL;
        }
        return 0;
}

static unsigned ilog2_u32(uint32_t v)
{
        unsigned r = 0;

        while (v >>= 1)
                r++;
        return r;
}

void ublk_params_set_basic(const struct ublk_dev *dev, struct ublk_params *params)
{
        unsigned lbs_shift = ilog2_u32(dev->config.logical_block_size);

        params->types |= UBLK_PARAM_TYPE_BASIC;
        params->basic = (struct ublk_param_basic) {
                .attrs = dev->config.read_only ? UBLK_ATTR_READ_ONLY : 0,
                .logical_bs_shift = (uint8_t) lbs_shift,
                .physical_bs_shift = (uint8_t) (lbs_shift > 12 ? lbs_shift : 12),
                .io_opt_shift = 12,
                .io_min_shift = (uint8_t) lbs_shift,
                .max_sectors = dev->info.max_io_buf_bytes >> 9,
                .dev_sectors = dev->config.size >> 9,
        };
}

static int count_open_fds(unsigned *ret)
{
        DIR *d = opendir("/proc/self/fd");
        unsigned n = 0;

        if (!d)
                return negative_errno();
        while (readdir(d))
                n++;
        closedir(d);
        *ret = n > 3 ? n - 3 : 0;       /* ".", ".." and the directory's own descriptor */
        return 0;
}

/*
 * Splice mode keeps a pipe, two descriptors, per tag for as long as the device lives: a device
 * whose pipes do not fit under ublkd's RLIMIT_NOFILE is refused here with the numbers, rather
 * than failing halfway through its queues with "Too many open files".
 */
static int dev_check_splice_fds(const struct ublk_dev *dev, struct ublk_reason *reason)
{
        /* Besides the pipes: the char device, the backing file, a ring per queue, some slack. */
        uint64_t need = 2ULL * dev->config.queues * dev->config.depth + dev->config.queues + 16;
        struct rlimit rl;
        unsigned open_fds;
        int r;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                return negative_errno();
        if (rl.rlim_cur == RLIM_INFINITY)
                return 0;
        r = count_open_fds(&open_fds);
        if (r < 0)
                return r;
        if (open_fds + need <= rl.rlim_cur)
                return 0;
        snprintf(reason->text, sizeof(reason->text),
                 "zero-copy=on (splice mode) keeps a pipe per tag: %u queues of depth %u need %llu file "
                 "descriptors, and ublkd has %llu of its limit of %llu left: lower the depth or the queues, "
                 "or raise LimitNOFILE= of ublkd.service",
                 dev->config.queues, dev->config.depth, (unsigned long long) need,
                 (unsigned long long) (rl.rlim_cur > open_fds ? rl.rlim_cur - open_fds : 0),
                 (unsigned long long) rl.rlim_cur);
        return -EMFILE;
}

/* Asks the kernel for automatic buffer registration when the device wants and can use it, and
 * for USER_COPY for a target that touches no data. */
static int dev_choose_zero_copy(struct ublk_dev *dev, struct ublk_reason *reason)
{
        const struct ublk_target_ops *ops = dev->config.target;

        /* The kernel lends no pages to the server of an unprivileged device. */
        if (dev->unprivileged) {
                if (dev->config.zero_copy != UBLK_ZERO_COPY_ON)
                        return 0;
                snprintf(reason->text, sizeof(reason->text),
                         "zero-copy=on is not available for devices of users other than root");
                return -EOPNOTSUPP;
        }
        /* Without it the driver would copy each request to or from a buffer nobody looks at:
         * 1.6k instructions of a null read's 13.6k on 6.12 (bench/RESULTS.md, 2026-12-07). */
        if (ops->no_data && dev->config.zero_copy == UBLK_ZERO_COPY_AUTO &&
            (dev->ctrl->features & UBLK_F_USER_COPY)) {
                dev->info.flags |= UBLK_F_USER_COPY;
                return 0;
        }
        if (dev->config.zero_copy != UBLK_ZERO_COPY_OFF && ops->zero_copy &&
            (dev->ctrl->features & UBLK_F_AUTO_BUF_REG)) {
                dev->info.flags |= UBLK_F_AUTO_BUF_REG;
                return 0;
        }
        if (dev->config.zero_copy != UBLK_ZERO_COPY_ON)
                return 0;
        if (ops->splice && dev->ctrl->splice) {
                dev->info.flags |= UBLK_F_USER_COPY;
                return dev_check_splice_fds(dev, reason);
        }
        if (ops->zero_copy)
                snprintf(reason->text, sizeof(reason->text),
                         "zero-copy=on needs a kernel with UBLK_F_AUTO_BUF_REG (Linux 6.16 or later) "
                         "or ublkd's own ublk driver (splice)");
        else
                snprintf(reason->text, sizeof(reason->text), "Target '%s' has no zero-copy mode", ops->name);
        return -EOPNOTSUPP;
}

const char *ublk_recovery_to_string(uint64_t flags)
{
        if (!(flags & UBLK_F_USER_RECOVERY))
                return "none";
        if (flags & UBLK_F_USER_RECOVERY_FAIL_IO)
                return "fail-io";
        if (flags & UBLK_F_USER_RECOVERY_REISSUE)
                return "reissue";
        return "requeue";       /* not one ublkd creates: a device left by another server */
}

/* Sets the recovery flags ADD_DEV asks for. */
static int dev_choose_recovery(struct ublk_dev *dev, struct ublk_reason *reason)
{
        uint64_t features = dev->ctrl->features;

        switch (dev->config.recovery) {
        case UBLK_RECOVERY_DEFAULT:
                /* The kernel does not let an unprivileged device be recovered. */
                if (!dev->unprivileged && (features & UBLK_F_USER_RECOVERY_REISSUE))
                        dev->info.flags |= UBLK_F_USER_RECOVERY | UBLK_F_USER_RECOVERY_REISSUE;
                return 0;
        case UBLK_RECOVERY_NONE:
                return 0;
        case UBLK_RECOVERY_REISSUE:
        case UBLK_RECOVERY_FAIL_IO:
                break;
        }
        if (dev->unprivileged) {
                snprintf(reason->text, sizeof(reason->text),
                         "recovery=%s is not available for devices of users other than root (the kernel "
                         "does not recover them): use recovery=none",
                         dev->config.recovery == UBLK_RECOVERY_REISSUE ? "reissue" : "fail-io");
                return -EOPNOTSUPP;
        }
        if (dev->config.recovery == UBLK_RECOVERY_REISSUE) {
                if (!(features & UBLK_F_USER_RECOVERY_REISSUE)) {
                        snprintf(reason->text, sizeof(reason->text),
                                 "recovery=reissue needs a kernel with UBLK_F_USER_RECOVERY_REISSUE (Linux 6.0 or later)");
                        return -EOPNOTSUPP;
                }
                dev->info.flags |= UBLK_F_USER_RECOVERY | UBLK_F_USER_RECOVERY_REISSUE;
                return 0;
        }
        if (!(features & UBLK_F_USER_RECOVERY_FAIL_IO)) {
                snprintf(reason->text, sizeof(reason->text),
                         "recovery=fail-io needs a kernel with UBLK_F_USER_RECOVERY_FAIL_IO (Linux 6.13 or later): "
                         "use recovery=reissue or none");
                return -EOPNOTSUPP;
        }
        dev->info.flags |= UBLK_F_USER_RECOVERY | UBLK_F_USER_RECOVERY_FAIL_IO;
        return 0;
}

/* The kernel says only EINVAL: name the command and what was in it, for the caller to compare
 * with what the driver takes (its log may say more). */
static void dev_explain_refusal(const struct ublk_dev *dev, struct ublk_reason *reason)
{
        const struct ublk_param_basic *b = &dev->params.basic;

        if (strcmp(dev->refused_by, "ADD_DEV") == 0)
                snprintf(reason->text, sizeof(reason->text),
                         "The kernel's ublk driver refused ADD_DEV (EINVAL) of: queues=%u depth=%u max IO %u bytes "
                         "flags=%#llx; its log (dmesg) may say which",
                         dev->add_info.nr_hw_queues, dev->add_info.queue_depth, dev->add_info.max_io_buf_bytes,
                         (unsigned long long) dev->add_info.flags);
        else
                snprintf(reason->text, sizeof(reason->text),
                         "The kernel's ublk driver refused SET_PARAMS (EINVAL) of: size=%llu bytes "
                         "block-size=%u physical block %u, at most %u sectors per IO%s; its log (dmesg) may say which",
                         (unsigned long long) b->dev_sectors << 9, 1u << b->logical_bs_shift,
                         1u << b->physical_bs_shift, b->max_sectors,
                         dev->params.types & UBLK_PARAM_TYPE_DISCARD ? ", discard" : "");
}

/* ADD_DEV with dev->id, then SET_PARAMS. */
static int dev_kernel_add(struct ublk_dev *dev)
{
        int r;

        dev->info = dev->add_info;
        dev->info.dev_id = dev->id;
        if (dev->unprivileged)
                r = ublk_ctrl_add_dev_as(dev->ctrl, &dev->info, dev->config.owner_uid, dev->config.owner_gid);
        else
                r = ublk_ctrl_add_dev(dev->ctrl, &dev->info);
        if (r < 0) {
                dev->refused_by = "ADD_DEV";
                return log_debug_errno(r, "ADD_DEV of ublk device %u failed: %m", dev->id);
        }
        if (dev->info.nr_hw_queues != dev->config.queues) {
                log_notice("ublk device %u: the kernel granted %u queues of %u asked for.",
                           dev->id, dev->info.nr_hw_queues, dev->config.queues);
                dev->config.queues = dev->info.nr_hw_queues;
                dev->add_info.nr_hw_queues = dev->info.nr_hw_queues;
        }

        r = ublk_ctrl_set_params(dev->ctrl, dev->id, dev->unprivileged, &dev->params);
        if (r < 0) {
                dev->refused_by = "SET_PARAMS";
                log_debug_errno(r, "SET_PARAMS for ublk device %u failed: %m", dev->id);
                (void) ublk_ctrl_del_dev(dev->ctrl, dev->id, dev->unprivileged);
                return r;
        }
        dev->in_kernel = true;
        return 0;
}

/* For good (a removal): the wait for /dev/ublkcN to be closed is bounded by
 * REMOVE_DEL_DEV_SEC; for a renewal under the same id, it is not. */
static int dev_kernel_del(struct ublk_dev *dev, bool for_good)
{
        int r;

        if (!dev->in_kernel)
                return 0;
        if (for_good)
                r = ublk_ctrl_del_dev_within(dev->ctrl, dev->id, dev->unprivileged, REMOVE_DEL_DEV_SEC);
        else
                r = ublk_ctrl_del_dev(dev->ctrl, dev->id, dev->unprivileged);
        if (r == -EBUSY) {
                /* The device is gone all the same (ublk_ctrl_del_dev()). */
                log_warning("ublk device %u: /dev/ublkc%u is still open elsewhere (fuser -v /dev/ublkc%u "
                            "names who holds it); the device is removed, its id stays taken until that closes.",
                            dev->id, dev->id, dev->id);
                dev->in_kernel = false;
                return 0;
        }
        if (r < 0)
                return r;
        dev->in_kernel = false;
        return 0;
}

/* The kernel starts a device only once: replace it with a fresh one under the same id. */
static void dev_kernel_renew(struct ublk_dev *dev)
{
        int r;

        r = dev_kernel_del(dev, false);
        if (r < 0) {
                log_warning_errno(r, "Failed to delete ublk device %u from the kernel: %m", dev->id);
                return;
        }
        r = dev_kernel_add(dev);
        if (r < 0)
                log_warning_errno(r, "Failed to add ublk device %u to the kernel again (the next start "
                                  "tries again): %m", dev->id);
}

/* ADD_DEV under the lowest id ublkd does not hold (ids.h) that the kernel has free; the device
 * holds the id from now on, until ublk_dev_free(). */
static int dev_kernel_add_any_id(struct ublk_dev *dev)
{
        uint32_t from = 0;
        int r;

        for (;;) {
                r = ids_hold_lowest(from, &dev->id);
                if (r < 0)
                        return r;
                r = dev_kernel_add(dev);
                if (r >= 0)
                        return 0;
                ids_release(dev->id);
                if (r != -EEXIST)
                        return r;
                /* Another program's device. */
                from = dev->id + 1;
        }
}

/* A device of config, which gives its target's configuration (and its fds) to it. */
static struct ublk_dev *dev_new(const struct ublk_ctrl *ctrl, struct ublk_dev_config *config)
{
        struct ublk_dev *dev = calloc(1, sizeof(*dev));

        if (!dev)
                return NULL;
        dev->ctrl = ctrl;
        dev->config = *config;
        config->target_config = NULL;
        dev->cdev_fd = -1;
        dev->unprivileged = dev->config.owner_uid != 0;
        return dev;
}

int ublk_dev_add(const struct ublk_ctrl *ctrl, struct ublk_dev_config *config, struct ublk_reason *reason,
                 struct ublk_dev **ret)
{
        const struct ublk_target_ops *ops = config->target;
        struct ublk_dev *dev;
        int r;

        dev = dev_new(ctrl, config);
        if (!dev)
                return -ENOMEM;
        dev->add_info = (struct ublksrv_ctrl_dev_info) {
                .nr_hw_queues = (uint16_t) dev->config.queues,
                .queue_depth = (uint16_t) dev->config.depth,
                .max_io_buf_bytes = UBLK_DEV_MAX_IO_BYTES,
                .ublksrv_pid = getpid(),
                .flags = ctrl->ioctl_encode ? UBLK_F_CMD_IOCTL_ENCODE : 0,
                .ublksrv_flags = UBLKD_SERVER_MARK,
        };
        /* ublk_params_set_basic() reads it before ADD_DEV. */
        dev->info = dev->add_info;

        if (dev->unprivileged && !(ctrl->features & UBLK_F_UNPRIVILEGED_DEV)) {
                snprintf(reason->text, sizeof(reason->text),
                         "This kernel's ublk driver has no devices for users other than root "
                         "(UBLK_F_UNPRIVILEGED_DEV, Linux 6.5 or later): ask root to add it");
                r = -EOPNOTSUPP;
        } else
                r = dev_choose_zero_copy(dev, reason);
        if (r >= 0)
                r = dev_choose_recovery(dev, reason);
        if (r >= 0) {
                dev->add_info.flags = dev->info.flags;
                r = ops->init(dev, &dev->params, reason);
                /* init() may have lowered the queues (nbd: a server without multi-conn). */
                dev->add_info.nr_hw_queues = dev->info.nr_hw_queues = (uint16_t) dev->config.queues;
        }
        if (r >= 0 && dev->config.size % dev->config.logical_block_size) {
                snprintf(reason->text, sizeof(reason->text),
                         "size must be a multiple of the logical block size (%u)", dev->config.logical_block_size);
                r = -EINVAL;
        }
        if (r < 0) {
                ublk_dev_config_clear(&dev->config);
                free(dev);
                return r;
        }
        dev->zero_copy = !!(dev->add_info.flags & UBLK_F_AUTO_BUF_REG);
        dev->splice = !!(dev->add_info.flags & UBLK_F_USER_COPY);

        r = dev_kernel_add_any_id(dev);
        if (r == -EINVAL && dev->refused_by)
                dev_explain_refusal(dev, reason);
        if (r < 0) {
                if (ops->deinit)
                        ops->deinit(dev);
                ublk_dev_config_clear(&dev->config);
                free(dev);
                return r;
        }

        *ret = dev;
        return 0;
}

static void dev_join_queues(struct ublk_dev *dev)
{
        if (!dev->queues)
                return;
        for (unsigned i = 0; i < dev->config.queues; i++)
                queue_join(&dev->queues[i]);
        free(dev->queues);
        dev->queues = NULL;
}

/* Queue threads on a device in the kernel, then START_DEV, or END_USER_RECOVERY when recovering. */
static int dev_serve(struct ublk_dev *dev, bool recovering)
{
        uint64_t started_usec;
        char path[64];
        int r;

        snprintf(path, sizeof(path), "/dev/ublkc%u", dev->id);
        dev->cdev_fd = open(path, O_RDWR | O_CLOEXEC);
        if (dev->cdev_fd < 0)
                return log_debug_errno(negative_errno(), "Failed to open %s: %m", path);

        dev->queues = calloc(dev->config.queues, sizeof(*dev->queues));
        if (!dev->queues)
                return -ENOMEM;
        for (unsigned i = 0; i < dev->config.queues; i++) {
                dev->queues[i].dev = dev;
                dev->queues[i].q_id = i;
                r = queue_start(&dev->queues[i]);
                if (r < 0)
                        return log_debug_errno(r, "Failed to start queue %u of ublk device %u: %m", i, dev->id);
        }

        /* Before START_DEV: udev reads it when the block device appears. */
        r = devinfo_write(dev->id, dev->config.name, dev->config.target->name, dev->unprivileged);
        if (r < 0)
                log_warning_errno(r, "Failed to write %s/ublkb%u, udev gets no name for it: %m", DEVINFO_DIR, dev->id);

        if (recovering) {
                r = ublk_ctrl_end_user_recovery(dev->ctrl, dev->id, dev->unprivileged, getpid());
                if (r < 0)
                        return log_debug_errno(r, "END_USER_RECOVERY for ublk device %u failed: %m", dev->id);
                dev->live = true;
                dev->quiesced = false;
                return 0;       /* the block device stayed: udev has nothing to do */
        }

        if (ublk_test_start_delay_ms)
                (void) usleep(ublk_test_start_delay_ms * 1000);
        started_usec = devinfo_now_usec();
        r = ublk_ctrl_start_dev(dev->ctrl, dev->id, dev->unprivileged, getpid());
        if (r < 0) {
                log_debug_errno(r, "START_DEV for ublk device %u failed: %m", dev->id);
                devinfo_remove(dev->id);
                return r;
        }
        dev->live = true;

        /* Whoever asked for the device finds it as udev leaves it: symlinks, and a user's
         * ownership of the block device (the char device stays root's: ublkd is the server). */
        snprintf(path, sizeof(path), "ublkb%u", dev->id);
        r = devinfo_wait_udev("block", path, started_usec, UDEV_WAIT_MS);
        if (r < 0)
                log_warning_errno(r, "udev has not handled %s after %u ms; going on without it: %m",
                                  path, UDEV_WAIT_MS);
        return 0;
}

/* After a failed dev_serve(): the queues end, and the next start gets a fresh kernel device. */
static void dev_serve_failed(struct ublk_dev *dev)
{
        /* STOP_DEV aborts the tags the queues fetched, so their threads end. */
        (void) ublk_ctrl_stop_dev(dev->ctrl, dev->id, dev->unprivileged);
        dev_join_queues(dev);
        dev->cdev_fd = safe_close(dev->cdev_fd);
        dev->live = false;
        dev->quiesced = false;
        if (dev->in_kernel)
                dev_kernel_renew(dev);
}

int ublk_dev_start(struct ublk_dev *dev)
{
        int r;

        if (dev->live)
                return -EALREADY;
        if (dev->quiesced)
                return -EBUSY;
        if (!dev->in_kernel) {
                r = dev_kernel_add(dev);
                if (r < 0)
                        return r;
        }
        r = dev_serve(dev, false);
        if (r < 0)
                /* Whether it got to START_DEV or not, the next start needs a fresh kernel device. */
                dev_serve_failed(dev);
        return r;
}

/* The kernel refuses START_USER_RECOVERY with EBUSY until the old server's char device is
 * released and its queues are quiesced: moments after it died, not a state to wait on. */
#define RECOVER_POLL_US 20000

int ublk_dev_recover(struct ublk_dev *dev, unsigned timeout_ms)
{
        uint64_t deadline = devinfo_now_usec() + (uint64_t) timeout_ms * 1000;
        int r;

        if (dev->live)
                return -EALREADY;
        if (!dev->quiesced)
                return -EINVAL;
        for (;;) {
                r = ublk_ctrl_start_user_recovery(dev->ctrl, dev->id, dev->unprivileged);
                if (r != -EBUSY || devinfo_now_usec() >= deadline)
                        break;
                (void) usleep(RECOVER_POLL_US);
        }
        if (r < 0)
                return log_debug_errno(r, "START_USER_RECOVERY for ublk device %u failed: %m", dev->id);
        r = dev_serve(dev, true);
        if (r < 0) {
                /* Its IO cannot wait for a server that failed to come: fail it, keep the device. */
                log_warning_errno(r, "Recovering ublk device %u failed, stopping it (its IO fails): %m", dev->id);
                dev_serve_failed(dev);
        }
        return r;
}

int ublk_dev_adopt(const struct ublk_ctrl *ctrl, struct ublk_dev_config *config, uint32_t id,
                   struct ublk_reason *reason, struct ublk_dev **ret)
{
        const struct ublk_target_ops *ops = config->target;
        struct ublk_dev *dev;
        int r;

        dev = dev_new(ctrl, config);
        if (!dev)
                return -ENOMEM;
        dev->id = id;

        r = ublk_ctrl_get_dev_info(ctrl, id, dev->unprivileged, &dev->info);
        if (r >= 0 && (dev->info.nr_hw_queues != dev->config.queues ||
                       dev->info.queue_depth != dev->config.depth ||
                       !!(dev->info.flags & UBLK_F_UNPRIVILEGED_DEV) != dev->unprivileged)) {
                snprintf(reason->text, sizeof(reason->text),
                         "the kernel's device %u has %u queues of depth %u, not the %u of %u ublkd saved",
                         id, dev->info.nr_hw_queues, dev->info.queue_depth, dev->config.queues, dev->config.depth);
                r = -ESTALE;
        }
        if (r >= 0 && dev->info.ublksrv_flags != UBLKD_SERVER_MARK) {
                snprintf(reason->text, sizeof(reason->text),
                         "the kernel's device %u is not ublkd's (another program added it under that id)", id);
                r = -ESTALE;
        }
        if (r >= 0) {
                dev->add_info = (struct ublksrv_ctrl_dev_info) {
                        .nr_hw_queues = dev->info.nr_hw_queues,
                        .queue_depth = dev->info.queue_depth,
                        .max_io_buf_bytes = dev->info.max_io_buf_bytes,
                        .ublksrv_pid = getpid(),
                        .flags = dev->info.flags & ~(uint64_t) UBLK_F_UNPRIVILEGED_DEV,
                        .ublksrv_flags = UBLKD_SERVER_MARK,
                };
                dev->zero_copy = !!(dev->info.flags & UBLK_F_AUTO_BUF_REG);
                dev->splice = !!(dev->info.flags & UBLK_F_USER_COPY);
                dev->adopting = true;
                r = ops->init(dev, &dev->params, reason);
                dev->adopting = false;
        }
        if (r < 0) {
                ublk_dev_config_clear(&dev->config);
                free(dev);
                return r;
        }
        dev->in_kernel = true;

        switch (dev->info.state) {
        case UBLK_S_DEV_QUIESCED:
        case UBLK_S_DEV_FAIL_IO:
                dev->quiesced = true;
                break;
        case UBLK_S_DEV_LIVE:
                /* Its server is gone (ublkd serves no device yet), but the kernel has not
                 * noticed: recovery waits for that. */
                dev->quiesced = !!(dev->info.flags & UBLK_F_USER_RECOVERY);
                if (!dev->quiesced)
                        dev_kernel_renew(dev);
                break;
        default:
                /* Stopped, by us or by the kernel when its server went: it may have been
                 * started, and the kernel starts a device only once. */
                dev_kernel_renew(dev);
                break;
        }
        *ret = dev;
        return 0;
}

/* STOP_DEV, and the queue threads end once the kernel has aborted their tags. */
static int dev_stop_queues(struct ublk_dev *dev)
{
        int r;

        if (!dev->live)
                return 0;
        if (dev->config.target->stopping)
                dev->config.target->stopping(dev);
        r = ublk_ctrl_stop_dev(dev->ctrl, dev->id, dev->unprivileged);
        if (r < 0)
                return r;
        devinfo_remove(dev->id);
        dev_join_queues(dev);
        /* DEL_DEV waits until the char device is released: close it first. */
        dev->cdev_fd = safe_close(dev->cdev_fd);
        dev->live = false;
        return 0;
}

int ublk_dev_stop(struct ublk_dev *dev)
{
        int r;

        if (!dev->live)
                return 0;
        r = dev_stop_queues(dev);
        if (r < 0)
                return r;
        dev_kernel_renew(dev);
        return 0;
}

int ublk_dev_remove(struct ublk_dev *dev)
{
        int r;

        r = dev_stop_queues(dev);
        if (r < 0)
                return r;
        return dev_kernel_del(dev, true);
}

void ublk_dev_release(struct ublk_dev *dev)
{
        if (dev->released)
                return;
        if (dev->config.target->deinit)
                dev->config.target->deinit(dev);
        /* Its fds only: the event loop may still read the configuration. */
        if (dev->config.target_config && dev->config.target->config_release)
                dev->config.target->config_release(dev->config.target_config);
        dev->released = true;
}

void ublk_dev_free(struct ublk_dev *dev)
{
        int r;

        if (!dev)
                return;
        r = ublk_dev_remove(dev);
        if (r < 0)
                log_warning_errno(r, "Failed to remove ublk device %u from the kernel: %m", dev->id);
        ublk_dev_release(dev);
        ids_release(dev->id);
        ublk_dev_config_clear(&dev->config);
        free(dev);
}

int ublk_dev_check_unused(const struct ublk_dev *dev)
{
        char path[32];
        int fd;

        if (!dev->live && !dev->quiesced)
                return 0;
        snprintf(path, sizeof(path), "/dev/ublkb%u", dev->id);
        /* A mount, a device-mapper or md user, or another O_EXCL opener holds it exclusively. */
        fd = open(path, O_RDONLY | O_EXCL | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0)
                return errno == EBUSY ? -EBUSY : 0;
        close(fd);
        return 0;
}
