/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * The options of a new device, in one table that every place reading or writing them uses:
 * ublkd's Add (D-Bus, "a{sv}"), /etc/ublk/NAME.conf (ublk.conf(5)), "ublkctl add" (its long
 * options, its --help, its bash completion) and ublkd's state files.  Data only: ublkd and
 * ublkctl both link it; what a target does with its options is the daemon's business (target.h).
 *
 * Contract:
 *  - An option's key is its D-Bus key, its NAME.conf key and its ublkctl long option (--KEY),
 *    but for the exceptions its flags name (UBLK_OPT_CLI_NEGATE: --no-KEY; UBLK_OPT_NO_CONF;
 *    a target's positional argument, which ublkctl takes without --KEY).  Its state file key is
 *    KEY in capitals, '-' as '_'.
 *  - targets == 0: every target takes it (a common option); else only the targets whose bit
 *    (UBLK_TARGET_BIT) is set, and Add refuses it for others naming target and option.
 *  - Values (union ublk_opt_value) are borrowed from whoever parsed them (the text, the
 *    message): a target copies the strings and dups the fds it keeps.
 *  - Text forms (NAME.conf, the command line; an ENUM's string on the bus too) check what the
 *    text alone tells (UBLK_OPT_NONZERO); ranges that depend on more are the daemon's.
 *  - Text forms and state forms (the state file: plain numbers,
 *    an enum's index) each parse what the other functions print, and nothing else.
 *  - fds are never text: ublkctl opens an FD option's path itself and passes the fd; a
 *    UBLK_OPT_FDSTORE fd is kept in systemd's fd store as "KEY-ID" across a restart of ublkd,
 *    the fds of a UBLK_OPT_FDSTORE FDS option as "KEY-ID-N" (N from 0, in their order), at
 *    most UBLK_FDSTORE_FDS_MAX of them.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum ublk_opt_kind {
        UBLK_OPT_STRING,        /* "s": a non-empty string of printable characters */
        UBLK_OPT_SIZE,          /* "t": bytes; text takes K, M, G, T suffixes (parse_size()) */
        UBLK_OPT_UINT,          /* "u": a number */
        UBLK_OPT_SECONDS,       /* "u": seconds; text takes s, m, h suffixes ("90s", "5m") */
        UBLK_OPT_BOOL,          /* "b"; text: yes/no, true/false, on/off, 1/0 */
        UBLK_OPT_ENUM,          /* "s": one of choices; the value is its index */
        UBLK_OPT_FD,            /* "h": one file descriptor; text: a path ublkctl opens */
        UBLK_OPT_FDS,           /* "ah": file descriptors, e.g. connected sockets, one a queue */
        _UBLK_OPT_KIND_MAX,
};

enum {
        UBLK_OPT_NONZERO    = 1 << 0,   /* text forms refuse 0 */
        UBLK_OPT_NO_CONF    = 1 << 1,   /* not a key of NAME.conf */
        UBLK_OPT_CLI_NEGATE = 1 << 2,   /* BOOL: ublkctl has --no-KEY (sets false), not --KEY */
        UBLK_OPT_NO_STATE   = 1 << 3,   /* not in the state file (fds never are) */
        UBLK_OPT_FDSTORE    = 1 << 4,   /* FD, FDS: kept in systemd's fd store across a restart */
        UBLK_OPT_FD_RDONLY  = 1 << 5,   /* FD: ublkctl opens it for reading only (a key file) */
        UBLK_OPT_NO_CLI     = 1 << 6,   /* no --KEY: ublkctl makes the value itself (nbd's sockets) */
};

#define UBLK_TARGET_BIT(i) (1u << (i))

/* An FDS option kept in the fd store holds at most this many fds (state.c names them). */
#define UBLK_FDSTORE_FDS_MAX 32

struct ublk_option {
        const char *key;
        enum ublk_opt_kind kind;
        unsigned flags;
        unsigned targets;               /* 0: every target; else UBLK_TARGET_BIT()s */
        const char *metavar;            /* in --help: "SIZE", "N"; NULL for a BOOL */
        const char *const *choices;     /* NULL-terminated; ENUM: its values, others: what the
                                         * completion offers (any other is fine) */
        const char *help;               /* one line for --help, the man page says more */
};

struct ublk_target_desc {
        const char *name;
        const char *summary;
        /* The key of the option given as "ublkctl add NAME ARG" (loop's "backing" FILE, which
         * ublkctl opens as its caller), or NULL for none; positional_metavar names ARG. */
        const char *positional;
        const char *positional_metavar;
        /* Keys that must be given (ublkctl and NAME.conf check, ublkd refuses in its target). */
        const char *const *required;
};

union ublk_opt_value {
        uint64_t u;             /* SIZE, UINT, SECONDS; ENUM: the index in choices */
        bool b;
        const char *s;          /* STRING; FD in text form: the path */
        int fd;
        struct {
                const int *fds;
                unsigned n;
        } fds;
};

/* NULL-terminated, in the order of --help. */
extern const struct ublk_option *const ublk_options[];
/* NULL-terminated; a target's index in it is its UBLK_TARGET_BIT(). */
extern const struct ublk_target_desc *const ublk_targets[];
extern const struct ublk_target_desc ublk_target_null, ublk_target_loop, ublk_target_nbd, ublk_target_qcow2,
        ublk_target_rbd;

const struct ublk_option *ublk_option_find(const char *key);
const struct ublk_target_desc *ublk_target_find(const char *name);
/* "null, loop, ... or rbd": every target's name, for a message; returns buf. */
const char *ublk_target_names(char *buf, size_t len);
/* Index of t in ublk_targets[], or -1. */
int ublk_target_index(const struct ublk_target_desc *t);
bool ublk_option_takes(const struct ublk_option *o, const struct ublk_target_desc *t);
bool ublk_target_requires(const struct ublk_target_desc *t, const char *key);
/* The D-Bus signature of its values: "s", "t", "u", "b", "h" or "ah". */
const char *ublk_option_signature(const struct ublk_option *o);

/*
 * Text form (NAME.conf, the command line): 0, or -EINVAL with what is wrong in why, a phrase
 * that follows the key ("must be yes or no").  An FD's text is a path, returned in ->s; FDS
 * have no text form.  Strings stay text's.
 */
int ublk_option_parse(const struct ublk_option *o, const char *text, union ublk_opt_value *ret,
                      char *why, size_t why_len);
/* What an ENUM or BOOL accepts, for messages: "auto, on or off"; quoted: "'auto', 'on' or 'off'". */
const char *ublk_option_values(const struct ublk_option *o, bool quote, char *buf, size_t len);

/* State form: "KEY" as the state file has it (READ_ONLY); buf of at least 64 bytes. */
const char *ublk_option_state_key(const struct ublk_option *o, char *buf, size_t len);
/* -EINVAL for FD, FDS, and a string with a newline; -ENOBUFS when buf is short. */
int ublk_option_to_state(const struct ublk_option *o, const union ublk_opt_value *v, char *buf, size_t len);
int ublk_option_from_state(const struct ublk_option *o, const char *s, union ublk_opt_value *ret);
