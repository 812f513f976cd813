/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Host unit test of work.c: runs happen off the event loop's thread and do not stall it; each
 * done() runs on the loop's thread with run()'s result; an exit asked for while works run waits
 * for them; no new work starts once exiting.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "manager.h"
#include "work.h"

static pthread_t loop_thread;
static unsigned ticks, dones;

struct test_work {
        struct work work;
        unsigned sleep_ms;
        int want;
        bool ran_off_loop;
};

static int test_run(struct work *w)
{
        struct test_work *t = (struct test_work *) w;

        t->ran_off_loop = !pthread_equal(pthread_self(), loop_thread);
        usleep(t->sleep_ms * 1000);
        return t->want;
}

static void test_done(struct work *w, int result)
{
        struct test_work *t = (struct test_work *) w;

        CHECK(pthread_equal(pthread_self(), loop_thread), "done() of work %d not on the loop's thread", t->want);
        CHECK(t->ran_off_loop, "run() of work %d ran on the loop's thread", t->want);
        CHECK(result == t->want, "done() got %d, run() returned %d", result, t->want);
        dones++;
        free(t);
}

static int on_tick(sd_event_source *s, uint64_t usec, void *userdata)
{
        ticks++;
        (void) sd_event_source_set_time_relative(s, 10 * 1000);
        return sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
}

static int start_one(struct manager *m, unsigned sleep_ms, int want)
{
        struct test_work *t = calloc(1, sizeof(*t));

        if (!t)
                abort();
        t->sleep_ms = sleep_ms;
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

        /* Three works of 300 ms each, a 10 ms timer, and an exit asked for at 50 ms. */
        for (int i = 1; i <= 3; i++)
                CHECK(start_one(&m, 300, -i) == 0, "work_start %d", i);
        sd_event_add_time_relative(m.event, &tick, CLOCK_MONOTONIC, 10 * 1000, 1, on_tick, NULL);
        sd_event_add_time_relative(m.event, &quit, CLOCK_MONOTONIC, 50 * 1000, 1, on_exit_request, &m);
        r = sd_event_loop(m.event);
        CHECK(r == 0, "event loop: %d", r);
        CHECK(dones == 3, "the loop exited after %u of 3 works were done", dones);
        /* 300 ms of work with a 10 ms timer: a loop not stalled by the works ticks ~25 times. */
        CHECK(ticks >= 10, "the timer ticked only %u times while works ran", ticks);

        late = calloc(1, sizeof(*late));
        late->work.run = test_run;
        late->work.done = test_done;
        CHECK(work_start(&m, &late->work) == -ESHUTDOWN, "a work started after exit began");
        free(late);

        /* work_finish_all() completes works still running at exit. */
        m.exiting = false;
        CHECK(start_one(&m, 100, 7) == 0, "work_start after reset");
        work_finish_all(&m);
        CHECK(dones == 4, "work_finish_all left a work: %u done", dones);

        sd_event_source_unref(tick);
        sd_event_source_unref(quit);
        work_teardown(&m);
        sd_event_unref(m.event);
        return check_summary();
}
