/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "ids.h"

/* A bitmap of the ids held, grown as ids get larger: a daemon holds few, and low ones. */
static pthread_mutex_t ids_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t *ids_words;
static uint32_t ids_n_words;

static int ids_grow_locked(uint32_t id)
{
        uint32_t n = id / 64 + 1;
        uint64_t *words;

        if (n <= ids_n_words)
                return 0;
        n = n < 2 * ids_n_words ? 2 * ids_n_words : n;
        words = realloc(ids_words, n * sizeof(*words));
        if (!words)
                return -ENOMEM;
        for (uint32_t i = ids_n_words; i < n; i++)
                words[i] = 0;
        ids_words = words;
        ids_n_words = n;
        return 0;
}

static int ids_set_locked(uint32_t id)
{
        int r = ids_grow_locked(id);

        if (r < 0)
                return r;
        ids_words[id / 64] |= UINT64_C(1) << (id % 64);
        return 0;
}

static bool ids_is_held_locked(uint32_t id)
{
        return id / 64 < ids_n_words && (ids_words[id / 64] >> (id % 64)) & 1;
}

int ids_hold(uint32_t id)
{
        int r;

        if (id >= UBLK_IDS_MAX)
                return -EINVAL;
        pthread_mutex_lock(&ids_lock);
        r = ids_is_held_locked(id) ? -EEXIST : ids_set_locked(id);
        pthread_mutex_unlock(&ids_lock);
        return r;
}

int ids_hold_lowest(uint32_t from, uint32_t *ret)
{
        int r = -ENOSPC;

        pthread_mutex_lock(&ids_lock);
        for (uint32_t id = from; id < UBLK_IDS_MAX; id++) {
                if (ids_is_held_locked(id))
                        continue;
                r = ids_set_locked(id);
                if (r >= 0)
                        *ret = id;
                break;
        }
        pthread_mutex_unlock(&ids_lock);
        return r;
}

void ids_release(uint32_t id)
{
        pthread_mutex_lock(&ids_lock);
        if (id / 64 < ids_n_words)
                ids_words[id / 64] &= ~(UINT64_C(1) << (id % 64));
        pthread_mutex_unlock(&ids_lock);
}
