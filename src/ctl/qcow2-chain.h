/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * ublkctl's side of a qcow2 device: ublkd never opens a path, so ublkctl opens the image's
 * backing chain as its caller and passes it ("backing-chain").  Each level's backing file
 * name is resolved as qemu does: an absolute name as it is, a relative one against the
 * directory of the image naming it (as that image's path was given, no symlink resolved).
 * Every backing file is opened read-only.  A level ends the chain when it is not qcow2 (its
 * format named "raw", or no qcow2 magic) or names no backing file.
 *
 * qcow2_open_chain() returns 0 with the fds in fds[] (the image's backing file first, the base
 * last; *n may be 0), or a negative errno with one line naming the file in err (and no fd
 * left open).  Only the header fields that name the chain are read: the rest is ublkd's to
 * check (it checks the chain against the images again).
 */

#include <stddef.h>

int qcow2_open_chain(int image_fd, const char *image_path, int *fds, unsigned max, unsigned *n,
                     char *err, size_t err_len);
