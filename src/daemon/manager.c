/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <stdlib.h>
#include <string.h>

#include <systemd/sd-daemon.h>

#include "log.h"
#include "manager.h"

/* What "systemctl status ublkd" shows on its Status: line. */
static void manager_update_status(struct manager *m)
{
        (void) sd_notifyf(0, "STATUS=Serving %u device%s.", m->n_devices, m->n_devices == 1 ? "" : "s");
}

struct ublk_dev *manager_find_device(struct manager *m, uint32_t id)
{
        for (struct managed_dev *d = m->devices; d; d = d->next)
                if (d->dev->id == id)
                        return d->dev;
        return NULL;
}

struct ublk_dev *manager_find_device_by_name(struct manager *m, const char *name)
{
        if (!name || !*name)
                return NULL;
        for (struct managed_dev *d = m->devices; d; d = d->next)
                if (strcmp(d->dev->config.name, name) == 0)
                        return d->dev;
        return NULL;
}

void manager_link_device(struct manager *m, struct ublk_dev *dev)
{
        struct managed_dev **p = &m->devices;
        struct managed_dev *d = calloc(1, sizeof(*d));

        if (!d)
                abort();
        d->dev = dev;
        dev->owner = m;
        while (*p)
                p = &(*p)->next;
        *p = d;
        m->n_devices++;
        manager_update_status(m);
}

void manager_unlink_device(struct manager *m, struct ublk_dev *dev)
{
        for (struct managed_dev **p = &m->devices; *p; p = &(*p)->next)
                if ((*p)->dev == dev) {
                        struct managed_dev *d = *p;

                        *p = d->next;
                        free(d);
                        m->n_devices--;
                        manager_update_status(m);
                        return;
                }
}

void manager_remove_all(struct manager *m)
{
        while (m->devices) {
                struct ublk_dev *dev = m->devices->dev;
                uint32_t id = dev->id;

                manager_unlink_device(m, dev);
                ublk_dev_free(dev);
                log_info("Removed ublk device %u.", id);
        }
}
