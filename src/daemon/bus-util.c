/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <string.h>

#include "bus-util.h"
#include "macro.h"
#include "ublkd-bus.h"

int bus_error_from_errno(sd_bus_error *error, int r, const char *what)
{
        switch (-r) {
        case ENODEV:
                /* What the driver answers for an id it does not have: removed behind ublkd's back
                 * (by another program, or with the driver). */
                return sd_bus_error_setf(error, UBLKD_ERROR_NO_SUCH_DEVICE,
                                         "%s: the kernel has no such ublk device (removed outside ublkd?)", what);
        case ECANCELED:
                return sd_bus_error_setf(error, UBLKD_ERROR_KERNEL,
                                         "%s: the process ublkd ran for you was stopped or killed", what);
        case EPERM:
        case EACCES:
                return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED, "%s: %s", what, strerror(-r));
        case EBUSY:
        case EALREADY:
                return sd_bus_error_setf(error, UBLKD_ERROR_BUSY, "%s: device is busy (%s)", what, strerror(-r));
        case ESHUTDOWN:
                return sd_bus_error_setf(error, UBLKD_ERROR_BUSY,
                                         "%s: ublkd is shutting down (systemctl start ublkd, then try again)", what);
        case EOPNOTSUPP:
                return sd_bus_error_setf(error, UBLKD_ERROR_NOT_SUPPORTED,
                                         "%s: the running kernel does not support this", what);
        case EINVAL:
                return sd_bus_error_setf(error, UBLKD_ERROR_INVALID_ARGS,
                                         "%s: the kernel rejected the parameters", what);
        default:
                return sd_bus_error_setf(error, UBLKD_ERROR_KERNEL, "%s: %s", what, strerror(-r));
        }
}

/*
 * A caller's string, made fit for an error message: at most 64 characters of printable ASCII,
 * anything else as '?'.  Cutting UTF-8 at a byte count could leave half a character, and
 * sd-bus does not send a message with invalid UTF-8: the caller would get no answer at all.
 */
const char *bus_printable(const char *s, char buf[static BUS_PRINTABLE_MAX + 4])
{
        size_t i;

        for (i = 0; s[i] && i < BUS_PRINTABLE_MAX; i++)
                buf[i] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
        strcpy(buf + i, s[i] ? "..." : "");
        return buf;
}

int bus_reply_errno(sd_bus_message *msg, int r, const char *what)
{
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;

        bus_error_from_errno(&error, r, what);
        return sd_bus_reply_method_error(msg, &error);
}
