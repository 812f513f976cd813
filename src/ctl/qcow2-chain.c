/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "macro.h"
#include "qcow2-chain.h"

#define QCOW2_EXT_BACKING_FORMAT 0xe2792acaU

static uint32_t be32(const uint8_t *p)
{
        return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}

static uint64_t be64(const uint8_t *p)
{
        return (uint64_t) be32(p) << 32 | be32(p + 4);
}

_printf_(4, 5)
static int fail(char *err, size_t err_len, int r, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(err, err_len, fmt, ap);
        va_end(ap);
        return r;
}

/* What one level names: *name empty when none (or not qcow2), *format as its extension says. */
static int read_level(int fd, const char *path, bool *is_qcow2, char *name, size_t name_len, char *format,
                      size_t format_len, char *err, size_t err_len)
{
        uint8_t h[104], ext[8];
        uint64_t backing_off, cs, off, end;
        uint32_t backing_len, header_len, version, cluster_bits;
        ssize_t n;

        *is_qcow2 = false;
        name[0] = format[0] = 0;
        n = pread(fd, h, sizeof(h), 0);
        if (n < 0)
                return fail(err, err_len, -errno, "cannot read %s: %s", path, strerror(errno));
        if (n < 72 || memcmp(h, "QFI\xfb", 4) != 0)
                return 0;
        *is_qcow2 = true;
        version = be32(h + 4);
        backing_off = be64(h + 8);
        backing_len = be32(h + 16);
        cluster_bits = be32(h + 20);
        if (version < 2 || version > 3 || cluster_bits < 9 || cluster_bits > 21)
                return 0;       /* ublkd names what is wrong with it */
        if (version == 3 && n < 104)
                return 0;
        header_len = version == 3 ? be32(h + 100) : 72;
        if (backing_off == 0)
                return 0;
        cs = 1ULL << cluster_bits;
        if (backing_len == 0 || backing_len >= name_len || backing_off > cs || backing_len > cs - backing_off)
                return fail(err, err_len, -EINVAL, "%s: backing file name out of range (%u bytes at %llu)", path,
                            backing_len, (unsigned long long) backing_off);
        n = pread(fd, name, backing_len, (off_t) backing_off);
        if (n != (ssize_t) backing_len)
                return fail(err, err_len, n < 0 ? -errno : -EIO, "cannot read the backing file name of %s", path);
        name[backing_len] = 0;
        if (strlen(name) != backing_len)
                return fail(err, err_len, -EINVAL, "%s: backing file name holds a NUL byte", path);

        /* The extensions sit between the header and the name (or the cluster's end). */
        end = backing_off > header_len ? backing_off : cs;
        for (off = header_len; off + 8 <= end;) {
                uint32_t type, len;

                if (pread(fd, ext, sizeof(ext), (off_t) off) != (ssize_t) sizeof(ext))
                        break;
                type = be32(ext);
                len = be32(ext + 4);
                if (type == 0 || len > end - off - 8)
                        break;
                if (type == QCOW2_EXT_BACKING_FORMAT) {
                        if (len >= format_len || pread(fd, format, len, (off_t) off + 8) != (ssize_t) len)
                                return fail(err, err_len, -EINVAL, "%s: bad backing format extension", path);
                        format[len] = 0;
                        break;
                }
                off += 8 + (((uint64_t) len + 7) & ~7ULL);
        }
        return 0;
}

int qcow2_open_chain(int image_fd, const char *image_path, int *fds, unsigned max, unsigned *n,
                     char *err, size_t err_len)
{
        char paths[2][4096], name[1024], format[64];
        const char *cur = image_path;
        int fd = image_fd, r = 0;

        *n = 0;
        for (;;) {
                bool is_qcow2;
                const char *slash;
                int nfd;

                r = read_level(fd, cur, &is_qcow2, name, sizeof(name), format, sizeof(format), err, err_len);
                if (r < 0 || !is_qcow2 || !name[0])
                        break;
                /* Only plain file names: qemu's json: and protocol names are no file to open. */
                if (strncmp(name, "json:", 5) == 0 || strstr(name, "://")) {
                        r = fail(err, err_len, -EOPNOTSUPP, "%s names the backing file '%s', which is not a "
                                 "file name: not supported", cur, name);
                        break;
                }
                if (format[0] && strcmp(format, "qcow2") != 0 && strcmp(format, "raw") != 0) {
                        r = fail(err, err_len, -EOPNOTSUPP, "%s names a backing file of format '%s' (%s): only "
                                 "qcow2 and raw are served", cur, format, name);
                        break;
                }
                if (*n >= max) {
                        r = fail(err, err_len, -ELOOP, "the backing chain of %s is longer than %u files (a loop?)",
                                 image_path, max);
                        break;
                }
                slash = strrchr(cur, '/');
                if (name[0] == '/' || !slash)
                        r = snprintf(paths[*n % 2], sizeof(paths[0]), "%s", name);
                else
                        r = snprintf(paths[*n % 2], sizeof(paths[0]), "%.*s/%s", (int) (slash - cur), cur, name);
                if (r < 0 || (size_t) r >= sizeof(paths[0])) {
                        r = fail(err, err_len, -ENAMETOOLONG, "the backing file name of %s is too long", cur);
                        break;
                }
                nfd = open(paths[*n % 2], O_RDONLY | O_CLOEXEC | O_NOCTTY);
                if (nfd < 0) {
                        r = fail(err, err_len, -errno, "cannot open the backing file %s (named by %s): %s",
                                 paths[*n % 2], cur, strerror(errno));
                        break;
                }
                fds[(*n)++] = nfd;
                cur = paths[(*n - 1) % 2];
                fd = nfd;
                r = 0;
                if (strcmp(format, "raw") == 0)
                        break;  /* a raw file names nothing, whatever its first bytes look like */
        }
        if (r < 0) {
                for (unsigned i = 0; i < *n; i++)
                        safe_close(fds[i]);
                *n = 0;
        }
        return r;
}
