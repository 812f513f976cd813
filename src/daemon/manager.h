/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * The daemon's state: the event loop, the bus connection, the control device
 * and the devices it serves (a list in creation order).  manager-bus.h and
 * device-bus.h expose it on the bus; main.c owns its life time.
 *
 * Everything here belongs to the event loop's thread.  A device that a work
 * (work.h) is operating on is marked busy; while it is, its struct ublk_dev
 * belongs to the work, and the bus only reads what cannot change (its
 * configuration) and the state kept here.
 */

#include <pthread.h>
#include <stdbool.h>
#include <sys/types.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "ctrl.h"
#include "device.h"
#include "work.h"

enum managed_state {
        MANAGED_STOPPED,
        MANAGED_LIVE,
        MANAGED_QUIESCED,       /* taken over with no server: its IO waits for Recover() */
};

struct auth_pending;

struct managed_dev {
        struct ublk_dev *dev;           /* NULL until the Add's work has created it */
        uint32_t id;                    /* the kernel id: fixed once dev is set (dev->id is the work's) */
        struct manager *manager;
        const char *name;               /* reserved while adding; dev->config.name after */
        enum managed_state state;
        bool in_kernel;                 /* /dev/ublkcN exists (see device.h) */
        const char *busy;               /* the operation in progress ("adding", ...), or NULL */
        uid_t owner_uid;                /* 0: root's (a privileged device) */
        gid_t owner_gid;
        uint64_t queue_bytes;           /* IO buffer space of its queues (per-user limit) */
        uint64_t flags;                 /* UBLK_F_* as the kernel granted them */
        char *backing;                  /* informational: the backing file as ublkd sees it */
        /* Unique for the life of this ublkd: tells this device from a later one under its id. */
        uint64_t generation;
        struct managed_dev *next;
};

struct manager {
        sd_event *event;
        sd_bus *bus;
        struct ublk_ctrl ctrl;
        struct managed_dev *devices;
        unsigned n_devices;
        uint64_t last_generation;
        bool exiting;                   /* no new operations; exit when the running ones end */
        bool handover;                  /* exiting for a restart: leave the devices to the next ublkd */

        /* What one user other than root may have (main.c options). */
        unsigned user_max_devices;
        uint64_t user_max_queue_bytes;

        /* polkit.c */
        struct auth_pending *auth_pending;
        unsigned n_auth_pending;

        /* work.c */
        pthread_mutex_t work_lock;
        struct work *works;
        int work_efd;
        sd_event_source *work_source;
};

/* Only devices the bus can see: not those still being added. */
struct managed_dev *manager_find_device(struct manager *m, uint32_t id);
/* Any device with that name, including one being added. */
struct managed_dev *manager_find_device_by_name(struct manager *m, const char *name);
struct managed_dev *manager_new_device(struct manager *m, const char *name);
void manager_free_device(struct manager *m, struct managed_dev *md);
void manager_remove_all(struct manager *m);
/* Devices of uid (added or being added) and their queue_bytes. */
unsigned manager_count_user_devices(struct manager *m, uid_t uid, uint64_t *ret_queue_bytes);
const char *managed_state_to_string(enum managed_state state);
/* Refuses new operations and leaves the event loop once the running ones have ended. */
int manager_begin_exit(struct manager *m);
/* Called after a device is linked or unlinked, or changes state. */
void manager_update_status(struct manager *m);

/* reconcile.c: takes over the devices a previous ublkd left (works; the bus name is ours). */
int reconcile_start(struct manager *m);
