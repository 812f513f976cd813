/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * Setting up and tearing down an io_uring, as ThreadSanitizer must see it.
 *
 * liburing maps and unmaps a ring's memory with raw system calls, which TSan
 * does not intercept.  When a ring's pages come back at the same address for
 * another thread's ring (a device's queue thread ends, then another device's
 * control command sets up its ring), TSan takes the two threads' accesses for
 * a data race.  The kernel orders an munmap before any later mmap of that
 * address; uring_exit() and uring_init() tell TSan so, through one
 * synchronisation object.  In a build without TSan they are the plain calls.
 */

#include <liburing.h>

#if defined(__SANITIZE_THREAD__)
#define UBLKD_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UBLKD_TSAN 1
#endif
#endif

#ifdef UBLKD_TSAN
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
extern char uring_map_order;
#endif

static inline int uring_init(unsigned entries, struct io_uring *ring, unsigned flags)
{
        int r = io_uring_queue_init(entries, ring, flags);

#ifdef UBLKD_TSAN
        if (r == 0)
                __tsan_acquire(&uring_map_order);
#endif
        return r;
}

static inline void uring_exit(struct io_uring *ring)
{
#ifdef UBLKD_TSAN
        __tsan_release(&uring_map_order);
#endif
        io_uring_queue_exit(ring);
}
