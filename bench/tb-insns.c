/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * tb-insns: a QEMU TCG plugin that counts the guest instructions run at each translation block's
 * start address, for tools/bench --profile (where an IO's instructions go, by kernel function).
 *
 * Contract:
 *   qemu-system-x86_64 ... -accel tcg,thread=single -plugin tb-insns.so,dir=DIR
 *   - Every translated block gets a counter keyed by its guest virtual address; each execution of
 *     the block adds its instruction count (an inline add: no call per block). Blocks end at
 *     branches and calls, so a block's address names the function its instructions belong to.
 *   - Snapshots on request: write a NAME (letters, digits, '.', '-', '_') to DIR/request; the
 *     plugin writes DIR/NAME.snap ("ADDRESS-HEX INSTRUCTIONS\n" for every block address seen so
 *     far, totals since boot) and then removes DIR/request. The difference of two snapshots is
 *     what ran between them. The guest reaches DIR over 9p (vm-run --profile).
 *   - The counters are plain adds: with more than one TCG thread (MTTCG) two vCPUs may lose an
 *     update of the same block, so vm-run uses it with --icount (one thread for all vCPUs).
 *   - User-space addresses of all processes share counters (same address, same counter); the
 *     reader tells processes apart by their maps, where it can.
 *
 * Debian ships no qemu-plugin.h, so the few entry points used are declared here, after QEMU's
 * documentation of the plugin API (docs/devel/tcg-plugins.rst), version 1 (QEMU 4.2 to 8.0):
 * a QEMU with another API version refuses to load the plugin and says so.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
typedef struct qemu_info_t qemu_info_t;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op,
                                              void *ptr, uint64_t imm);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
void qemu_plugin_outs(const char *string);

#define EXPORT __attribute__((visibility("default")))
EXPORT int qemu_plugin_version = 1;

struct block {
        uint64_t vaddr;
        uint64_t insns;         /* added to by the translated code itself */
        struct block *next;
};

#define BUCKETS (1u << 18)
static struct block *table[BUCKETS];
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static char *dir;
static volatile bool stopping;

static unsigned bucket_of(uint64_t vaddr) {
        return (unsigned) ((vaddr * 0x9e3779b97f4a7c15ull) >> 46) & (BUCKETS - 1);
}

/* The counter of vaddr, made on first sight. A block translated again (another process at the
 * same address, a flushed cache) gets the same counter. */
static struct block *block_of(uint64_t vaddr) {
        unsigned b = bucket_of(vaddr);
        struct block *p;

        for (p = table[b]; p; p = p->next)
                if (p->vaddr == vaddr)
                        return p;
        p = calloc(1, sizeof(*p));
        if (!p)
                return NULL;
        p->vaddr = vaddr;
        p->next = table[b];
        table[b] = p;
        return p;
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
        struct block *p;

        (void) id;
        pthread_mutex_lock(&table_lock);
        p = block_of(qemu_plugin_tb_vaddr(tb));
        pthread_mutex_unlock(&table_lock);
        if (p)
                qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &p->insns,
                                                         qemu_plugin_tb_n_insns(tb));
}

static bool name_ok(const char *s) {
        if (!*s || strlen(s) > 128)
                return false;
        for (; *s; s++)
                if (!(('a' <= *s && *s <= 'z') || ('A' <= *s && *s <= 'Z') || ('0' <= *s && *s <= '9') ||
                      *s == '.' || *s == '-' || *s == '_'))
                        return false;
        return true;
}

static int write_snapshot(const char *name) {
        char tmp[4096], path[4096];
        FILE *f;
        int r = 0;

        snprintf(tmp, sizeof(tmp), "%s/.%s.snap", dir, name);
        snprintf(path, sizeof(path), "%s/%s.snap", dir, name);
        f = fopen(tmp, "w");
        if (!f)
                return -errno;
        pthread_mutex_lock(&table_lock);
        for (unsigned b = 0; b < BUCKETS; b++)
                for (struct block *p = table[b]; p; p = p->next) {
                        /* a racing add may be missed here: it lands in the next snapshot */
                        uint64_t n = __atomic_load_n(&p->insns, __ATOMIC_RELAXED);
                        if (n)
                                fprintf(f, "%llx %llu\n", (unsigned long long) p->vaddr,
                                        (unsigned long long) n);
                }
        pthread_mutex_unlock(&table_lock);
        if (fclose(f) != 0)
                r = -errno;
        if (r == 0 && rename(tmp, path) < 0)
                r = -errno;
        return r;
}

/* Polls DIR/request every millisecond of host time: the guest waits for NAME.snap meanwhile. */
static void *serve_requests(void *arg) {
        const struct timespec tick = { .tv_nsec = 1000000 };
        char req[4096], name[256];

        (void) arg;
        snprintf(req, sizeof(req), "%s/request", dir);
        while (!stopping) {
                FILE *f = fopen(req, "r");
                if (!f) {
                        nanosleep(&tick, NULL);
                        continue;
                }
                name[0] = 0;
                if (!fgets(name, sizeof(name), f))
                        name[0] = 0;
                fclose(f);
                name[strcspn(name, "\n")] = 0;
                if (!name_ok(name)) {
                        /* nothing was written yet, or garbage: look again next tick */
                        nanosleep(&tick, NULL);
                        continue;
                }
                int r = write_snapshot(name);
                if (r < 0)
                        fprintf(stderr, "tb-insns: cannot write the snapshot %s: %s\n", name, strerror(-r));
                unlink(req);
        }
        return NULL;
}

static void on_exit_qemu(qemu_plugin_id_t id, void *userdata) {
        (void) id;
        (void) userdata;
        stopping = true;
}

EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv) {
        pthread_t t;

        (void) info;
        for (int i = 0; i < argc; i++)
                if (strncmp(argv[i], "dir=", 4) == 0)
                        dir = argv[i] + 4;
        if (!dir) {
                qemu_plugin_outs("tb-insns: needs dir=DIR (where snapshots are asked for and written)\n");
                return -1;
        }
        dir = strdup(dir);
        if (!dir || pthread_create(&t, NULL, serve_requests, NULL) != 0)
                return -1;
        pthread_detach(t);
        qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
        qemu_plugin_register_atexit_cb(id, on_exit_qemu, NULL);
        return 0;
}
