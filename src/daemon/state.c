/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "add-options.h"
#include "log.h"
#include "macro.h"
#include "parse.h"
#include "state.h"

static int mkdir_state(void)
{
        if (mkdir("/run/ublkd", 0755) < 0 && errno != EEXIST)
                return negative_errno();
        /* Backing paths name users' files: root's eyes only. */
        if (mkdir(STATE_DIR, 0700) < 0 && errno != EEXIST)
                return negative_errno();
        return 0;
}

/* Each option of the device's target that the state file holds, as KEY=VALUE (add-options.h). */
static int save_options(FILE *f, const struct ublk_dev_config *c)
{
        for (size_t i = 0; ublk_options[i]; i++) {
                const struct ublk_option *o = ublk_options[i];
                union ublk_opt_value v;
                char key[64], val[256];
                int r;

                if (!ublk_option_takes(o, c->target->desc) || (o->flags & UBLK_OPT_NO_STATE) ||
                    o->kind == UBLK_OPT_FD || o->kind == UBLK_OPT_FDS)
                        continue;
                if (ublk_dev_config_get(c, o, &v) < 0)
                        continue;
                r = ublk_option_to_state(o, &v, val, sizeof(val));
                if (r < 0)
                        return r;
                fprintf(f, "%s=%s\n", ublk_option_state_key(o, key, sizeof(key)), val);
        }
        return 0;
}

/* One fd into the store as name; a failure is said once per option (store_fds()). */
static int store_fd(int fd, const char *name)
{
        char msg[128];

        /* FDPOLL=0: PID 1 would otherwise poll the fd (to drop it on EPOLLHUP/EPOLLERR),
         * and polling a file calls into its file system: on FUSE a FUSE_POLL that the
         * file system's server, maybe a user, answers when it likes, with PID 1 waiting.
         * Our stored fds are files and block devices, which never hang up: nothing is lost.
         * (systemd >= 246 knows FDPOLL; an older one ignores it.) */
        snprintf(msg, sizeof(msg), "FDSTORE=1\nFDPOLL=0\nFDNAME=%s", name);
        return sd_pid_notify_with_fds(0, false, msg, &fd, 1);
}

/* The fds of the options that are kept across a restart, in systemd's fd store as KEY-ID, or
 * KEY-ID-N for the Nth of an FDS option's. */
static void store_fds(const struct ublk_dev *dev)
{
        for (size_t i = 0; ublk_options[i]; i++) {
                const struct ublk_option *o = ublk_options[i];
                union ublk_opt_value v;
                char name[96];
                int r = 0;

                if (!(o->flags & UBLK_OPT_FDSTORE) || !ublk_option_takes(o, dev->config.target->desc) ||
                    ublk_dev_config_get(&dev->config, o, &v) < 0)
                        continue;
                if (o->kind == UBLK_OPT_FD) {
                        snprintf(name, sizeof(name), "%s-%u", o->key, dev->id);
                        r = store_fd(v.fd, name);
                } else if (o->kind == UBLK_OPT_FDS) {
                        if (v.fds.n > UBLK_FDSTORE_FDS_MAX)
                                r = -E2BIG;
                        for (unsigned n = 0; r >= 0 && n < v.fds.n; n++) {
                                snprintf(name, sizeof(name), "%s-%u-%u", o->key, dev->id, n);
                                r = store_fd(v.fds.fds[n], name);
                        }
                } else
                        continue;
                if (r < 0)
                        log_warning_errno(r, "Failed to keep the %s fd of ublk device %u in systemd's fd "
                                          "store: a restarted ublkd cannot serve it: %m", o->key, dev->id);
                else if (r == 0)
                        log_debug("Not run by systemd: the %s fd of ublk device %u is not kept for a restart.",
                                  o->key, dev->id);
        }
}

int state_save(const struct ublk_dev *dev, const char *backing)
{
        const struct ublk_dev_config *c = &dev->config;
        char path[64], tmp[72];
        FILE *f;
        int r;

        r = mkdir_state();
        if (r < 0)
                return r;
        snprintf(path, sizeof(path), STATE_DIR "/%u", dev->id);
        snprintf(tmp, sizeof(tmp), "%s.tmp", path);
        f = fopen(tmp, "we");
        if (!f)
                return negative_errno();
        /* TARGET first: the options after it are its.  Names are [A-Za-z0-9._-] (checked by Add):
         * nothing but the backing path needs care. */
        fprintf(f, "TARGET=%s\nNAME=%s\nOWNER_UID=%u\nOWNER_GID=%u\n",
                c->target->name, c->name, (unsigned) c->owner_uid, (unsigned) c->owner_gid);
        r = save_options(f, c);
        if (backing) {
                fputs("BACKING=", f);
                for (const char *p = backing; *p; p++)
                        fputc(*p == '\n' ? '?' : *p, f);
                fputc('\n', f);
        }
        if (r < 0 || fflush(f) != 0 || fsync(fileno(f)) < 0) {
                r = r < 0 ? r : negative_errno();
                fclose(f);
                (void) unlink(tmp);
                return r;
        }
        if (fclose(f) != 0 || rename(tmp, path) < 0) {
                r = negative_errno();
                (void) unlink(tmp);
                return r;
        }
        store_fds(dev);
        return 0;
}

void state_forget(uint32_t id)
{
        char path[64];

        snprintf(path, sizeof(path), STATE_DIR "/%u", id);
        (void) unlink(path);
        for (size_t i = 0; ublk_options[i]; i++) {
                const struct ublk_option *o = ublk_options[i];

                if (!(o->flags & UBLK_OPT_FDSTORE))
                        continue;
                if (o->kind == UBLK_OPT_FD)
                        (void) sd_notifyf(0, "FDSTOREREMOVE=1\nFDNAME=%s-%u", o->key, id);
                else
                        /* How many there were is not known here; removing a name never stored is
                         * a no-op for systemd. */
                        for (unsigned n = 0; n < UBLK_FDSTORE_FDS_MAX; n++)
                                (void) sd_notifyf(0, "FDSTOREREMOVE=1\nFDNAME=%s-%u-%u", o->key, id, n);
        }
}

/* An option of config's target by its state file key. */
static const struct ublk_option *state_option(const struct ublk_dev_config *config, const char *key)
{
        char buf[64];

        for (size_t i = 0; ublk_options[i]; i++)
                if (ublk_option_takes(ublk_options[i], config->target->desc) &&
                    strcmp(ublk_option_state_key(ublk_options[i], buf, sizeof(buf)), key) == 0)
                        return ublk_options[i];
        return NULL;
}

int state_load(uint32_t id, struct ublk_dev_config *config, char **ret_backing)
{
        _cleanup_free_ char *line = NULL;
        char path[64], why[256];
        size_t len = 0;
        uint32_t u;
        FILE *f;
        int r = 0;

        snprintf(path, sizeof(path), STATE_DIR "/%u", id);
        f = fopen(path, "re");
        if (!f)
                return negative_errno();
        ublk_dev_config_init(config);
        *ret_backing = NULL;
        while (r >= 0 && getline(&line, &len, f) > 0) {
                char *eq = strchr(line, '='), *val;
                const struct ublk_option *o;
                union ublk_opt_value v;

                line[strcspn(line, "\n")] = 0;
                if (!eq)
                        continue;
                *eq = 0;
                val = eq + 1;
                if (strcmp(line, "TARGET") == 0) {
                        const struct ublk_target_ops *t = target_find(val);

                        r = t && !config->target ? ublk_dev_config_set_target(config, t) : -EINVAL;
                } else if (!config->target)
                        r = -EINVAL;    /* the target's options follow its name */
                else if (strcmp(line, "NAME") == 0) {
                        if (*val && !device_name_is_valid(val))
                                r = -EINVAL;
                        else
                                snprintf(config->name, sizeof(config->name), "%s", val);
                } else if (strcmp(line, "BACKING") == 0) {
                        free(*ret_backing);
                        *ret_backing = strdup(val);
                } else if (strcmp(line, "OWNER_UID") == 0) {
                        r = parse_uint32(val, &u);
                        config->owner_uid = (uid_t) u;
                } else if (strcmp(line, "OWNER_GID") == 0) {
                        r = parse_uint32(val, &u);
                        config->owner_gid = (gid_t) u;
                } else if ((o = state_option(config, line))) {
                        r = ublk_option_from_state(o, val, &v);
                        if (r >= 0)
                                r = ublk_dev_config_set(config, o, &v, why, sizeof(why));
                }
                /* A key this ublkd does not know (a newer one's) is left alone. */
        }
        fclose(f);
        if (r >= 0 && !config->target)
                r = -EINVAL;
        if (r < 0) {
                ublk_dev_config_clear(config);
                free(*ret_backing);
                *ret_backing = NULL;
        }
        return r;
}

static int cmp_u32(const void *a, const void *b)
{
        uint32_t x = *(const uint32_t *) a, y = *(const uint32_t *) b;

        return x < y ? -1 : x > y;
}

int list_ids(const char *dir, const char *prefix, uint32_t **ret, unsigned *ret_n)
{
        size_t plen = strlen(prefix);
        uint32_t *ids = NULL, id;
        unsigned n = 0;
        struct dirent *de;
        DIR *d;

        *ret = NULL;
        *ret_n = 0;
        d = opendir(dir);
        if (!d)
                return errno == ENOENT ? 0 : negative_errno();
        while ((de = readdir(d))) {
                uint32_t *p;

                /* Skips ".", "..", and a "N.tmp" a crash left. */
                if (strncmp(de->d_name, prefix, plen) != 0 || parse_uint32(de->d_name + plen, &id) < 0)
                        continue;
                p = realloc(ids, (n + 1) * sizeof(*ids));
                if (!p) {
                        free(ids);
                        closedir(d);
                        return -ENOMEM;
                }
                ids = p;
                ids[n++] = id;
        }
        closedir(d);
        if (n)
                qsort(ids, n, sizeof(*ids), cmp_u32);
        *ret = ids;
        *ret_n = n;
        return 0;
}

static struct stored_fd {
        uint32_t id;
        int fd;
        int index;              /* the Nth of an FDS option's; -1 for an FD option's */
        const char *key;        /* an option's, UBLK_OPT_FDSTORE */
        char *name;             /* KEY-ID or KEY-ID-N */
} *stored;
static unsigned n_stored;

int state_fd_name_parse(const char *name, const struct ublk_option **ret, uint32_t *id, int *index)
{
        /* Keys hold dashes ("backing-chain"): each kept option's key is tried as a prefix, and
         * what follows must be exactly what its kind's names have. */
        for (size_t i = 0; name && ublk_options[i]; i++) {
                const struct ublk_option *o = ublk_options[i];
                size_t len = strlen(o->key);
                char idbuf[16];
                const char *rest, *dash;
                uint32_t n;

                if (!(o->flags & UBLK_OPT_FDSTORE) || strncmp(name, o->key, len) != 0 || name[len] != '-')
                        continue;
                rest = name + len + 1;
                if (o->kind == UBLK_OPT_FD) {
                        if (parse_uint32(rest, id) < 0)
                                continue;
                        *index = -1;
                } else if (o->kind == UBLK_OPT_FDS) {
                        dash = strchr(rest, '-');
                        if (!dash || (size_t) (dash - rest) >= sizeof(idbuf))
                                continue;
                        memcpy(idbuf, rest, (size_t) (dash - rest));
                        idbuf[dash - rest] = 0;
                        if (parse_uint32(idbuf, id) < 0 || parse_uint32(dash + 1, &n) < 0 ||
                            n >= UBLK_FDSTORE_FDS_MAX)
                                continue;
                        *index = (int) n;
                } else
                        continue;
                *ret = o;
                return 0;
        }
        return -EINVAL;
}

void state_fds_load(void)
{
        char **names = NULL;
        int n;

        n = sd_listen_fds_with_names(true, &names);
        if (n <= 0)
                return;
        stored = calloc((size_t) n, sizeof(*stored));
        for (int i = 0; i < n; i++) {
                int fd = SD_LISTEN_FDS_START + i;
                const struct ublk_option *o = NULL;
                uint32_t id = 0;
                int index = -1;

                if (stored && names && state_fd_name_parse(names[i], &o, &id, &index) < 0)
                        o = NULL;
                if (!o) {
                        log_warning("systemd passed fd %d named '%s' that ublkd does not know: closing it.", fd,
                                    names && names[i] ? names[i] : "");
                        (void) fcntl(fd, F_SETFD, FD_CLOEXEC);
                        safe_close(fd);
                        if (names && names[i])
                                (void) sd_notifyf(0, "FDSTOREREMOVE=1\nFDNAME=%s", names[i]);
                        free(names ? names[i] : NULL);
                        continue;
                }
                (void) fcntl(fd, F_SETFD, FD_CLOEXEC);
                stored[n_stored++] = (struct stored_fd) {
                        .id = id, .fd = fd, .index = index, .key = o->key, .name = names[i],
                };
        }
        free(names);
        log_debug("systemd passed back %u fd(s).", n_stored);
}

int state_fd_take(const char *key, uint32_t id)
{
        for (unsigned i = 0; i < n_stored; i++)
                if (stored[i].id == id && stored[i].fd >= 0 && stored[i].index < 0 && strcmp(stored[i].key, key) == 0)
                        return TAKE_FD(stored[i].fd);
        return -1;
}

static int stored_fds_find(const char *key, uint32_t id, int index)
{
        for (unsigned i = 0; i < n_stored; i++)
                if (stored[i].id == id && stored[i].fd >= 0 && stored[i].index == index &&
                    strcmp(stored[i].key, key) == 0)
                        return (int) i;
        return -1;
}

int state_fds_take(const char *key, uint32_t id, int **ret, unsigned *ret_n)
{
        unsigned n = 0, highest = 0;
        bool any = false;
        int *fds;

        *ret = NULL;
        *ret_n = 0;
        for (unsigned i = 0; i < n_stored; i++)
                if (stored[i].id == id && stored[i].fd >= 0 && stored[i].index >= 0 &&
                    strcmp(stored[i].key, key) == 0) {
                        any = true;
                        if ((unsigned) stored[i].index > highest)
                                highest = (unsigned) stored[i].index;
                }
        if (!any)
                return 0;
        /* All of 0..highest, or none: a gap means the store lost one, and fds in the wrong
         * order would be a different chain. */
        for (n = 0; n <= highest; n++)
                if (stored_fds_find(key, id, (int) n) < 0)
                        return -ENOENT;
        fds = calloc(n, sizeof(int));
        if (!fds)
                return -ENOMEM;
        for (unsigned k = 0; k < n; k++)
                fds[k] = TAKE_FD(stored[stored_fds_find(key, id, (int) k)].fd);
        *ret = fds;
        *ret_n = n;
        return 0;
}

void state_fds_drop_unused(void)
{
        for (unsigned i = 0; i < n_stored; i++) {
                if (stored[i].fd >= 0) {
                        log_info("Dropping the stored %s fd of ublk device %u: no device is left for it.",
                                 stored[i].key, stored[i].id);
                        safe_close(stored[i].fd);
                        (void) sd_notifyf(0, "FDSTOREREMOVE=1\nFDNAME=%s", stored[i].name);
                }
                free(stored[i].name);
        }
        free(stored);
        stored = NULL;
        n_stored = 0;
}
