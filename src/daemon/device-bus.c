/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The org.ublk.ublkd1.Device objects, one per device at /org/ublk/ublkd1/device/<id> (device-bus.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "bus-util.h"
#include "device-bus.h"
#include "log.h"
#include "parse.h"
#include "polkit.h"
#include "state.h"
#include "ublkd-bus.h"

char *bus_device_path(uint32_t id)
{
        char *p;

        if (asprintf(&p, UBLKD_DEVICE_PATH_PREFIX "/%u", id) < 0)
                return NULL;
        return p;
}

static int device_id_from_path(const char *path, uint32_t *id)
{
        const char *e = path + strlen(UBLKD_DEVICE_PATH_PREFIX);

        if (strncmp(path, UBLKD_DEVICE_PATH_PREFIX, strlen(UBLKD_DEVICE_PATH_PREFIX)) != 0 || *e != '/')
                return -EINVAL;
        return parse_uint32(e + 1, id);
}

static int device_find(sd_bus *bus, const char *path, const char *interface, void *userdata, void **found,
                       sd_bus_error *error)
{
        struct managed_dev *md;
        uint32_t id;

        if (device_id_from_path(path, &id) < 0)
                return 0;
        md = manager_find_device(userdata, id);
        if (!md)
                return 0;
        *found = md;
        return 1;
}

static int device_enumerate(sd_bus *bus, const char *path, void *userdata, char ***nodes, sd_bus_error *error)
{
        struct manager *m = userdata;
        char **l;
        size_t i = 0;

        l = calloc(m->n_devices + 1, sizeof(char *));
        if (!l)
                return -ENOMEM;
        for (struct managed_dev *d = m->devices; d; d = d->next) {
                if (!d->dev)
                        continue;
                l[i] = bus_device_path(d->id);
                if (!l[i]) {
                        while (i > 0)
                                free(l[--i]);
                        free(l);
                        return -ENOMEM;
                }
                i++;
        }
        *nodes = l;
        return 0;
}

/* Start, Stop and Remove: each runs as a work on the device, answered when it ends. */
enum device_op {
        OP_START,
        OP_STOP,
        OP_REMOVE,
        OP_RECOVER,
};

static const struct {
        const char *verb;       /* for "Not authorized to ..." */
        const char *busy;       /* what the device is doing meanwhile */
        const char *doing;      /* for the log */
        const char *failed;
} device_ops[] = {
        [OP_START]   = { "start", "starting", "starting", "Starting the device failed" },
        [OP_STOP]    = { "stop", "stopping", "stopping", "Stopping the device failed" },
        [OP_REMOVE]  = { "remove", "being removed", "removing", "Removing the device failed" },
        [OP_RECOVER] = { "recover", "recovering", "recovering", "Recovering the device failed" },
};

struct device_work {
        struct work work;
        enum device_op op;
        struct managed_dev *md;
        struct ublk_dev *dev;
        sd_bus_message *call;
        /* Results. */
        bool in_use;            /* refused: the block device is held open exclusively */
        bool live, in_kernel, quiesced;
};

static int device_run(struct work *w)
{
        struct device_work *d = (struct device_work *) w;
        int r;

        switch (d->op) {
        case OP_START:
                r = ublk_dev_start(d->dev);
                break;
        case OP_STOP:
        case OP_REMOVE:
                /* Pulling a mounted filesystem's device loses its dirty data: refuse. */
                r = ublk_dev_check_unused(d->dev);
                if (r < 0) {
                        d->in_use = true;
                        break;
                }
                r = d->op == OP_STOP ? ublk_dev_stop(d->dev) : ublk_dev_remove(d->dev);
                break;
        case OP_RECOVER:
                r = ublk_dev_recover(d->dev, UBLK_DEV_RECOVER_TIMEOUT_MS);
                break;
        default:
                r = -EINVAL;
        }
        d->live = d->dev->live;
        d->in_kernel = d->dev->in_kernel;
        d->quiesced = d->dev->quiesced;
        if (d->op == OP_REMOVE && r >= 0) {
                /* Before the free on the event loop lets the id go: the next device with it
                 * has state of its own. */
                state_forget(d->dev->id);
                /* Here, not on the event loop: closing the backing file may flush it.  The
                 * struct itself stays until device_done(): the loop reads md->dev until then. */
                ublk_dev_release(d->dev);
        }
        return r;
}

static void device_done(struct work *w, int r)
{
        struct device_work *d = (struct device_work *) w;
        struct managed_dev *md = d->md;
        struct manager *m = md->manager;
        uint32_t id = md->id;
        enum managed_state old_state = md->state;
        bool old_in_kernel = md->in_kernel;

        md->busy = NULL;
        md->state = d->live ? MANAGED_LIVE : d->quiesced ? MANAGED_QUIESCED : MANAGED_STOPPED;
        md->in_kernel = d->in_kernel;
        if (d->in_use) {
                _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;

                sd_bus_error_setf(&error, UBLKD_ERROR_BUSY,
                                  "/dev/ublkb%u is in use (mounted, or held by another device): unmount it first", id);
                (void) sd_bus_reply_method_error(d->call, &error);
        } else if (r == -EEXIST && d->op == OP_START) {
                _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;

                /* Only ADD_DEV asking for this id gives EEXIST. */
                log_warning("ublk device %u cannot start: its id was taken while it was out of the kernel.", id);
                sd_bus_error_setf(&error, UBLKD_ERROR_BUSY,
                                  "Device id %u was taken by another device while this one was out of the kernel: "
                                  "remove this device and add it again", id);
                (void) sd_bus_reply_method_error(d->call, &error);
        } else if (r == -ETIMEDOUT && d->op == OP_REMOVE) {
                _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;

                /* DEL_DEV was interrupted before the kernel deleted anything (ctrl.h). */
                log_warning("ublk device %u: the kernel did not remove it in time; it stays, stopped.", id);
                sd_bus_error_setf(&error, UBLKD_ERROR_BUSY,
                                  "The kernel did not remove device %u in time (/dev/ublkc%u held open?); "
                                  "it is stopped and stays: try again", id, id);
                (void) sd_bus_reply_method_error(d->call, &error);
        } else if (r < 0) {
                log_error_errno(r, "%s (ublk device %u): %m", device_ops[d->op].failed, id);
                (void) bus_reply_errno(d->call, r, device_ops[d->op].failed);
        } else if (d->op == OP_REMOVE) {
                manager_free_device(m, md);
                log_info("Removed ublk device %u.", id);
                (void) bus_device_emit_removed(m, id);
                (void) sd_bus_reply_method_return(d->call, NULL);
                goto out;
        } else {
                log_info("ublk device %u is %s.", id, managed_state_to_string(md->state));
                (void) sd_bus_reply_method_return(d->call, NULL);
        }
        if (md->state != old_state || md->in_kernel != old_in_kernel) {
                manager_update_status(m);
                (void) bus_device_emit_state_changed(m, md);
        }
out:
        sd_bus_message_unref(d->call);
        free(d);
}

/* Authorized: check the state, then run the operation as a work. */
static int device_op_begin(sd_bus_message *msg, struct managed_dev *md, enum device_op op, sd_bus_error *error)
{
        struct device_work *d;
        int r;

        if (md->manager->exiting)
                return bus_error_from_errno(error, -ESHUTDOWN, device_ops[op].failed);
        if (md->busy)
                return sd_bus_error_setf(error, UBLKD_ERROR_BUSY, "Device %u is %s: try again when that is done",
                                         md->id, md->busy);
        if ((op == OP_START || op == OP_STOP) && md->state == MANAGED_QUIESCED)
                return sd_bus_error_setf(error, UBLKD_ERROR_BUSY,
                                         "Device %u is quiesced (its IO waits for a server): Recover it, or "
                                         "Remove it (its IO fails)", md->id);
        if (op == OP_START && md->state == MANAGED_LIVE)
                return sd_bus_error_setf(error, UBLKD_ERROR_BUSY, "Device %u is live already", md->id);
        if (op == OP_STOP && md->state != MANAGED_LIVE)
                return sd_bus_error_setf(error, UBLKD_ERROR_BUSY, "Device %u is not live", md->id);
        /* Only a quiesced device (its server gone, IO held) can be recovered: one a previous
         * ublkd left that was not recovered when this one took it over. */
        if (op == OP_RECOVER && md->state != MANAGED_QUIESCED)
                return sd_bus_error_setf(error, UBLKD_ERROR_BUSY,
                                         "Device %u is %s, not quiesced: there is nothing to recover%s",
                                         md->id, managed_state_to_string(md->state),
                                         md->state == MANAGED_STOPPED ? " (use Start)" : "");

        d = calloc(1, sizeof(*d));
        if (!d)
                return -ENOMEM;
        d->op = op;
        d->md = md;
        d->dev = md->dev;
        d->call = sd_bus_message_ref(msg);
        d->work.run = device_run;
        d->work.done = device_done;
        snprintf(d->work.what, sizeof(d->work.what), "%s ublk device %u", device_ops[op].doing, md->id);
        md->busy = device_ops[op].busy;
        r = work_start(md->manager, &d->work);
        if (r < 0) {
                md->busy = NULL;
                sd_bus_message_unref(d->call);
                free(d);
                return bus_error_from_errno(error, r, device_ops[op].failed);
        }
        return 1;
}

struct device_auth {
        struct manager *manager;
        uint32_t id;
        uint64_t generation;    /* the device asked about, not a later one under its id */
        enum device_op op;
};

static void device_op_authorized(sd_bus_message *msg, int r, const sd_bus_error *auth_error, void *userdata)
{
        _cleanup_free_ struct device_auth *da = userdata;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        struct managed_dev *md;

        if (r <= 0) {
                (void) sd_bus_reply_method_error(msg, auth_error);
                return;
        }
        /* polkit may have taken minutes: the device may be gone. */
        md = manager_find_device(da->manager, da->id);
        if (!md || md->generation != da->generation)
                sd_bus_error_setf(&error, UBLKD_ERROR_NO_SUCH_DEVICE, "No such device: %u (it was removed)", da->id);
        else
                r = device_op_begin(msg, md, da->op, &error);
        if (r < 0 && !sd_bus_error_is_set(&error))
                bus_error_from_errno(&error, r, device_ops[da->op].failed);
        if (sd_bus_error_is_set(&error))
                (void) sd_bus_reply_method_error(msg, &error);
}

/*
 * Root, and a device's owner, act on it without asking; anyone else needs polkit's
 * manage-other-devices.
 */
static int device_op_start(sd_bus_message *msg, struct managed_dev *md, enum device_op op, sd_bus_error *error)
{
        struct device_auth *da;
        char what[64], id[16];
        uid_t uid;
        int r;

        r = bus_caller_uid(msg, &uid, error);
        if (r < 0)
                return r;
        if (uid == 0 || (md->owner_uid != 0 && uid == md->owner_uid))
                return device_op_begin(msg, md, op, error);

        da = calloc(1, sizeof(*da));
        if (!da)
                return -ENOMEM;
        *da = (struct device_auth) { .manager = md->manager, .id = md->id, .generation = md->generation, .op = op };
        snprintf(what, sizeof(what), "%s device %u of uid %u", device_ops[op].verb, md->id, (unsigned) md->owner_uid);
        snprintf(id, sizeof(id), "%u", md->id);
        r = bus_authorize(md->manager, msg, uid, POLKIT_ACTION_MANAGE_OTHER, what, id, device_op_authorized, da, error);
        if (r != 0)
                free(da);       /* refused now (root was handled above) */
        return r < 0 ? r : 1;
}

static int method_start(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        return device_op_start(msg, userdata, OP_START, error);
}

static int method_stop(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        return device_op_start(msg, userdata, OP_STOP, error);
}

static int method_remove(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        return device_op_start(msg, userdata, OP_REMOVE, error);
}

static int method_recover(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        return device_op_start(msg, userdata, OP_RECOVER, error);
}

#define DEV_PROP_GETTER(fn, sig, expr)                                                                   \
        static int fn(sd_bus *bus, const char *path, const char *interface, const char *property,        \
                      sd_bus_message *reply, void *userdata, sd_bus_error *error)                        \
        {                                                                                                \
                const struct managed_dev *md = userdata;                                                 \
                const struct ublk_dev *dev = md->dev;                                                    \
                (void) dev;                                                                              \
                return sd_bus_message_append(reply, sig, expr);                                          \
        }

/* A busy device's struct ublk_dev belongs to its work: read only what no work changes. */
DEV_PROP_GETTER(property_get_id, "u", md->id)
DEV_PROP_GETTER(property_get_name, "s", md->name)
DEV_PROP_GETTER(property_get_target, "s", dev->config.target->name)
DEV_PROP_GETTER(property_get_state, "s", managed_state_to_string(md->state))
DEV_PROP_GETTER(property_get_size, "t", dev->config.size)
DEV_PROP_GETTER(property_get_lbs, "u", dev->config.logical_block_size)
DEV_PROP_GETTER(property_get_queues, "u", dev->config.queues)
DEV_PROP_GETTER(property_get_depth, "u", dev->config.depth)
DEV_PROP_GETTER(property_get_read_only, "b", (int) dev->config.read_only)
DEV_PROP_GETTER(property_get_direct_io, "b", (int) dev->direct_io)
DEV_PROP_GETTER(property_get_zero_copy, "b", (int) (dev->zero_copy || dev->splice))
DEV_PROP_GETTER(property_get_owner_uid, "u", (uint32_t) md->owner_uid)
DEV_PROP_GETTER(property_get_owner_gid, "u", (uint32_t) md->owner_gid)
DEV_PROP_GETTER(property_get_flags, "t", md->flags)
DEV_PROP_GETTER(property_get_recovery, "s", ublk_recovery_to_string(md->flags))

/* A path names a user's files: only root and the device's owner may read it. */
static int property_get_backing(sd_bus *bus, const char *path, const char *interface, const char *property,
                                sd_bus_message *reply, void *userdata, sd_bus_error *error)
{
        const struct managed_dev *md = userdata;
        uid_t uid;
        int r;

        r = bus_caller_uid(sd_bus_get_current_message(bus), &uid, error);
        if (r < 0)
                return r;
        if (uid != 0 && uid != md->owner_uid)
                return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                         "Only root and the device's owner may read its Backing");
        return sd_bus_message_append(reply, "s", md->backing ? md->backing : "");
}

/* How the target is doing ("connected", "reconnecting"...: nbd), "" when it has nothing to say. */
static int property_get_target_status(sd_bus *bus, const char *path, const char *interface,
                                      const char *property, sd_bus_message *reply, void *userdata,
                                      sd_bus_error *error)
{
        const struct managed_dev *md = userdata;
        char buf[256] = "";

        /* While busy, a work may be tearing the target's state down. */
        if (!md->busy && md->dev && md->dev->config.target->status)
                md->dev->config.target->status(md->dev, buf, sizeof(buf));
        return sd_bus_message_append(reply, "s", buf);
}

static int property_get_node(sd_bus *bus, const char *path, const char *interface, const char *property,
                             sd_bus_message *reply, void *userdata, sd_bus_error *error)
{
        const struct managed_dev *md = userdata;
        char node[32] = "";

        if (strcmp(property, "CharDevice") == 0 ? md->in_kernel : md->state == MANAGED_LIVE)
                snprintf(node, sizeof(node), "/dev/ublk%c%u", strcmp(property, "CharDevice") == 0 ? 'c' : 'b',
                         md->id);
        return sd_bus_message_append(reply, "s", node);
}

static const sd_bus_vtable device_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Id", "u", property_get_id, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Name", "s", property_get_name, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Target", "s", property_get_target, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("State", "s", property_get_state, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("BlockDevice", "s", property_get_node, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("CharDevice", "s", property_get_node, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Size", "t", property_get_size, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("LogicalBlockSize", "u", property_get_lbs, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Queues", "u", property_get_queues, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Depth", "u", property_get_depth, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("ReadOnly", "b", property_get_read_only, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("DirectIO", "b", property_get_direct_io, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("ZeroCopy", "b", property_get_zero_copy, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("OwnerUID", "u", property_get_owner_uid, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("OwnerGID", "u", property_get_owner_gid, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Flags", "t", property_get_flags, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        /* Explicit: not in GetAll() or InterfacesAdded, which anyone may receive. */
        SD_BUS_PROPERTY("Backing", "s", property_get_backing, 0,
                        SD_BUS_VTABLE_PROPERTY_CONST | SD_BUS_VTABLE_PROPERTY_EXPLICIT),
        SD_BUS_PROPERTY("Recovery", "s", property_get_recovery, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("TargetStatus", "s", property_get_target_status, 0, 0),
        SD_BUS_METHOD("Start", "", "", method_start, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("Stop", "", "", method_stop, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("Recover", "", "", method_recover, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("Remove", "", "", method_remove, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END
};

int bus_device_register(struct manager *m)
{
        int r;

        r = sd_bus_add_fallback_vtable(m->bus, NULL, UBLKD_DEVICE_PATH_PREFIX, UBLKD_DEVICE_IFACE,
                                       device_vtable, device_find, m);
        if (r < 0)
                return r;
        return sd_bus_add_node_enumerator(m->bus, NULL, UBLKD_DEVICE_PATH_PREFIX, device_enumerate, m);
}

int bus_device_emit_added(struct manager *m, struct managed_dev *md)
{
        _cleanup_free_ char *path = bus_device_path(md->id);

        if (!path)
                return -ENOMEM;
        return sd_bus_emit_object_added(m->bus, path);
}

int bus_device_emit_removed(struct manager *m, uint32_t id)
{
        _cleanup_free_ char *path = bus_device_path(id);

        if (!path)
                return -ENOMEM;
        /* The object is gone already: name its interfaces explicitly. */
        return sd_bus_emit_interfaces_removed(m->bus, path, UBLKD_DEVICE_IFACE, NULL);
}

int bus_device_emit_state_changed(struct manager *m, struct managed_dev *md)
{
        _cleanup_free_ char *path = bus_device_path(md->id);

        if (!path)
                return -ENOMEM;
        return sd_bus_emit_properties_changed(m->bus, path, UBLKD_DEVICE_IFACE, "State", "BlockDevice",
                                              "CharDevice", NULL);
}
