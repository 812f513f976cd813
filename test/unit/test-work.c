/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Host unit test of work.c: runs happen off the event loop's thread and do not stall it; each
 * done() runs on the loop's thread with run()'s result; an exit asked for while works run waits
 * for them; no new work starts once exiting.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "manager.h"
#include "work.h"

static pthread_t loop_thread;
/* ticks: counted by the loop's timer, read by the works' threads. */
static atomic_uint ticks;
static unsigned dones;

/* How long a run() waits for the loop's ticks before it gives up: only a guard against a hang
 * (a stalled loop never ticks), never a measure of speed. */
#define TICK_WAIT_LIMIT_SEC 60

struct test_work {
        struct work work;
        unsigned sleep_ms;      /* run() sleeps this long, or */
        unsigned wait_ticks;    /* waits until the loop has ticked this many times */
        unsigned ticks_seen;
        int want;
        bool ran_off_loop;
};

static uint64_t now_sec(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec;
}

static int test_run(struct work *w)
{
        struct test_work *t = (struct test_work *) w;

        t->ran_off_loop = !pthread_equal(pthread_self(), loop_thread);
        if (t->wait_ticks > 0) {
                /* The loop's timer must keep ticking while this work runs: count its ticks
                 * rather than time them, so that a slow machine only takes longer. */
                uint64_t give_up = now_sec() + TICK_WAIT_LIMIT_SEC;

                while (atomic_load(&ticks) < t->wait_ticks && now_sec() < give_up)
                        usleep(1000);
                t->ticks_seen = atomic_load(&ticks);
        } else
                usleep(t->sleep_ms * 1000);
        return t->want;
}

static void test_done(struct work *w, int result)
{
        struct test_work *t = (struct test_work *) w;

        CHECK(pthread_equal(pthread_self(), loop_thread), "done() of work %d not on the loop's thread", t->want);
        CHECK(t->ran_off_loop, "run() of work %d ran on the loop's thread", t->want);
        CHECK(result == t->want, "done() got %d, run() returned %d", result, t->want);
        CHECK(t->ticks_seen >= t->wait_ticks,
              "run() of work %d saw %u ticks of the loop in %d s, it waited for %u: the loop stalled",
              t->want, t->ticks_seen, TICK_WAIT_LIMIT_SEC, t->wait_ticks);
        dones++;
        free(t);
}

static int on_tick(sd_event_source *s, uint64_t usec, void *userdata)
{
        atomic_fetch_add(&ticks, 1);
        (void) sd_event_source_set_time_relative(s, 10 * 1000);
        return sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
}

static int start_one(struct manager *m, unsigned sleep_ms, unsigned wait_ticks, int want)
{
        struct test_work *t = calloc(1, sizeof(*t));

        if (!t)
                abort();
        t->sleep_ms = sleep_ms;
        t->wait_ticks = wait_ticks;
        t->want = want;
        t->work.run = test_run;
        t->work.done = test_done;
        int r = work_start(m, &t->work);
        if (r < 0)
                free(t);
        return r;
}

static int on_exit_request(sd_event_source *s, uint64_t usec, void *userdata)
{
        return manager_begin_exit(userdata);
}

int main(void)
{
        struct manager m = { .work_efd = -1 };
        sd_event_source *tick = NULL, *quit = NULL;
        struct test_work *late;
        int r;

        loop_thread = pthread_self();
        r = sd_event_new(&m.event);
        CHECK(r >= 0, "sd_event_new: %d", r);
        r = work_setup(&m);
        CHECK(r >= 0, "work_setup: %d", r);

        /* Three works that each run until a 10 ms timer of the loop has ticked 10 times, and
         * an exit asked for at 50 ms: the loop must go on ticking while they run (their run()
         * is off its thread) and exit only once they are done. */
        for (int i = 1; i <= 3; i++)
                CHECK(start_one(&m, 0, 10, -i) == 0, "work_start %d", i);
        sd_event_add_time_relative(m.event, &tick, CLOCK_MONOTONIC, 10 * 1000, 1, on_tick, NULL);
        sd_event_add_time_relative(m.event, &quit, CLOCK_MONOTONIC, 50 * 1000, 1, on_exit_request, &m);
        r = sd_event_loop(m.event);
        CHECK(r == 0, "event loop: %d", r);
        CHECK(dones == 3, "the loop exited after %u of 3 works were done", dones);
        CHECK(atomic_load(&ticks) >= 10, "the loop exited after %u ticks, before its works were done",
              atomic_load(&ticks));

        late = calloc(1, sizeof(*late));
        late->work.run = test_run;
        late->work.done = test_done;
        CHECK(work_start(&m, &late->work) == -ESHUTDOWN, "a work started after exit began");
        free(late);

        /* work_finish_all() completes works still running at exit. */
        m.exiting = false;
        CHECK(start_one(&m, 100, 0, 7) == 0, "work_start after reset");
        work_finish_all(&m);
        CHECK(dones == 4, "work_finish_all left a work: %u done", dones);

        sd_event_source_unref(tick);
        sd_event_source_unref(quit);
        work_teardown(&m);
        sd_event_unref(m.event);
        return check_summary();
}
