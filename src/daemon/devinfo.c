/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libudev.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "devinfo.h"
#include "log.h"
#include "macro.h"

static int mkdir_p(const char *path)
{
        char buf[sizeof(DEVINFO_DIR)];

        snprintf(buf, sizeof(buf), "%s", path);
        for (char *p = buf + 1; *p; p++)
                if (*p == '/') {
                        *p = 0;
                        if (mkdir(buf, 0755) < 0 && errno != EEXIST)
                                return negative_errno();
                        *p = '/';
                }
        if (mkdir(buf, 0755) < 0 && errno != EEXIST)
                return negative_errno();
        return 0;
}

int devinfo_write(uint32_t id, const char *name, const char *target, bool unprivileged)
{
        char path[64], tmp[72];
        FILE *f;
        int r;

        r = mkdir_p(DEVINFO_DIR);
        if (r < 0)
                return r;
        snprintf(path, sizeof(path), DEVINFO_DIR "/ublkb%u", id);
        snprintf(tmp, sizeof(tmp), "%s.tmp", path);
        f = fopen(tmp, "we");
        if (!f)
                return negative_errno();
        /* Names are [A-Za-z0-9._-] (checked by Add): nothing here needs quoting. */
        if (*name)
                fprintf(f, "UBLK_NAME=%s\n", name);
        fprintf(f, "UBLK_TARGET=%s\n", target);
        fprintf(f, "UBLK_UNPRIVILEGED=%d\n", unprivileged);
        if (fclose(f) != 0 || rename(tmp, path) < 0) {
                r = negative_errno();
                (void) unlink(tmp);
                return r;
        }
        return 0;
}

void devinfo_clear(void)
{
        DIR *d = opendir(DEVINFO_DIR);
        struct dirent *de;

        if (!d)
                return;
        while ((de = readdir(d)))
                if (de->d_name[0] != '.')
                        (void) unlinkat(dirfd(d), de->d_name, 0);
        closedir(d);
}

void devinfo_remove(uint32_t id)
{
        char path[64];

        snprintf(path, sizeof(path), DEVINFO_DIR "/ublkb%u", id);
        (void) unlink(path);
}

uint64_t devinfo_now_usec(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

int devinfo_wait_udev(const char *subsystem, const char *sysname, uint64_t since_usec, unsigned timeout_ms)
{
        struct udev *udev = udev_new();
        unsigned waited = 0, step = 5;

        if (!udev)
                return -ENOMEM;
        for (;;) {
                struct udev_device *d = udev_device_new_from_subsystem_sysname(udev, subsystem, sysname);
                /* A device removed and added again has the same devnum: the udev database may still
                 * hold the old one's entry until udev has handled its removal. */
                int initialized = d && udev_device_get_is_initialized(d) > 0 &&
                        udev_device_get_usec_since_initialized(d) <= devinfo_now_usec() - since_usec;

                udev_device_unref(d);
                if (initialized > 0)
                        break;
                if (waited >= timeout_ms) {
                        udev_unref(udev);
                        return -ETIMEDOUT;
                }
                (void) usleep(step * 1000);
                waited += step;
                if (step < 50)
                        step *= 2;
        }
        udev_unref(udev);
        return 0;
}
