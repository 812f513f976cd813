/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Compressed clusters: the spec's descriptor gives an offset and a count of 512-byte sectors;
 * the data is raw deflate (no zlib header) or, with compression_type 1, zstd frames.  The
 * buffer may end with bytes of the next compressed cluster: decompression stops when a whole
 * cluster has come out.  Anything else (too little output, a corrupt stream) is -EIO.
 */
#include <errno.h>
#include <string.h>
#include <zlib.h>
#ifdef HAVE_ZSTD
#include <zstd.h>
#endif

#include "q2.h"

static int inflate_raw(const void *src, size_t src_len, void *dst, size_t dst_len)
{
        z_stream z;
        int r;

        memset(&z, 0, sizeof(z));
        if (inflateInit2(&z, -15) != Z_OK)
                return -ENOMEM;
        z.next_in = (Bytef *) src;
        z.avail_in = (uInt) src_len;
        z.next_out = dst;
        z.avail_out = (uInt) dst_len;
        r = inflate(&z, Z_FINISH);
        inflateEnd(&z);
        if ((r == Z_STREAM_END || r == Z_BUF_ERROR || r == Z_OK) && z.avail_out == 0)
                return 0;
        return -EIO;
}

#ifdef HAVE_ZSTD
static int unzstd(const void *src, size_t src_len, void *dst, size_t dst_len)
{
        ZSTD_DCtx *d = ZSTD_createDCtx();
        ZSTD_inBuffer in = { src, src_len, 0 };
        ZSTD_outBuffer out = { dst, dst_len, 0 };
        int ret = -EIO;

        if (!d)
                return -ENOMEM;
        while (out.pos < out.size && in.pos < in.size) {
                size_t r = ZSTD_decompressStream(d, &out, &in);
                if (ZSTD_isError(r))
                        break;
                if (r == 0 && out.pos < out.size && in.pos >= in.size)
                        break;
        }
        if (out.pos == out.size)
                ret = 0;
        ZSTD_freeDCtx(d);
        return ret;
}
#endif

int q2_decompress(int type, const void *src, size_t src_len, void *dst, size_t dst_len)
{
        if (type == 0)
                return inflate_raw(src, src_len, dst, dst_len);
#ifdef HAVE_ZSTD
        if (type == 1)
                return unzstd(src, src_len, dst, dst_len);
#endif
        return -EOPNOTSUPP;
}
