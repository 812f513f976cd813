/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "log.h"
#include "macro.h"
#include "manager.h"
#include "work.h"

static void *work_thread(void *p)
{
        struct work *w = p;
        struct manager *m = w->manager;
        uint64_t one = 1;
        int r;

        r = w->run(w);

        pthread_mutex_lock(&m->work_lock);
        w->result = r;
        w->finished = true;
        pthread_mutex_unlock(&m->work_lock);
        /* Cannot fail short of a bug: the counter would need 2^64 completions to overflow. */
        (void) !write(m->work_efd, &one, sizeof(one));
        return NULL;
}

/* Takes a finished work off the list (with any: any work), or returns NULL. */
static struct work *work_take(struct manager *m, bool any)
{
        struct work *w = NULL;

        pthread_mutex_lock(&m->work_lock);
        for (struct work **p = &m->works; *p; p = &(*p)->next)
                if ((*p)->finished || any) {
                        w = *p;
                        *p = w->next;
                        break;
                }
        pthread_mutex_unlock(&m->work_lock);
        return w;
}

/* Logs what every thread of ublkd is waiting for in the kernel (needs CAP_SYS_ADMIN). */
static void log_thread_stacks(void)
{
        DIR *d = opendir("/proc/self/task");
        struct dirent *de;

        if (!d)
                return;
        while ((de = readdir(d))) {
                char path[320], comm[32] = "", line[256];
                FILE *f;

                if (de->d_name[0] == '.')
                        continue;
                snprintf(path, sizeof(path), "/proc/self/task/%s/comm", de->d_name);
                f = fopen(path, "re");
                if (f) {
                        if (fgets(comm, sizeof(comm), f))
                                comm[strcspn(comm, "\n")] = 0;
                        fclose(f);
                }
                snprintf(path, sizeof(path), "/proc/self/task/%s/stack", de->d_name);
                f = fopen(path, "re");
                if (!f)
                        continue;
                log_warning("  thread %s (%s):", de->d_name, comm);
                for (int n = 0; n < 16 && fgets(line, sizeof(line), f); n++) {
                        line[strcspn(line, "\n")] = 0;
                        log_warning("    %s", line);
                }
                fclose(f);
        }
        closedir(d);
}

static int on_work_slow(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct work *w = userdata;

        w->slow_reports++;
        log_warning("Still %s after %u s; the kernel stacks of ublkd's threads:", w->what,
                    w->slow_reports * WORK_SLOW_SEC);
        log_thread_stacks();
        (void) sd_event_source_set_time_relative(s, WORK_SLOW_SEC * UINT64_C(1000000));
        return sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
}

static void work_complete(struct work *w)
{
        pthread_join(w->thread, NULL);
        w->slow_timer = sd_event_source_disable_unref(w->slow_timer);
        if (w->slow_reports)
                log_info("Done %s after all.", w->what);
        /* Set before finished was, under the lock; read after the join. */
        w->done(w, w->result);
}

static int on_work_finished(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct manager *m = userdata;
        uint64_t n;
        struct work *w;

        (void) !read(fd, &n, sizeof(n));
        while ((w = work_take(m, false)))
                work_complete(w);
        if (m->exiting && !work_running(m))
                return sd_event_exit(m->event, 0);
        return 0;
}

bool work_running(struct manager *m)
{
        bool r;

        pthread_mutex_lock(&m->work_lock);
        r = m->works != NULL;
        pthread_mutex_unlock(&m->work_lock);
        return r;
}

int work_setup(struct manager *m)
{
        int r;

        r = pthread_mutex_init(&m->work_lock, NULL);
        if (r != 0)
                return -r;
        m->work_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (m->work_efd < 0)
                return negative_errno();
        return sd_event_add_io(m->event, &m->work_source, m->work_efd, EPOLLIN, on_work_finished, m);
}

int thread_create_nosignals(pthread_t *thread, void *(*fn)(void *), void *arg)
{
        sigset_t all, saved;
        int r;

        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &saved);
        r = -pthread_create(thread, NULL, fn, arg);
        pthread_sigmask(SIG_SETMASK, &saved, NULL);
        return r;
}

int work_start(struct manager *m, struct work *w)
{
        int r;

        if (m->exiting)
                return -ESHUTDOWN;
        w->manager = m;
        w->finished = false;
        pthread_mutex_lock(&m->work_lock);
        w->next = m->works;
        m->works = w;
        pthread_mutex_unlock(&m->work_lock);

        r = thread_create_nosignals(&w->thread, work_thread, w);
        if (r >= 0)
                /* Not being told is no reason to fail the operation. */
                (void) sd_event_add_time_relative(m->event, &w->slow_timer, CLOCK_MONOTONIC,
                                                  WORK_SLOW_SEC * UINT64_C(1000000), UINT64_C(1000000), on_work_slow, w);
        if (r < 0) {
                pthread_mutex_lock(&m->work_lock);
                for (struct work **p = &m->works; *p; p = &(*p)->next)
                        if (*p == w) {
                                *p = w->next;
                                break;
                        }
                pthread_mutex_unlock(&m->work_lock);
        }
        return r;
}

void work_finish_all(struct manager *m)
{
        struct work *w;

        if (m->work_efd < 0)
                return;
        pthread_mutex_lock(&m->work_lock);
        if (m->works)
                log_info("Waiting for the device operations in progress to end.");
        pthread_mutex_unlock(&m->work_lock);
        while ((w = work_take(m, true)))
                work_complete(w);
}

void work_teardown(struct manager *m)
{
        m->work_source = sd_event_source_disable_unref(m->work_source);
        m->work_efd = safe_close(m->work_efd);
}
