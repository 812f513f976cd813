/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The org.ublk.ublkd1.Manager object: creating and finding devices (manager-bus.h). */
#include <errno.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bus-util.h"
#include "config.h"
#include "device-bus.h"
#include "log.h"
#include "macro.h"
#include "manager-bus.h"
#include "parse.h"
#include "polkit.h"
#include "state.h"
#include "ublkd-bus.h"

_Static_assert(DEVICE_NAME_MAX == UBLK_DEV_NAME_MAX, "one name length for the bus and the files");

struct add_request {
        struct ublk_dev_config config;
        bool start;
};

/* An "ah": the fds stay the message's (values are borrowed, add-options.h). */
static int read_fds(sd_bus_message *msg, int **fds, unsigned *n)
{
        int fd, r;

        r = sd_bus_message_enter_container(msg, 'a', "h");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_read(msg, "h", &fd)) > 0) {
                int *p = realloc(*fds, (*n + 1) * sizeof(int));

                if (!p)
                        return -ENOMEM;
                *fds = p;
                (*fds)[(*n)++] = fd;
        }
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(msg);
}

/* One option's value, of the type add-options.h gives it, into the request. */
static int read_option(sd_bus_message *msg, const struct ublk_option *o, struct add_request *req,
                       sd_bus_error *error)
{
        _cleanup_free_ int *fds = NULL;
        union ublk_opt_value v = {};
        char why[256];
        uint32_t u;
        int b, r;

        switch (o->kind) {
        case UBLK_OPT_STRING:
                r = sd_bus_message_read(msg, "s", &v.s);
                break;
        case UBLK_OPT_ENUM:
                r = sd_bus_message_read(msg, "s", &v.s);
                if (r >= 0 && ublk_option_parse(o, v.s, &v, why, sizeof(why)) < 0)
                        return sd_bus_error_setf(error, UBLKD_ERROR_INVALID_ARGS, "Option '%s' must be %s", o->key,
                                                 ublk_option_values(o, true, why, sizeof(why)));
                break;
        case UBLK_OPT_SIZE:
                r = sd_bus_message_read(msg, "t", &v.u);
                break;
        case UBLK_OPT_UINT:
        case UBLK_OPT_SECONDS:
                r = sd_bus_message_read(msg, "u", &u);
                v.u = u;
                break;
        case UBLK_OPT_BOOL:
                r = sd_bus_message_read(msg, "b", &b);
                v.b = b;
                break;
        case UBLK_OPT_FD:
                r = sd_bus_message_read(msg, "h", &v.fd);
                break;
        case UBLK_OPT_FDS:
                v.fds.n = 0;
                r = read_fds(msg, &fds, &v.fds.n);
                v.fds.fds = fds;
                break;
        default:
                return -EINVAL;
        }
        if (r < 0)
                return r;
        if (strcmp(o->key, "start") == 0) {
                /* What Add does, not what the device is. */
                req->start = v.b;
                return 0;
        }
        r = ublk_dev_config_set(&req->config, o, &v, why, sizeof(why));
        if (r < 0 && why[0])
                return sd_bus_error_setf(error, UBLKD_ERROR_INVALID_ARGS, "%s", why);
        return r;
}

static int parse_add_options(sd_bus_message *msg, struct add_request *req, sd_bus_error *error)
{
        const struct ublk_target_ops *target = req->config.target;
        bool seen[64] = {};
        char buf[BUS_PRINTABLE_MAX + 4];
        int r;

        r = sd_bus_message_enter_container(msg, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(msg, 'e', "sv")) > 0) {
                const struct ublk_option *o = NULL;
                const char *key, *contents;
                size_t i;

                r = sd_bus_message_read(msg, "s", &key);
                if (r < 0)
                        return r;
                for (i = 0; ublk_options[i] && i < ELEMENTSOF(seen); i++)
                        if (strcmp(ublk_options[i]->key, key) == 0) {
                                o = ublk_options[i];
                                break;
                        }
                if (!o)
                        return sd_bus_error_setf(error, UBLKD_ERROR_INVALID_ARGS,
                                                 "Unknown option '%s' (see org.ublk.ublkd1(5) for the options of Add)",
                                                 bus_printable(key, buf));
                if (seen[i])
                        return sd_bus_error_setf(error, UBLKD_ERROR_INVALID_ARGS, "Option '%s' given twice", key);
                if (!ublk_option_takes(o, target->desc))
                        return sd_bus_error_setf(error, UBLKD_ERROR_INVALID_ARGS,
                                                 "Option '%s' is not valid for target '%s'", key, target->name);
                seen[i] = true;

                r = sd_bus_message_peek_type(msg, NULL, &contents);
                if (r < 0)
                        return r;
                if (strcmp(contents, ublk_option_signature(o)) != 0)
                        return sd_bus_error_setf(error, UBLKD_ERROR_INVALID_ARGS,
                                                 "Option '%s' must be of type '%s', not '%.16s'",
                                                 key, ublk_option_signature(o), contents);
                r = sd_bus_message_enter_container(msg, 'v', contents);
                if (r < 0)
                        return r;
                r = read_option(msg, o, req, error);
                if (r < 0 || sd_bus_error_is_set(error))
                        return r < 0 ? r : -EINVAL;
                r = sd_bus_message_exit_container(msg);
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(msg);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(msg);
}

struct add_work {
        struct work work;
        struct manager *manager;
        struct managed_dev *md;
        sd_bus_message *call;
        const struct ublk_ctrl *ctrl;
        struct add_request req;
        uid_t caller_uid;
        /* Results. */
        struct ublk_dev *dev;
        struct ublk_reason why;
        const char *failed;
        char *backing;
};

/*
 * A user's device is owned by their uid and their primary group (the kernel lets only that
 * pair open it), and its name is USER:NAME (parse.h): no user can take a name (and its
 * /dev/ublk/by-name/ link) that root, or another user, means to use.
 * In the work thread: a user database lookup may go over the network.
 */
static int resolve_owner(struct ublk_dev_config *config, struct ublk_reason *why)
{
        struct passwd pw, *found = NULL;
        char buf[4096];
        size_t n;
        int r;

        r = getpwuid_r(config->owner_uid, &pw, buf, sizeof(buf), &found);
        if (r != 0 || !found) {
                snprintf(why->text, sizeof(why->text), "uid %u has no entry in the user database (%s)",
                         (unsigned) config->owner_uid, r ? strerror(r) : "not found");
                return -EINVAL;
        }
        config->owner_gid = pw.pw_gid;
        n = strlen(pw.pw_name);
        if (config->name[0] && (device_name_user_len(config->name) != n ||
                                strncmp(config->name, pw.pw_name, n) != 0)) {
                snprintf(why->text, sizeof(why->text),
                         "Names of %s's devices are '%s:NAME' (e.g. %s:disk), so that no user takes a name "
                         "meant for root or another user", pw.pw_name, pw.pw_name, pw.pw_name);
                return -EINVAL;
        }
        return 0;
}

static void add_work_free(struct add_work *a)
{
        if (!a)
                return;
        ublk_dev_config_clear(&a->req.config);
        free(a);
}

static int add_run(struct work *w)
{
        struct add_work *a = (struct add_work *) w;
        const struct ublk_target_ops *t = a->req.config.target;
        int r, fd = -1;
        char path[64];

        /* What the Backing property shows: the file of the target's positional fd (loop's), or
         * its positional string (nbd's URI, rbd's image spec). */
        if (t->desc->positional) {
                const struct ublk_option *pos = ublk_option_find(t->desc->positional);
                union ublk_opt_value v;

                fd = target_config_fd(t, a->req.config.target_config, t->desc->positional);
                if (pos && pos->kind == UBLK_OPT_STRING && t->get_option &&
                    t->get_option(a->req.config.target_config, pos, &v) >= 0 && v.s)
                        a->backing = strdup(v.s);
        }
        if (fd >= 0) {
                char buf[4096];
                ssize_t n;

                snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
                n = readlink(path, buf, sizeof(buf) - 1);
                if (n > 0) {
                        buf[n] = 0;
                        a->backing = strdup(buf);
                }
        }

        if (a->req.config.owner_uid != 0) {
                r = resolve_owner(&a->req.config, &a->why);
                if (r < 0) {
                        a->failed = "Adding the device failed";
                        return r;
                }
        }

        r = ublk_dev_add(a->ctrl, &a->req.config, &a->why, &a->dev);
        if (r < 0) {
                a->failed = "Adding the device failed";
                return r;
        }
        /* Before it is started: a crash from here on leaves a device the next ublkd can serve. */
        r = state_save(a->dev, a->backing);
        if (r < 0)
                log_warning_errno(r, "Failed to save the state of ublk device %u: a restarted ublkd will "
                                  "remove it: %m", a->dev->id);
        if (a->req.start) {
                r = ublk_dev_start(a->dev);
                if (r < 0) {
                        a->failed = "Starting the device failed";
                        /* Before the free lets the id go to another device. */
                        state_forget(a->dev->id);
                        ublk_dev_free(a->dev);
                        a->dev = NULL;
                        return r;
                }
        }
        return 0;
}

static void add_done(struct work *w, int r)
{
        struct add_work *a = (struct add_work *) w;
        struct manager *m = a->md->manager;
        struct managed_dev *md = a->md;
        _cleanup_free_ char *path = NULL;

        if (r < 0) {
                if (a->why.text[0]) {
                        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;

                        log_info("Refused to add a %s device: %s", a->req.config.target->name, a->why.text);
                        sd_bus_error_setf(&error, r == -EOPNOTSUPP ? UBLKD_ERROR_NOT_SUPPORTED :
                                                  r == -EMFILE ? UBLKD_ERROR_LIMIT_EXCEEDED : UBLKD_ERROR_INVALID_ARGS,
                                          "%s", a->why.text);
                        (void) sd_bus_reply_method_error(a->call, &error);
                } else {
                        log_error_errno(r, "%s: %m", a->failed);
                        (void) bus_reply_errno(a->call, r, a->failed);
                }
                manager_free_device(m, md);
                goto out;
        }

        md->dev = a->dev;
        md->id = md->dev->id;
        md->name = md->dev->config.name;
        md->state = md->dev->live ? MANAGED_LIVE : MANAGED_STOPPED;
        md->in_kernel = md->dev->in_kernel;
        md->backing = TAKE_PTR(a->backing);
        md->owner_gid = md->dev->config.owner_gid;
        md->flags = md->dev->info.flags;
        md->busy = NULL;
        manager_update_status(m);
        log_info("Added %s device %u%s%s%s (%s).", md->dev->config.target->name, md->id,
                 *md->name ? " \"" : "", md->name, *md->name ? "\"" : "", managed_state_to_string(md->state));
        (void) bus_device_emit_added(m, md);

        path = bus_device_path(md->id);
        if (path)
                (void) sd_bus_reply_method_return(a->call, "uo", md->id, path);
        else
                (void) bus_reply_errno(a->call, -ENOMEM, "Adding the device failed");
out:
        sd_bus_message_unref(a->call);
        free(a->backing);
        add_work_free(a);
}

/* After authorization: the limits, the name, then the work. */
static int add_begin(struct manager *m, struct add_work *a, sd_bus_message *msg, sd_bus_error *error)
{
        struct add_request *req = &a->req;
        uint64_t queue_bytes, user_bytes;
        unsigned user_devices;
        uid_t uid = a->caller_uid;
        int r;

        if (m->exiting)
                return bus_error_from_errno(error, -ESHUTDOWN, "Adding the device failed");
        queue_bytes = (uint64_t) req->config.queues * req->config.depth * UBLK_DEV_MAX_IO_BYTES;
        if (uid != 0) {
                req->config.owner_uid = uid;
                user_devices = manager_count_user_devices(m, uid, &user_bytes);
                if (user_devices >= m->user_max_devices)
                        return sd_bus_error_setf(error, UBLKD_ERROR_LIMIT_EXCEEDED,
                                                 "uid %u has %u device(s), the most ublkd allows a user (%u, "
                                                 "ublkd --user-max-devices): remove one first",
                                                 (unsigned) uid, user_devices, m->user_max_devices);
                if (user_bytes + queue_bytes > m->user_max_queue_bytes)
                        return sd_bus_error_setf(error, UBLKD_ERROR_LIMIT_EXCEEDED,
                                                 "This device's queues need %" PRIu64 " MiB of IO buffers; uid %u "
                                                 "has %" PRIu64 " MiB of the %" PRIu64 " MiB ublkd allows a user "
                                                 "(ublkd --user-max-queue-memory): use fewer queues or a "
                                                 "smaller depth, or remove a device",
                                                 queue_bytes >> 20, (unsigned) uid, user_bytes >> 20,
                                                 m->user_max_queue_bytes >> 20);
        }
        if (uid == 0 && device_name_user_len(req->config.name))
                return sd_bus_error_setf(error, UBLKD_ERROR_INVALID_ARGS,
                                         "'%s' is a name for a device of user '%.*s' (USER:NAME): root's devices "
                                         "have names without ':'", req->config.name,
                                         (int) device_name_user_len(req->config.name), req->config.name);
        if (manager_find_device_by_name(m, req->config.name))
                return sd_bus_error_setf(error, UBLKD_ERROR_EXISTS,
                                         "A device named '%s' exists already (remove it or pick another name)",
                                         req->config.name);

        if (m->ctrl.fd < 0) {
                r = ublk_ctrl_open(&m->ctrl);
                if (r == -ENOENT || r == -ENODEV)
                        return sd_bus_error_setf(error, UBLKD_ERROR_NOT_SUPPORTED,
                                                 "Cannot open /dev/ublk-control: the ublk kernel driver is "
                                                 "not loaded (modprobe ublk_drv)");
                if (r < 0)
                        return bus_error_from_errno(error, r, "Cannot open /dev/ublk-control");
        }

        /* The name is taken from here on, though the device is not on the bus until it exists. */
        a->md = manager_new_device(m, req->config.name);
        if (!a->md)
                return -ENOMEM;
        a->md->busy = "being added";
        a->md->owner_uid = uid;
        a->md->queue_bytes = queue_bytes;
        a->ctrl = &m->ctrl;
        a->call = sd_bus_message_ref(msg);
        a->work.run = add_run;
        a->work.done = add_done;
        snprintf(a->work.what, sizeof(a->work.what), "adding a %s device", req->config.target->name);
        r = work_start(m, &a->work);
        if (r < 0) {
                a->call = sd_bus_message_unref(a->call);
                manager_free_device(m, a->md);
                a->md = NULL;
                return bus_error_from_errno(error, r, "Adding the device failed");
        }
        return 1;       /* answered by add_done(), which frees a */
}

static void add_authorized(sd_bus_message *msg, int r, const sd_bus_error *auth_error, void *userdata)
{
        struct add_work *a = userdata;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;

        if (r > 0) {
                r = add_begin(a->manager, a, msg, &error);
                if (r > 0)
                        return;
                if (!sd_bus_error_is_set(&error))
                        bus_error_from_errno(&error, r, "Adding the device failed");
                (void) sd_bus_reply_method_error(msg, &error);
        } else
                (void) sd_bus_reply_method_error(msg, auth_error);
        add_work_free(a);
}

static int method_add(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        struct manager *m = userdata;
        struct add_work *a = NULL;
        const struct ublk_target_ops *target;
        struct add_request *req;
        const char *target_name, *reason;
        char buf[BUS_PRINTABLE_MAX + 4];
        int r;

        a = calloc(1, sizeof(*a));
        if (!a)
                return -ENOMEM;
        a->manager = m;
        req = &a->req;
        req->start = true;
        ublk_dev_config_init(&req->config);

        r = sd_bus_message_read(msg, "s", &target_name);
        if (r < 0)
                goto fail;
        target = target_find(target_name);
        if (!target) {
                r = sd_bus_error_setf(error, UBLKD_ERROR_INVALID_ARGS,
                                      "Unknown target '%s' (the Targets property lists them)",
                                      bus_printable(target_name, buf));
                goto fail;
        }
        r = ublk_dev_config_set_target(&req->config, target);
        if (r < 0)
                goto fail;

        r = parse_add_options(msg, req, error);
        if (r < 0 || sd_bus_error_is_set(error))
                goto fail;
        if (ublk_dev_config_validate(&req->config, &reason) < 0) {
                r = sd_bus_error_setf(error, UBLKD_ERROR_INVALID_ARGS, "Invalid options: %s", reason);
                goto fail;
        }

        r = bus_caller_uid(msg, &a->caller_uid, error);
        if (r < 0)
                goto fail;
        r = bus_authorize(m, msg, a->caller_uid, POLKIT_ACTION_ADD_DEVICE, "add devices", "", add_authorized, a,
                          error);
        if (r < 0 || sd_bus_error_is_set(error))
                goto fail;
        if (r == 0)
                return 1;       /* add_authorized() goes on */
        r = add_begin(m, a, msg, error);
        if (r > 0)
                return 1;
fail:
        add_work_free(a);
        return r;
}

static int reply_device_path(sd_bus_message *msg, struct managed_dev *md, sd_bus_error *error, const char *what)
{
        _cleanup_free_ char *path = NULL;

        if (!md || !md->dev)
                return sd_bus_error_setf(error, UBLKD_ERROR_NO_SUCH_DEVICE, "No such device: %s", what);
        path = bus_device_path(md->id);
        if (!path)
                return -ENOMEM;
        return sd_bus_reply_method_return(msg, "o", path);
}

static int method_get_device(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        uint32_t id;
        char what[16];
        int r;

        r = sd_bus_message_read(msg, "u", &id);
        if (r < 0)
                return r;
        snprintf(what, sizeof(what), "%u", id);
        return reply_device_path(msg, manager_find_device(userdata, id), error, what);
}

static int method_get_device_by_name(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        const char *name;
        char buf[BUS_PRINTABLE_MAX + 4], what[BUS_PRINTABLE_MAX + 6];
        int r;

        r = sd_bus_message_read(msg, "s", &name);
        if (r < 0)
                return r;
        snprintf(what, sizeof(what), "'%s'", bus_printable(name, buf));
        return reply_device_path(msg, manager_find_device_by_name(userdata, name), error, what);
}

static int method_list_devices(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        struct manager *m = userdata;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r;

        r = sd_bus_message_new_method_return(msg, &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(reply, 'a', "(usssso)");
        if (r < 0)
                return r;
        for (struct managed_dev *d = m->devices; d; d = d->next) {
                _cleanup_free_ char *path = NULL;
                char blk[32];

                if (!d->dev)
                        continue;       /* still being added */
                path = bus_device_path(d->id);
                if (!path)
                        return -ENOMEM;
                snprintf(blk, sizeof(blk), "/dev/ublkb%u", d->id);
                r = sd_bus_message_append(reply, "(usssso)", d->id, d->name, d->dev->config.target->name,
                                          managed_state_to_string(d->state), d->state == MANAGED_LIVE ? blk : "",
                                          path);
                if (r < 0)
                        return r;
        }
        r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

static int property_get_version(sd_bus *bus, const char *path, const char *interface, const char *property,
                                sd_bus_message *reply, void *userdata, sd_bus_error *error)
{
        return sd_bus_message_append(reply, "s", PACKAGE_VERSION);
}

static int property_get_kernel_features(sd_bus *bus, const char *path, const char *interface,
                                        const char *property, sd_bus_message *reply, void *userdata,
                                        sd_bus_error *error)
{
        struct manager *m = userdata;

        if (m->ctrl.fd < 0)
                (void) ublk_ctrl_open(&m->ctrl);
        return sd_bus_message_append(reply, "t", m->ctrl.features);
}

static int property_get_targets(sd_bus *bus, const char *path, const char *interface, const char *property,
                                sd_bus_message *reply, void *userdata, sd_bus_error *error)
{
        return sd_bus_message_append_strv(reply, (char **) target_names());
}

static const sd_bus_vtable manager_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Version", "s", property_get_version, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("KernelFeatures", "t", property_get_kernel_features, 0, 0),
        SD_BUS_PROPERTY("Targets", "as", property_get_targets, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_METHOD_WITH_NAMES("Add", "sa{sv}", SD_BUS_PARAM(target) SD_BUS_PARAM(options),
                                 "uo", SD_BUS_PARAM(id) SD_BUS_PARAM(device),
                                 method_add, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("GetDevice", "u", SD_BUS_PARAM(id), "o", SD_BUS_PARAM(device),
                                 method_get_device, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("GetDeviceByName", "s", SD_BUS_PARAM(name), "o", SD_BUS_PARAM(device),
                                 method_get_device_by_name, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("ListDevices", "", "", "a(usssso)", SD_BUS_PARAM(devices),
                                 method_list_devices, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END
};

int bus_manager_register(struct manager *m)
{
        int r;

        r = sd_bus_add_object_vtable(m->bus, NULL, UBLKD_MANAGER_PATH, UBLKD_MANAGER_IFACE, manager_vtable, m);
        if (r < 0)
                return r;
        return sd_bus_add_object_manager(m->bus, NULL, UBLKD_MANAGER_PATH);
}
