/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * Control operations that can block in the kernel -- START_DEV waits for
 * every queue, DEL_DEV for the char device to be released, STOP_DEV for
 * in-flight IO, and a backing file on a stalled network filesystem can stall
 * anything -- run in a thread of their own, so that the event loop keeps
 * answering every other caller meanwhile.
 *
 * work_start() runs w->run() in a new thread; when it returns, the event loop
 * calls w->done() with its result, and done() frees w.  run() must not touch
 * the bus or the manager's lists: it only sees what w carries.  Callers keep
 * to one work per device at a time.  A work still running after
 * WORK_SLOW_SEC is logged with the kernel stacks of ublkd's threads (and
 * again at each multiple): a kernel command that does not return is a bug
 * somewhere, and the stacks say where.
 */

#include <pthread.h>
#include <stdbool.h>
#include <systemd/sd-event.h>

struct manager;

struct work {
        int (*run)(struct work *w);
        void (*done)(struct work *w, int result);
        char what[64];          /* for the log: "starting ublk device 3" */

        /* Owned by work.c. */
        struct manager *manager;
        pthread_t thread;
        sd_event_source *slow_timer;
        unsigned slow_reports;
        int result;
        bool finished;
        struct work *next;
};

#define WORK_SLOW_SEC 15

int work_setup(struct manager *m);
/* -ESHUTDOWN once the manager is exiting. */
int work_start(struct manager *m, struct work *w);
bool work_running(struct manager *m);
/* At exit: waits for every running work and completes it. */
void work_finish_all(struct manager *m);
void work_teardown(struct manager *m);

/*
 * pthread_create() with every signal blocked in the new thread: signals
 * belong to the event loop (signalfd), and threads started by this one
 * inherit its mask.  Returns 0 or a negative errno.
 */
int thread_create_nosignals(pthread_t *thread, void *(*fn)(void *), void *arg);
