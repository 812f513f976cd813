/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <stdlib.h>
#include <string.h>

#include <systemd/sd-daemon.h>

#include "log.h"
#include "manager.h"
#include "polkit.h"
#include "state.h"

/* What "systemctl status ublkd" shows on its Status: line. */
void manager_update_status(struct manager *m)
{
        unsigned live = 0;

        for (struct managed_dev *d = m->devices; d; d = d->next)
                if (d->state == MANAGED_LIVE)
                        live++;
        (void) sd_notifyf(0, "STATUS=Serving %u device%s (%u live).", m->n_devices, m->n_devices == 1 ? "" : "s",
                          live);
}

const char *managed_state_to_string(enum managed_state state)
{
        switch (state) {
        case MANAGED_LIVE:
                return "live";
        case MANAGED_QUIESCED:
                return "quiesced";
        default:
                return "stopped";
        }
}

struct managed_dev *manager_find_device(struct manager *m, uint32_t id)
{
        for (struct managed_dev *d = m->devices; d; d = d->next)
                if (d->dev && d->id == id)
                        return d;
        return NULL;
}

struct managed_dev *manager_find_device_by_name(struct manager *m, const char *name)
{
        if (!name || !*name)
                return NULL;
        for (struct managed_dev *d = m->devices; d; d = d->next)
                if (strcmp(d->name, name) == 0)
                        return d;
        return NULL;
}

struct managed_dev *manager_new_device(struct manager *m, const char *name)
{
        struct managed_dev **p = &m->devices;
        struct managed_dev *d = calloc(1, sizeof(*d));

        if (!d)
                return NULL;
        d->manager = m;
        d->name = name;
        d->generation = ++m->last_generation;
        while (*p)
                p = &(*p)->next;
        *p = d;
        m->n_devices++;
        return d;
}

void manager_free_device(struct manager *m, struct managed_dev *md)
{
        for (struct managed_dev **p = &m->devices; *p; p = &(*p)->next)
                if (*p == md) {
                        *p = md->next;
                        m->n_devices--;
                        break;
                }
        ublk_dev_free(md->dev);
        free(md->backing);
        free(md);
        manager_update_status(m);
}

void manager_remove_all(struct manager *m)
{
        while (m->devices) {
                struct managed_dev *md = m->devices;
                uint32_t id = md->id;
                bool had_dev = md->dev;

                /* Before the free lets the id go, as everywhere. */
                if (had_dev)
                        state_forget(id);
                manager_free_device(m, md);
                log_info("Removed ublk device %u.", id);
        }
}

unsigned manager_count_user_devices(struct manager *m, uid_t uid, uint64_t *ret_queue_bytes)
{
        uint64_t bytes = 0;
        unsigned n = 0;

        for (struct managed_dev *d = m->devices; d; d = d->next)
                if (d->owner_uid == uid) {
                        n++;
                        bytes += d->queue_bytes;
                }
        *ret_queue_bytes = bytes;
        return n;
}

int manager_begin_exit(struct manager *m)
{
        m->exiting = true;
        /* Callers waiting for polkit get their answer while the bus is up. */
        bus_authorize_cancel_all(m);
        if (work_running(m))
                return 0;       /* on_work_finished() exits when the last one ends */
        return sd_event_exit(m->event, 0);
}
