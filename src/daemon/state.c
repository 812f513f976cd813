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

#include "log.h"
#include "macro.h"
#include "parse.h"
#include "state.h"
#if HAVE_NBD
#include "target-nbd.h"
#endif

static int mkdir_state(void)
{
        if (mkdir("/run/ublkd", 0755) < 0 && errno != EEXIST)
                return negative_errno();
        /* Backing paths name users' files: root's eyes only. */
        if (mkdir(STATE_DIR, 0700) < 0 && errno != EEXIST)
                return negative_errno();
        return 0;
}

int state_save(const struct ublk_dev *dev, const char *backing)
{
        const struct ublk_dev_config *c = &dev->config;
        char path[64], tmp[72], msg[64];
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
        /* Names are [A-Za-z0-9._-] (checked by Add): nothing but the backing path needs care. */
        fprintf(f, "TARGET=%s\nNAME=%s\nSIZE=%" PRIu64 "\nQUEUES=%u\nDEPTH=%u\nLOGICAL_BLOCK_SIZE=%u\n"
                "READ_ONLY=%d\nOFFSET=%" PRIu64 "\nDIRECT_IO=%d\nZERO_COPY=%d\nOWNER_UID=%u\nOWNER_GID=%u\n",
                c->target->name, c->name, c->size, c->queues, c->depth, c->logical_block_size,
                c->read_only, c->offset, (int) c->direct_io, (int) c->zero_copy, (unsigned) c->owner_uid,
                (unsigned) c->owner_gid);
#if HAVE_NBD
        /* nbd's (issue 31: to move onto the target's option schema).  The URI holds no secret:
         * keys come as files.  Its sockets are not kept: root's device reconnects to the URI. */
        if (c->nbd && c->nbd->uri && !strchr(c->nbd->uri, '\n'))
                fprintf(f, "NBD_URI=%s\nNBD_CONNECT_TIMEOUT=%u\nNBD_RECONNECT_TIMEOUT=%u\n", c->nbd->uri,
                        c->nbd->connect_timeout_s, c->nbd->reconnect_timeout_s);
#endif
        if (backing) {
                fputs("BACKING=", f);
                for (const char *p = backing; *p; p++)
                        fputc(*p == '\n' ? '?' : *p, f);
                fputc('\n', f);
        }
        if (fflush(f) != 0 || fsync(fileno(f)) < 0) {
                r = negative_errno();
                fclose(f);
                (void) unlink(tmp);
                return r;
        }
        if (fclose(f) != 0 || rename(tmp, path) < 0) {
                r = negative_errno();
                (void) unlink(tmp);
                return r;
        }

        if (c->backing_fd >= 0) {
                /* FDPOLL=0: PID 1 would otherwise poll the fd (to drop it on EPOLLHUP/EPOLLERR),
                 * and polling a file calls into its file system: on FUSE a FUSE_POLL that the
                 * file system's server, maybe a user, answers when it likes, with PID 1 waiting.
                 * Our backings are files and block devices, which never hang up: nothing is lost.
                 * (systemd >= 246 knows FDPOLL; an older one ignores it.) */
                snprintf(msg, sizeof(msg), "FDSTORE=1\nFDPOLL=0\nFDNAME=backing-%u", dev->id);
                r = sd_pid_notify_with_fds(0, false, msg, &c->backing_fd, 1);
                if (r < 0)
                        log_warning_errno(r, "Failed to keep the backing fd of ublk device %u in systemd's fd "
                                          "store: a restarted ublkd cannot serve it: %m", dev->id);
                else if (r == 0)
                        log_debug("Not run by systemd: the backing of ublk device %u is not kept for a restart.",
                                  dev->id);
        }
        return 0;
}

void state_forget(uint32_t id)
{
        char path[64];

        snprintf(path, sizeof(path), STATE_DIR "/%u", id);
        (void) unlink(path);
        (void) sd_notifyf(0, "FDSTOREREMOVE=1\nFDNAME=backing-%u", id);
}

static int parse_u64(const char *s, uint64_t *ret)
{
        char *end;

        errno = 0;
        *ret = strtoull(s, &end, 10);
        return errno || end == s || *end ? -EINVAL : 0;
}

#if HAVE_NBD
static int state_load_nbd(struct ublk_dev_config *config, const char *key, const char *val)
{
        uint64_t v;

        if (!config->nbd && !(config->nbd = nbd_options_new()))
                return -ENOMEM;
        if (strcmp(key, "NBD_URI") == 0) {
                free(config->nbd->uri);
                config->nbd->uri = strdup(val);
                return config->nbd->uri ? 0 : -ENOMEM;
        }
        if (parse_u64(val, &v) < 0 || v > UINT32_MAX)
                return -EINVAL;
        if (strcmp(key, "NBD_CONNECT_TIMEOUT") == 0)
                config->nbd->connect_timeout_s = (uint32_t) v;
        else if (strcmp(key, "NBD_RECONNECT_TIMEOUT") == 0)
                config->nbd->reconnect_timeout_s = (uint32_t) v;
        return 0;
}
#endif

int state_load(uint32_t id, struct ublk_dev_config *config, char **ret_backing)
{
        _cleanup_free_ char *line = NULL;
        char path[64];
        size_t len = 0;
        uint64_t v;
        bool have_target = false;
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

                line[strcspn(line, "\n")] = 0;
                if (!eq)
                        continue;
                *eq = 0;
                val = eq + 1;
                if (strcmp(line, "TARGET") == 0) {
                        config->target = target_find(val);
                        have_target = !!config->target;
                        if (!have_target)
                                r = -EINVAL;
                } else if (strcmp(line, "NAME") == 0) {
                        if (*val && !device_name_is_valid(val))
                                r = -EINVAL;
                        else
                                snprintf(config->name, sizeof(config->name), "%s", val);
#if HAVE_NBD
                } else if (strncmp(line, "NBD_", 4) == 0) {
                        r = state_load_nbd(config, line, val);
#endif
                } else if (strcmp(line, "BACKING") == 0) {
                        free(*ret_backing);
                        *ret_backing = strdup(val);
                } else {
                        r = parse_u64(val, &v);
                        if (r < 0)
                                break;
                        if (strcmp(line, "SIZE") == 0)
                                config->size = v;
                        else if (strcmp(line, "OFFSET") == 0)
                                config->offset = v;
                        else if (v > UINT32_MAX)
                                r = -EINVAL;
                        else if (strcmp(line, "QUEUES") == 0)
                                config->queues = (uint32_t) v;
                        else if (strcmp(line, "DEPTH") == 0)
                                config->depth = (uint32_t) v;
                        else if (strcmp(line, "LOGICAL_BLOCK_SIZE") == 0)
                                config->logical_block_size = (uint32_t) v;
                        else if (strcmp(line, "READ_ONLY") == 0)
                                config->read_only = v != 0;
                        else if (strcmp(line, "DIRECT_IO") == 0 && v <= UBLK_DIRECT_IO_OFF)
                                config->direct_io = (enum ublk_direct_io) v;
                        else if (strcmp(line, "ZERO_COPY") == 0 && v <= UBLK_ZERO_COPY_OFF)
                                config->zero_copy = (enum ublk_zero_copy) v;
                        else if (strcmp(line, "OWNER_UID") == 0)
                                config->owner_uid = (uid_t) v;
                        else if (strcmp(line, "OWNER_GID") == 0)
                                config->owner_gid = (gid_t) v;
                }
        }
        fclose(f);
        if (r >= 0 && !have_target)
                r = -EINVAL;
        if (r < 0) {
                free(*ret_backing);
                *ret_backing = NULL;
                ublk_dev_config_clear(config);
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
        char *name;
} *stored;
static unsigned n_stored;

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
                uint32_t id;

                if (!stored || !names || !names[i] || strncmp(names[i], "backing-", 8) != 0 ||
                    parse_uint32(names[i] + 8, &id) < 0) {
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
                stored[n_stored++] = (struct stored_fd) { .id = id, .fd = fd, .name = names[i] };
        }
        free(names);
        log_debug("systemd passed back %u backing fd(s).", n_stored);
}

int state_fd_take(uint32_t id)
{
        for (unsigned i = 0; i < n_stored; i++)
                if (stored[i].id == id && stored[i].fd >= 0)
                        return TAKE_FD(stored[i].fd);
        return -1;
}

void state_fds_drop_unused(void)
{
        for (unsigned i = 0; i < n_stored; i++) {
                if (stored[i].fd >= 0) {
                        log_info("Dropping the stored backing fd of ublk device %u: no device is left for it.",
                                 stored[i].id);
                        safe_close(stored[i].fd);
                        (void) sd_notifyf(0, "FDSTOREREMOVE=1\nFDNAME=%s", stored[i].name);
                }
                free(stored[i].name);
        }
        free(stored);
        stored = NULL;
        n_stored = 0;
}
