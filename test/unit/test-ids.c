/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Host unit test of ids.c: an id held is never handed out again until released; the lowest
 * free one is handed out first (ADD_DEV's own order, so /dev/ublkbN numbers stay as users know
 * them); threads picking at once get distinct ids; the kernel's limit is kept.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "ids.h"

#define THREADS 4
#define PER_THREAD 500

static uint32_t picked[THREADS][PER_THREAD];

static void *pick_many(void *p)
{
        uint32_t *out = p;

        for (unsigned i = 0; i < PER_THREAD; i++)
                if (ids_hold_lowest(0, &out[i]) < 0)
                        out[i] = UINT32_MAX;
        return NULL;
}

int main(void)
{
        static unsigned char seen[THREADS * PER_THREAD];
        pthread_t t[THREADS];
        uint32_t id = UINT32_MAX;
        unsigned dup = 0, out_of_range = 0;
        int r;

        /* Lowest first, holds kept. */
        r = ids_hold_lowest(0, &id);
        CHECK(r == 0 && id == 0, "first pick: r=%d id=%u, want 0", r, id);
        r = ids_hold_lowest(0, &id);
        CHECK(r == 0 && id == 1, "second pick: r=%d id=%u, want 1", r, id);
        CHECK(ids_hold(0) == -EEXIST, "holding a held id is refused");
        CHECK(ids_hold(5) == 0, "holding a free id (5)");
        r = ids_hold_lowest(2, &id);
        CHECK(r == 0 && id == 2, "pick from 2: r=%d id=%u, want 2", r, id);
        /* "from" skips ids another program's device has (EEXIST from the kernel). */
        r = ids_hold_lowest(5, &id);
        CHECK(r == 0 && id == 6, "pick from 5 with 5 held: r=%d id=%u, want 6", r, id);

        /* A released id is the next one handed out; releasing a free id changes nothing. */
        ids_release(1);
        ids_release(1);
        ids_release(4000);
        r = ids_hold_lowest(0, &id);
        CHECK(r == 0 && id == 1, "pick after releasing 1: r=%d id=%u, want 1", r, id);
        r = ids_hold_lowest(0, &id);
        CHECK(r == 0 && id == 3, "next pick: r=%d id=%u, want 3", r, id);

        /* The kernel's limit: the last id can be held, none past it. */
        CHECK(ids_hold(UBLK_IDS_MAX) == -EINVAL, "an id past the kernel's limit is refused");
        CHECK(ids_hold(UBLK_IDS_MAX - 1) == 0, "the last id can be held");
        r = ids_hold_lowest(UBLK_IDS_MAX - 1, &id);
        CHECK(r == -ENOSPC, "no id left from the last one on: r=%d", r);
        ids_release(UBLK_IDS_MAX - 1);
        for (uint32_t i = 0; i <= 6; i++)
                ids_release(i);

        /* Concurrent picks: each id once, and no gap (the lowest are taken). */
        for (unsigned i = 0; i < THREADS; i++)
                pthread_create(&t[i], NULL, pick_many, picked[i]);
        for (unsigned i = 0; i < THREADS; i++)
                pthread_join(t[i], NULL);
        for (unsigned i = 0; i < THREADS; i++)
                for (unsigned j = 0; j < PER_THREAD; j++) {
                        uint32_t v = picked[i][j];

                        if (v >= THREADS * PER_THREAD)
                                out_of_range++;
                        else if (seen[v]++)
                                dup++;
                }
        CHECK(dup == 0 && out_of_range == 0, "%u threads picking %u ids each: %u duplicates, %u past %u",
              THREADS, PER_THREAD, dup, out_of_range, THREADS * PER_THREAD - 1);

        return check_summary();
}
