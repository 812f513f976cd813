/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "add-options.h"
#include "macro.h"
#include "parse.h"

enum { TARGET_NULL, TARGET_LOOP, TARGET_NBD, TARGET_QCOW2, TARGET_RBD };

const struct ublk_target_desc ublk_target_null = {
        .name = "null",
        .summary = "completes every request at once without touching data (measures ublk itself)",
        .required = (const char *const[]) { "size", NULL },
};

const struct ublk_target_desc ublk_target_loop = {
        .name = "loop",
        .summary = "serves a regular file or a block device",
        .positional = "backing",
        .positional_metavar = "FILE",
        .required = (const char *const[]) { "backing", NULL },
};

const struct ublk_target_desc ublk_target_nbd = {
        .name = "nbd",
        .summary = "serves an export of an NBD server (nbdkit, qemu-nbd, nbd-server...)",
        .positional = "uri",
        .positional_metavar = "URI",
        .required = (const char *const[]) { "uri", NULL },
};

const struct ublk_target_desc ublk_target_rbd = {
        .name = "rbd",
        .summary = "serves an image of a Ceph cluster through librbd",
        .positional = "image-spec",
        .positional_metavar = "POOL/[NAMESPACE/]IMAGE[@SNAP]",
        .required = (const char *const[]) { "image-spec", NULL },
};

const struct ublk_target_desc ublk_target_qcow2 = {
        .name = "qcow2",
        .summary = "serves a qcow2 image (v2 or v3) and its backing chain, as qemu writes them",
        .positional = "image",
        .positional_metavar = "IMAGE",
        .required = (const char *const[]) { "image", NULL },
};

/* nbd and rbd are listed whether or not this ublkd was built with them (-Dnbd, -Drbd): ublkctl
 * speaks of them, and a ublkd without one answers "Unknown target" (its Targets property lacks
 * it). */
const struct ublk_target_desc *const ublk_targets[] = {
        [TARGET_NULL] = &ublk_target_null,
        [TARGET_LOOP] = &ublk_target_loop,
        [TARGET_NBD] = &ublk_target_nbd,
        [TARGET_QCOW2] = &ublk_target_qcow2,
        [TARGET_RBD] = &ublk_target_rbd,
        NULL,
};

static const char *const auto_on_off[] = { "auto", "on", "off", NULL };
static const char *const recovery_modes[] = { "reissue", "fail-io", "none", NULL };
static const char *const block_sizes[] = { "512", "1024", "2048", "4096", NULL };

#define LOOP UBLK_TARGET_BIT(TARGET_LOOP)
#define NBD UBLK_TARGET_BIT(TARGET_NBD)
#define QCOW2 UBLK_TARGET_BIT(TARGET_QCOW2)
#define RBD UBLK_TARGET_BIT(TARGET_RBD)

static const struct ublk_option opt_size = {
        "size", UBLK_OPT_SIZE, UBLK_OPT_NONZERO, 0, "SIZE", NULL,
        "Size in bytes, K/M/G/T/P suffixes allowed (null: required; others: default the whole backing)",
};
static const struct ublk_option opt_queues = {
        "queues", UBLK_OPT_UINT, UBLK_OPT_NONZERO, 0, "N", NULL, "Hardware queues (default 1)",
};
static const struct ublk_option opt_depth = {
        "depth", UBLK_OPT_UINT, UBLK_OPT_NONZERO, 0, "N", NULL, "Queue depth (default 128)",
};
static const struct ublk_option opt_lbs = {
        "logical-block-size", UBLK_OPT_UINT, UBLK_OPT_NONZERO, 0, "N", block_sizes,
        "512, 1024, 2048 or 4096 (default 512, or the least loop's FILE or nbd's server takes)",
};
static const struct ublk_option opt_name = {
        /* NAME.conf's name is its file's; the state file has it on a line of its own. */
        "name", UBLK_OPT_STRING, UBLK_OPT_NO_CONF | UBLK_OPT_NO_STATE, 0, "NAME", NULL,
        "A unique name for the device (USER:NAME for a user's)",
};
static const struct ublk_option opt_read_only = {
        "read-only", UBLK_OPT_BOOL, 0, 0, NULL, NULL, "Refuse writes",
};
static const struct ublk_option opt_start = {
        "start", UBLK_OPT_BOOL, UBLK_OPT_CLI_NEGATE | UBLK_OPT_NO_CONF | UBLK_OPT_NO_STATE, 0, NULL, NULL,
        "Create the device without starting it",
};
static const struct ublk_option opt_backing = {
        "backing", UBLK_OPT_FD, UBLK_OPT_FDSTORE, LOOP, "FILE", NULL,
        "The file or block device to serve, opened by ublkctl as its caller",
};
static const struct ublk_option opt_offset = {
        "offset", UBLK_OPT_SIZE, 0, LOOP, "BYTES", NULL, "Where the device starts in FILE (default 0)",
};
static const struct ublk_option opt_direct_io = {
        "direct-io", UBLK_OPT_ENUM, 0, LOOP, "auto|on|off", auto_on_off,
        "O_DIRECT on FILE (default auto: when it can)",
};
static const struct ublk_option opt_zero_copy = {
        "zero-copy", UBLK_OPT_ENUM, 0, 0, "auto|on|off", auto_on_off,
        "No copy of request data (default auto: when the kernel can)",
};
static const struct ublk_option opt_recovery = {
        /* The kernel keeps it in the device's flags, where a restarted ublkd finds it. */
        "recovery", UBLK_OPT_ENUM, UBLK_OPT_NO_STATE, 0, "reissue|fail-io|none", recovery_modes,
        "IO while ublkd restarts: waits and is reissued (default), fails, or the device stops",
};

static const struct ublk_option opt_nbd_uri = {
        "uri", UBLK_OPT_STRING, 0, NBD, "URI", NULL,
        "The export: nbd://HOST[:PORT]/EXPORT, nbds://... (TLS), nbd+unix:///EXPORT?socket=PATH",
};
static const struct ublk_option opt_nbd_sockets = {
        /* Made by ublkctl for a caller other than root (ublkd connects for root only). */
        "sockets", UBLK_OPT_FDS, UBLK_OPT_NO_CONF | UBLK_OPT_NO_STATE | UBLK_OPT_NO_CLI, NBD, "FDS", NULL,
        "Connected sockets to the server, one a queue",
};
static const struct ublk_option opt_nbd_tls_psk_file = {
        "tls-psk-file", UBLK_OPT_FD, UBLK_OPT_FD_RDONLY, NBD, "FILE", NULL,
        "The TLS pre-shared key file, opened by ublkctl as its caller",
};
static const struct ublk_option opt_connect_timeout = {
        "connect-timeout", UBLK_OPT_SECONDS, UBLK_OPT_NONZERO, NBD | RBD, "SECS", NULL,
        "Bound on connecting: each nbd connection and handshake (default 10s), rbd's cluster (30s)",
};
static const struct ublk_option opt_nbd_reconnect_timeout = {
        "reconnect-timeout", UBLK_OPT_SECONDS, 0, NBD, "SECS", NULL,
        "How long IO waits for a lost server, then fails with EIO (default 60s; 0: forever)",
};

static const struct ublk_option opt_qcow2_image = {
        "image", UBLK_OPT_FD, UBLK_OPT_FDSTORE, QCOW2, "IMAGE", NULL,
        "The qcow2 image, opened by ublkctl as its caller (its backing files too, read-only)",
};
static const struct ublk_option opt_qcow2_backing_chain = {
        /* Made by ublkctl: the files the image's backing chain names, opened as its caller. */
        "backing-chain", UBLK_OPT_FDS, UBLK_OPT_FDSTORE | UBLK_OPT_NO_CONF | UBLK_OPT_NO_STATE | UBLK_OPT_NO_CLI,
        QCOW2, "FDS", NULL,
        "The backing files the image names, each level's in turn, the base last (read-only)",
};
static const struct ublk_option opt_qcow2_metadata_cache = {
        "metadata-cache", UBLK_OPT_SIZE, UBLK_OPT_NONZERO, QCOW2, "SIZE", NULL,
        "Memory for L2 and refcount tables (default: enough to map 32G of the disk, at most 32M)",
};

/* rbd's (targets/rbd.c).  Its files are read-only to ublkctl, and never a path to ublkd. */
static const struct ublk_option opt_rbd_image = {
        "image-spec", UBLK_OPT_STRING, 0, RBD, "POOL/[NAMESPACE/]IMAGE[@SNAP]", NULL,
        "The image to serve (a snapshot: read-only)",
};
static const struct ublk_option opt_rbd_ceph_conf = {
        "ceph-conf", UBLK_OPT_FD, UBLK_OPT_FDSTORE | UBLK_OPT_FD_RDONLY, RBD, "FILE", NULL,
        "ceph.conf to use, opened by ublkctl as its caller (root's default: /etc/ceph/ceph.conf)",
};
static const struct ublk_option opt_rbd_ceph_id = {
        "ceph-id", UBLK_OPT_STRING, 0, RBD, "NAME", NULL,
        "Ceph client id, without \"client.\" (default admin)",
};
static const struct ublk_option opt_rbd_keyring = {
        "keyring", UBLK_OPT_FD, UBLK_OPT_FDSTORE | UBLK_OPT_FD_RDONLY, RBD, "FILE", NULL,
        "Keyring with the client's key, opened by ublkctl as its caller",
};
static const struct ublk_option opt_rbd_mon_host = {
        "mon-host", UBLK_OPT_STRING, 0, RBD, "ADDRS", NULL,
        "Monitor addresses (instead of or over ceph.conf's mon_host)",
};
static const struct ublk_option opt_rbd_io_timeout = {
        "io-timeout", UBLK_OPT_SECONDS, UBLK_OPT_NONZERO, RBD, "SECS", NULL,
        "IO the cluster does not answer within it fails (default 30s)",
};

const struct ublk_option *const ublk_options[] = {
        &opt_size, &opt_queues, &opt_depth, &opt_lbs, &opt_name, &opt_read_only, &opt_start,
        &opt_backing, &opt_offset, &opt_direct_io, &opt_zero_copy, &opt_recovery,
        &opt_nbd_uri, &opt_nbd_sockets, &opt_nbd_tls_psk_file, &opt_connect_timeout,
        &opt_nbd_reconnect_timeout,
        &opt_qcow2_image, &opt_qcow2_backing_chain, &opt_qcow2_metadata_cache,
        &opt_rbd_image, &opt_rbd_ceph_conf, &opt_rbd_ceph_id, &opt_rbd_keyring, &opt_rbd_mon_host,
        &opt_rbd_io_timeout,
        NULL,
};

const struct ublk_option *ublk_option_find(const char *key)
{
        for (size_t i = 0; ublk_options[i]; i++)
                if (strcmp(ublk_options[i]->key, key) == 0)
                        return ublk_options[i];
        return NULL;
}

const struct ublk_target_desc *ublk_target_find(const char *name)
{
        for (size_t i = 0; ublk_targets[i]; i++)
                if (strcmp(ublk_targets[i]->name, name) == 0)
                        return ublk_targets[i];
        return NULL;
}

const char *ublk_target_names(char *buf, size_t len)
{
        size_t pos = 0;

        buf[0] = 0;
        for (size_t i = 0; ublk_targets[i] && pos < len; i++)
                pos += (size_t) snprintf(buf + pos, len - pos, "%s%s",
                                         i == 0 ? "" : ublk_targets[i + 1] ? ", " : " or ", ublk_targets[i]->name);
        return buf;
}

int ublk_target_index(const struct ublk_target_desc *t)
{
        for (int i = 0; ublk_targets[i]; i++)
                if (ublk_targets[i] == t)
                        return i;
        return -1;
}

bool ublk_option_takes(const struct ublk_option *o, const struct ublk_target_desc *t)
{
        int i = ublk_target_index(t);

        return o->targets == 0 || (i >= 0 && (o->targets & UBLK_TARGET_BIT(i)));
}

bool ublk_target_requires(const struct ublk_target_desc *t, const char *key)
{
        for (const char *const *k = t->required; k && *k; k++)
                if (strcmp(*k, key) == 0)
                        return true;
        return false;
}

const char *ublk_option_signature(const struct ublk_option *o)
{
        static const char *const sig[_UBLK_OPT_KIND_MAX] = {
                [UBLK_OPT_STRING] = "s", [UBLK_OPT_SIZE] = "t", [UBLK_OPT_UINT] = "u",
                [UBLK_OPT_SECONDS] = "u", [UBLK_OPT_BOOL] = "b", [UBLK_OPT_ENUM] = "s",
                [UBLK_OPT_FD] = "h", [UBLK_OPT_FDS] = "ah",
        };

        return (unsigned) o->kind < _UBLK_OPT_KIND_MAX ? sig[o->kind] : "";
}

const char *ublk_option_values(const struct ublk_option *o, bool quote, char *buf, size_t len)
{
        static const char *const yes_no[] = { "yes", "no", NULL };
        const char *const *v = o->kind == UBLK_OPT_ENUM ? o->choices : yes_no;
        const char *q = quote ? "'" : "";
        size_t n = 0, pos = 0;

        while (v[n])
                n++;
        buf[0] = 0;
        for (size_t i = 0; i < n && pos < len; i++)
                pos += (size_t) snprintf(buf + pos, len - pos, "%s%s%s%s",
                                         i == 0 ? "" : i + 1 == n ? " or " : ", ", q, v[i], q);
        return buf;
}

static int parse_bool(const char *s, bool *ret)
{
        if (!strcmp(s, "yes") || !strcmp(s, "true") || !strcmp(s, "on") || !strcmp(s, "1"))
                *ret = true;
        else if (!strcmp(s, "no") || !strcmp(s, "false") || !strcmp(s, "off") || !strcmp(s, "0"))
                *ret = false;
        else
                return -EINVAL;
        return 0;
}

/* "90", "90s", "5m", "1h": seconds, at most UINT32_MAX. */
static int parse_seconds(const char *s, uint64_t *ret)
{
        static const struct { const char *suffix; unsigned mult; } units[] = {
                { "", 1 }, { "s", 1 }, { "m", 60 }, { "h", 3600 },
        };
        size_t n = strspn(s, "0123456789");
        char digits[24];
        uint32_t v;

        if (n == 0 || n >= sizeof(digits))
                return -EINVAL;
        memcpy(digits, s, n);
        digits[n] = 0;
        if (parse_uint32(digits, &v) < 0)
                return -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(units); i++)
                if (strcmp(s + n, units[i].suffix) == 0) {
                        if ((uint64_t) v * units[i].mult > UINT32_MAX)
                                return -ERANGE;
                        *ret = (uint64_t) v * units[i].mult;
                        return 0;
                }
        return -EINVAL;
}

static bool is_printable(const char *s)
{
        for (const unsigned char *p = (const unsigned char *) s; *p; p++)
                if (*p < 0x20 || *p == 0x7f)
                        return false;
        return true;
}

#define WHY(...) (snprintf(why, why_len, __VA_ARGS__), -EINVAL)

int ublk_option_parse(const struct ublk_option *o, const char *text, union ublk_opt_value *ret,
                      char *why, size_t why_len)
{
        char values[128];
        uint32_t u32;
        bool nonzero = o->flags & UBLK_OPT_NONZERO;

        *ret = (union ublk_opt_value) {};
        switch (o->kind) {
        case UBLK_OPT_STRING:
                if (!*text)
                        return WHY("must not be empty");
                if (!is_printable(text))
                        return WHY("must not hold control characters");
                ret->s = text;
                return 0;
        case UBLK_OPT_SIZE:
                if (parse_size(text, &ret->u) < 0 || (nonzero && ret->u == 0))
                        return WHY("must be a size such as %s", nonzero ? "10G or 512M" : "0 or 1M");
                return 0;
        case UBLK_OPT_UINT:
                if (parse_uint32(text, &u32) < 0 || (nonzero && u32 == 0))
                        return WHY("must be a %s number", nonzero ? "positive" : "whole");
                ret->u = u32;
                return 0;
        case UBLK_OPT_SECONDS:
                if (parse_seconds(text, &ret->u) < 0 || (nonzero && ret->u == 0))
                        return WHY("must be a %stime such as 30s, 5m or 1h", nonzero ? "non-zero " : "");
                return 0;
        case UBLK_OPT_BOOL:
                if (parse_bool(text, &ret->b) < 0)
                        return WHY("must be yes or no");
                return 0;
        case UBLK_OPT_ENUM:
                for (size_t i = 0; o->choices[i]; i++)
                        if (strcmp(text, o->choices[i]) == 0) {
                                ret->u = i;
                                return 0;
                        }
                return WHY("must be %s", ublk_option_values(o, false, values, sizeof(values)));
        case UBLK_OPT_FD:
                if (!*text)
                        return WHY("must not be empty");
                ret->s = text;
                return 0;
        default:
                return WHY("cannot be given as text");
        }
}

const char *ublk_option_state_key(const struct ublk_option *o, char *buf, size_t len)
{
        size_t i;

        for (i = 0; o->key[i] && i + 1 < len; i++)
                buf[i] = o->key[i] == '-' ? '_' : (char) toupper((unsigned char) o->key[i]);
        buf[i] = 0;
        return buf;
}

int ublk_option_to_state(const struct ublk_option *o, const union ublk_opt_value *v, char *buf, size_t len)
{
        int n;

        switch (o->kind) {
        case UBLK_OPT_STRING:
                if (!v->s || strchr(v->s, '\n'))
                        return -EINVAL;
                n = snprintf(buf, len, "%s", v->s);
                break;
        case UBLK_OPT_SIZE:
        case UBLK_OPT_UINT:
        case UBLK_OPT_SECONDS:
        case UBLK_OPT_ENUM:
                n = snprintf(buf, len, "%" PRIu64, v->u);
                break;
        case UBLK_OPT_BOOL:
                n = snprintf(buf, len, "%d", (int) v->b);
                break;
        default:
                return -EINVAL;
        }
        return n < 0 || (size_t) n >= len ? -ENOBUFS : 0;
}

int ublk_option_from_state(const struct ublk_option *o, const char *s, union ublk_opt_value *ret)
{
        uint64_t max = o->kind == UBLK_OPT_SIZE ? UINT64_MAX : UINT32_MAX;
        char *end;
        size_t n = 0;

        *ret = (union ublk_opt_value) {};
        switch (o->kind) {
        case UBLK_OPT_STRING:
                if (!*s || !is_printable(s))
                        return -EINVAL;
                ret->s = s;
                return 0;
        case UBLK_OPT_BOOL:
                if (strcmp(s, "0") != 0 && strcmp(s, "1") != 0)
                        return -EINVAL;
                ret->b = s[0] == '1';
                return 0;
        case UBLK_OPT_ENUM:
                while (o->choices[n])
                        n++;
                max = n - 1;
                __attribute__((fallthrough));
        case UBLK_OPT_SIZE:
        case UBLK_OPT_UINT:
        case UBLK_OPT_SECONDS:
                if (!isdigit((unsigned char) s[0]))
                        return -EINVAL;
                errno = 0;
                ret->u = strtoull(s, &end, 10);
                if (errno || *end || ret->u > max)
                        return -EINVAL;
                return 0;
        default:
                return -EINVAL;
        }
}
