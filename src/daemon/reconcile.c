/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * At start, ublkd takes over what the ublkd before it left (state.h): each device with a state
 * file that the kernel still has is adopted -- recovered if its server went away while it was
 * live, kept stopped otherwise.  What cannot be served is removed and logged, so that no IO
 * waits for a server that will never come: a device whose state is unreadable or whose
 * backing fd was lost, and a device a previous ublkd added but died before saving.  State with
 * no kernel device is forgotten.  Devices of other ublk servers are left alone.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "device-bus.h"
#include "ids.h"
#include "log.h"
#include "macro.h"
#include "manager.h"
#include "parse.h"
#include "state.h"

struct adopt_work {
        struct work work;
        struct managed_dev *md;
        const struct ublk_ctrl *ctrl;
        uint32_t id;
        struct ublk_dev_config config;
        const char *missing_fd;         /* an option's key: the fd store had no fd for it */
        bool recover;
        /* Results. */
        struct ublk_dev *dev;
        struct ublk_reason why;
        bool removed;
        int recover_result;
};

static int adopt_run(struct work *w)
{
        struct adopt_work *a = (struct adopt_work *) w;
        int r;

        if (a->missing_fd) {
                snprintf(a->why.text, sizeof(a->why.text),
                         "its %s fd was not kept (ublkd ran outside systemd, or systemd lost its fd store)",
                         a->missing_fd);
                r = -EBADF;
        } else
                r = ublk_dev_adopt(a->ctrl, &a->config, a->id, &a->why, &a->dev);
        if (r < 0) {
                /* Its IO must not wait for a server that cannot come; but a kernel device shown not
                 * to be the one saved (-ESTALE) is someone else's, and stays. */
                if (r != -ESTALE)
                        a->removed = ublk_ctrl_del_dev(a->ctrl, a->id, a->config.owner_uid != 0) >= 0;
                state_forget(a->id);
                return r;
        }
        if (a->dev->quiesced && a->recover)
                a->recover_result = ublk_dev_recover(a->dev, UBLK_DEV_RECOVER_TIMEOUT_MS);
        return 0;
}

static void adopt_done(struct work *w, int r)
{
        struct adopt_work *a = (struct adopt_work *) w;
        struct managed_dev *md = a->md;
        struct manager *m = md->manager;
        struct ublk_dev *dev = a->dev;

        if (r < 0) {
                if (r == -ESTALE)
                        log_error("Cannot serve ublk device %u again: %s; left it alone.", a->id, a->why.text);
                else if (a->why.text[0])
                        log_error("Cannot serve ublk device %u again: %s; %s it.", a->id, a->why.text,
                                  a->removed ? "removed" : "failed to remove");
                else
                        log_error_errno(r, "Cannot serve ublk device %u again (%m); %s it.", a->id,
                                        a->removed ? "removed" : "failed to remove");
                manager_free_device(m, md);
                ids_release(a->id);
                goto out;
        }

        md->dev = dev;
        md->id = dev->id;
        md->name = dev->config.name;
        md->state = dev->live ? MANAGED_LIVE : dev->quiesced ? MANAGED_QUIESCED : MANAGED_STOPPED;
        md->in_kernel = dev->in_kernel;
        md->flags = dev->info.flags;
        md->busy = NULL;
        if (a->recover_result < 0)
                log_error_errno(a->recover_result, "Failed to recover ublk device %u (%s now): %m", md->id,
                                managed_state_to_string(md->state));
        else
                log_info("Took over %s device %u%s%s%s: %s.", dev->config.target->name, md->id,
                         *md->name ? " \"" : "", md->name, *md->name ? "\"" : "",
                         md->state == MANAGED_LIVE && dev->info.state != UBLK_S_DEV_LIVE ? "recovered, live" :
                         managed_state_to_string(md->state));
        manager_update_status(m);
        (void) bus_device_emit_added(m, md);
out:
        ublk_dev_config_clear(&a->config);
        free(a);
}

/* A kernel device with no state: removed if a previous ublkd added it, else someone else's. */
struct orphan_work {
        struct work work;
        const struct ublk_ctrl *ctrl;
        uint32_t id;
        pid_t server;
        bool ours;
};

static int orphan_run(struct work *w)
{
        struct orphan_work *o = (struct orphan_work *) w;
        struct ublksrv_ctrl_dev_info info;
        int r;

        /* GET_DEV_INFO2 answers for unprivileged devices too (6.5+); before that there are none. */
        r = ublk_ctrl_get_dev_info2(o->ctrl, o->id, &info);
        if (r < 0)
                r = ublk_ctrl_get_dev_info(o->ctrl, o->id, false, &info);
        if (r < 0)
                return r;
        o->server = info.ublksrv_pid;
        o->ours = info.ublksrv_flags == UBLKD_SERVER_MARK;
        if (!o->ours)
                return 0;
        return ublk_ctrl_del_dev(o->ctrl, o->id, !!(info.flags & UBLK_F_UNPRIVILEGED_DEV));
}

static void orphan_done(struct work *w, int r)
{
        struct orphan_work *o = (struct orphan_work *) w;

        if (r < 0)
                log_error_errno(r, "Failed to remove ublk device %u, which a previous ublkd left without "
                                "saving it: %m", o->id);
        else if (o->ours)
                log_warning("Removed ublk device %u: a previous ublkd added it but did not save it.", o->id);
        else
                log_info("ublk device %u belongs to another ublk server (pid %d): leaving it alone.", o->id,
                         (int) o->server);
        ids_release(o->id);
        free(o);
}

static bool in_list(const uint32_t *ids, unsigned n, uint32_t id)
{
        for (unsigned i = 0; i < n; i++)
                if (ids[i] == id)
                        return true;
        return false;
}

/*
 * Starts a work on the kernel device id, holding the id (ids.h) until its done() lets it go: an
 * Add of ours taking it meanwhile would stall a DEL_DEV of it, or a renewal's ADD_DEV.  Called
 * before the event loop runs, so no Add can pick the id before this holds it.
 */
static int work_start_holding(struct manager *m, struct work *w, uint32_t id)
{
        int r = ids_hold(id);

        if (r < 0)
                return r;
        r = work_start(m, w);
        if (r < 0)
                ids_release(id);
        return r;
}

/* The fds of the target's options that systemd's fd store kept (state.h); a required one that it
 * did not keep makes the device one that cannot be served (adopt_run()). */
static void restore_fds(struct adopt_work *a, uint32_t id)
{
        const struct ublk_target_desc *t = a->config.target->desc;

        for (size_t i = 0; ublk_options[i]; i++) {
                const struct ublk_option *o = ublk_options[i];
                union ublk_opt_value v;
                char why[256];
                int r;

                if (!(o->flags & UBLK_OPT_FDSTORE) || !ublk_option_takes(o, t))
                        continue;
                if (o->kind == UBLK_OPT_FDS) {
                        _cleanup_free_ int *fds = NULL;
                        unsigned n = 0;

                        /* None stored is no chain (an image without backing file); the target
                         * checks the chain against the image again. */
                        r = state_fds_take(o->key, id, &fds, &n);
                        if (r >= 0 && n > 0) {
                                v.fds.fds = fds;
                                v.fds.n = n;
                                r = ublk_dev_config_set(&a->config, o, &v, why, sizeof(why));
                        }
                        for (unsigned k = 0; k < n; k++)
                                safe_close(fds[k]);
                        if (r < 0 && !a->missing_fd)
                                a->missing_fd = o->key;
                        continue;
                }
                v.fd = state_fd_take(o->key, id);
                r = v.fd < 0 ? -EBADF : ublk_dev_config_set(&a->config, o, &v, why, sizeof(why));
                safe_close(v.fd);
                if (r < 0 && ublk_target_requires(t, o->key) && !a->missing_fd)
                        a->missing_fd = o->key;
        }
}

static int adopt_start(struct manager *m, uint32_t id, bool recover)
{
        struct adopt_work *a;
        char *backing = NULL;
        int r;

        a = calloc(1, sizeof(*a));
        if (!a)
                return -ENOMEM;
        r = state_load(id, &a->config, &backing);
        if (r < 0) {
                log_error_errno(r, "Failed to read the saved state of ublk device %u: %m", id);
                free(a);
                return r;
        }
        a->id = id;
        a->ctrl = &m->ctrl;
        a->recover = recover;
        restore_fds(a, id);
        a->md = manager_new_device(m, a->config.name);
        if (!a->md) {
                ublk_dev_config_clear(&a->config);
                free(backing);
                free(a);
                return -ENOMEM;
        }
        a->md->busy = "being taken over";
        a->md->id = id;
        a->md->owner_uid = a->config.owner_uid;
        a->md->owner_gid = a->config.owner_gid;
        a->md->queue_bytes = (uint64_t) a->config.queues * a->config.depth * UBLK_DEV_MAX_IO_BYTES;
        a->md->backing = backing;
        a->work.run = adopt_run;
        a->work.done = adopt_done;
        snprintf(a->work.what, sizeof(a->work.what), "taking over ublk device %u", id);
        r = work_start_holding(m, &a->work, id);
        if (r < 0) {
                manager_free_device(m, a->md);
                ublk_dev_config_clear(&a->config);
                free(a);
        }
        return r;
}

static int orphan_start(struct manager *m, uint32_t id)
{
        struct orphan_work *o = calloc(1, sizeof(*o));
        int r;

        if (!o)
                return -ENOMEM;
        o->ctrl = &m->ctrl;
        o->id = id;
        o->work.run = orphan_run;
        o->work.done = orphan_done;
        snprintf(o->work.what, sizeof(o->work.what), "checking ublk device %u", id);
        r = work_start_holding(m, &o->work, id);
        if (r < 0)
                free(o);
        return r;
}

int reconcile_start(struct manager *m)
{
        _cleanup_free_ uint32_t *saved = NULL, *kernel = NULL;
        unsigned n_saved = 0, n_kernel = 0;
        /* Tests only: leave quiesced devices for Recover(). */
        bool recover = !getenv("UBLKD_TEST_NO_RECOVER");
        int r;

        state_fds_load();
        r = list_ids(STATE_DIR, "", &saved, &n_saved);
        if (r < 0)
                log_warning_errno(r, "Failed to list %s, taking over no device: %m", STATE_DIR);
        if (m->ctrl.fd >= 0) {
                r = list_ids("/sys/class/ublk-char", "ublkc", &kernel, &n_kernel);
                if (r < 0)
                        log_warning_errno(r, "Failed to list the kernel's ublk devices: %m");
        }

        for (unsigned i = 0; i < n_saved; i++) {
                if (!in_list(kernel, n_kernel, saved[i])) {
                        log_info("ublk device %u is no longer in the kernel: forgetting it.", saved[i]);
                        state_forget(saved[i]);
                        continue;
                }
                r = adopt_start(m, saved[i], recover);
                if (r < 0) {
                        log_error_errno(r, "Cannot take over ublk device %u, treating it as unknown: %m", saved[i]);
                        state_forget(saved[i]);
                        (void) orphan_start(m, saved[i]);
                }
        }
        for (unsigned i = 0; i < n_kernel; i++)
                if (!in_list(saved, n_saved, kernel[i]))
                        (void) orphan_start(m, kernel[i]);

        state_fds_drop_unused();
        return 0;
}
