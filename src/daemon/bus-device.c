/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The org.ublk.ublkd1.Device objects, one per device at /org/ublk/ublkd1/device/<id>. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "manager.h"
#include "parse.h"
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
        struct ublk_dev *dev;
        uint32_t id;

        if (device_id_from_path(path, &id) < 0)
                return 0;
        dev = manager_find_device(userdata, id);
        if (!dev)
                return 0;
        *found = dev;
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
                l[i] = bus_device_path(d->dev->id);
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

static int method_remove(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        struct ublk_dev *dev = userdata;
        struct manager *m = dev->owner;
        uint32_t id = dev->id;
        int r;

        r = ublk_dev_stop(dev);
        if (r < 0)
                return bus_error_from_errno(error, r, "Stopping the device failed");
        manager_unlink_device(m, dev);
        ublk_dev_free(dev);
        log_info("Removed ublk device %u.", id);
        (void) bus_device_emit_removed(m, id);
        return sd_bus_reply_method_return(msg, NULL);
}

#define DEV_PROP_GETTER(fn, sig, expr)                                                                   \
        static int fn(sd_bus *bus, const char *path, const char *interface, const char *property,        \
                      sd_bus_message *reply, void *userdata, sd_bus_error *error)                        \
        {                                                                                                \
                const struct ublk_dev *dev = userdata;                                                   \
                return sd_bus_message_append(reply, sig, expr);                                          \
        }

DEV_PROP_GETTER(property_get_id, "u", dev->id)
DEV_PROP_GETTER(property_get_name, "s", dev->config.name)
DEV_PROP_GETTER(property_get_target, "s", dev->config.target->name)
DEV_PROP_GETTER(property_get_state, "s", ublk_dev_state(dev))
DEV_PROP_GETTER(property_get_size, "t", dev->config.size)
DEV_PROP_GETTER(property_get_lbs, "u", dev->config.logical_block_size)
DEV_PROP_GETTER(property_get_queues, "u", dev->config.queues)
DEV_PROP_GETTER(property_get_depth, "u", dev->config.depth)
DEV_PROP_GETTER(property_get_read_only, "b", (int) dev->config.read_only)
DEV_PROP_GETTER(property_get_direct_io, "b", (int) dev->config.direct_io_active)
DEV_PROP_GETTER(property_get_zero_copy, "b", (int) dev->zero_copy)

static int property_get_node(sd_bus *bus, const char *path, const char *interface, const char *property,
                             sd_bus_message *reply, void *userdata, sd_bus_error *error)
{
        const struct ublk_dev *dev = userdata;
        char node[32] = "";

        if (strcmp(property, "CharDevice") == 0)
                snprintf(node, sizeof(node), "/dev/ublkc%u", dev->id);
        else if (dev->live)
                snprintf(node, sizeof(node), "/dev/ublkb%u", dev->id);
        return sd_bus_message_append(reply, "s", node);
}

static const sd_bus_vtable device_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Id", "u", property_get_id, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Name", "s", property_get_name, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Target", "s", property_get_target, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("State", "s", property_get_state, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("BlockDevice", "s", property_get_node, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("CharDevice", "s", property_get_node, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Size", "t", property_get_size, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("LogicalBlockSize", "u", property_get_lbs, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Queues", "u", property_get_queues, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Depth", "u", property_get_depth, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("ReadOnly", "b", property_get_read_only, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("DirectIO", "b", property_get_direct_io, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("ZeroCopy", "b", property_get_zero_copy, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_METHOD("Remove", "", "", method_remove, 0),
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

int bus_device_emit_added(struct manager *m, struct ublk_dev *dev)
{
        _cleanup_free_ char *path = bus_device_path(dev->id);

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

int bus_device_emit_state_changed(struct manager *m, struct ublk_dev *dev)
{
        _cleanup_free_ char *path = bus_device_path(dev->id);

        if (!path)
                return -ENOMEM;
        return sd_bus_emit_properties_changed(m->bus, path, UBLKD_DEVICE_IFACE, "State", "BlockDevice", NULL);
}
