/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * The parts of the rbd target, for its two files only: rbd.c (its options, the device, its IO:
 * the design is told there) and rbd-connect.c (the way to the image).
 *
 * Contract:
 *  - rbd_spec_parse() splits POOL/[NAMESPACE/]IMAGE[@SNAP] into ret, or returns -EINVAL.
 *  - rbd_connect() runs off the event loop (init() does, in a work thread): it connects to the
 *    cluster as dev's configuration says, opens the image (read-only, without its lock, for a
 *    snapshot or a read-only device: rd->read_only) and returns 0, or a negative errno with
 *    *reason naming the fix.  It waits at most connect-timeout for the monitors and io-timeout
 *    for the OSDs.  What it made stays in rd, for the caller to free either way.
 *  - REASON() fills the *reason in scope.
 */

#include <pthread.h>
#include <rados/librados.h>
#include <rbd/librbd.h>
#include <stdbool.h>
#include <stdint.h>

#include "device.h"
#include "target.h"

#define RBD_NAME_MAX 255
#define RBD_DEFAULT_IO_TIMEOUT 30
#define RBD_DEFAULT_CONNECT_TIMEOUT 30
/* An Add waits for the connection: well within ublkctl's 120 s for an operation. */
#define RBD_MAX_CONNECT_TIMEOUT 60
#define RBD_MAX_IO_TIMEOUT 3600
/* A ceph.conf or a keyring is a few hundred bytes. */
#define RBD_FILE_MAX (64 * 1024)

/* Strings inline: the configuration stays readable after config_release() (target.h). */
struct rbd_config {
        char image[4 * (RBD_NAME_MAX + 1)];     /* POOL/[NAMESPACE/]IMAGE[@SNAP]; "" if none */
        char ceph_id[RBD_NAME_MAX + 1];         /* "": admin */
        char mon_host[1024];
        int conf_fd;            /* owned, -1 if none */
        int keyring_fd;
        uint32_t io_timeout;    /* 0: the default */
        uint32_t connect_timeout;
};

static inline struct rbd_config *rbd_config(const struct ublk_dev *dev)
{
        return dev->config.target_config;
}

/* POOL/[NAMESPACE/]IMAGE[@SNAP], split in place. */
struct rbd_spec {
        char buf[4 * (RBD_NAME_MAX + 1)];
        const char *pool, *ns, *image, *snap;   /* ns, snap: NULL if none */
};

struct rbd_dev {
        rados_t cluster;
        rados_ioctx_t ioctx;
        rbd_image_t image;
        bool read_only;
        /* The image's header watch (rbd_update_watch()), for resizes made elsewhere. */
        struct ublk_dev *dev;
        uint64_t watch_handle;
        bool watching;
        pthread_mutex_t resize_lock;    /* one resize at a time (librbd may call us concurrently) */
        uint64_t size;                  /* the device's, in bytes */
};

int rbd_spec_parse(const char *text, struct rbd_spec *ret);
int rbd_connect(struct ublk_dev *dev, struct rbd_dev *rd, const struct rbd_spec *spec, struct ublk_reason *reason);

__attribute__((format(printf, 2, 3)))
void rbd_reason(struct ublk_reason *reason, const char *fmt, ...);
#define REASON(...) rbd_reason(reason, __VA_ARGS__)
