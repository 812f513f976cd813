/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * ublkd's copy of the ublk user/kernel interface.
 *
 * Contract: every identifier, number and structure layout in this file is
 * the kernel ABI of the ublk driver and must stay identical to upstream's
 * include/uapi/linux/ublk_cmd.h (currently matched against Linux 7.3).
 * Only the comments and the include guard are ours.  The file is shared
 * by the daemon and by our out-of-tree kernel module, so it depends on
 * nothing but <linux/types.h> and <linux/ioctl.h>.
 *
 * The build enforces the contract: src/kernel/uapi-check.py renames the
 * identifiers of each installed system copy of <linux/ublk_cmd.h> into a
 * private namespace and emits _Static_asserts that compare every macro
 * value and every struct size and member offset with this file.  Any
 * drift makes "meson compile" fail.
 *
 * UBLK_IO_RES_ABORT expands to -ENODEV; users of that macro need an errno
 * header, as with the upstream file.
 */
#ifndef UBLKD_UAPI_UBLK_CMD_H
#define UBLKD_UAPI_UBLK_CMD_H

#include <linux/types.h>
#include <linux/ioctl.h>

/*
 * Control commands, sent as io_uring URING_CMD to /dev/ublk-control.
 *
 * The bare opcodes below are the original encoding; kernels with
 * UBLK_F_CMD_IOCTL_ENCODE also take (and newer commands only exist as)
 * the _IOC-encoded UBLK_U_CMD_* values.
 */
#define UBLK_CMD_GET_QUEUE_AFFINITY     0x01
#define UBLK_CMD_GET_DEV_INFO           0x02
#define UBLK_CMD_ADD_DEV                0x04
#define UBLK_CMD_DEL_DEV                0x05
#define UBLK_CMD_START_DEV              0x06
#define UBLK_CMD_STOP_DEV               0x07
#define UBLK_CMD_SET_PARAMS             0x08
#define UBLK_CMD_GET_PARAMS             0x09
#define UBLK_CMD_START_USER_RECOVERY    0x10
#define UBLK_CMD_END_USER_RECOVERY      0x11
#define UBLK_CMD_GET_DEV_INFO2          0x12

#define UBLK_U_CMD_GET_QUEUE_AFFINITY \
        _IOR('u', UBLK_CMD_GET_QUEUE_AFFINITY, struct ublksrv_ctrl_cmd)
#define UBLK_U_CMD_GET_DEV_INFO \
        _IOR('u', UBLK_CMD_GET_DEV_INFO, struct ublksrv_ctrl_cmd)
#define UBLK_U_CMD_ADD_DEV \
        _IOWR('u', UBLK_CMD_ADD_DEV, struct ublksrv_ctrl_cmd)
#define UBLK_U_CMD_DEL_DEV \
        _IOWR('u', UBLK_CMD_DEL_DEV, struct ublksrv_ctrl_cmd)
#define UBLK_U_CMD_START_DEV \
        _IOWR('u', UBLK_CMD_START_DEV, struct ublksrv_ctrl_cmd)
#define UBLK_U_CMD_STOP_DEV \
        _IOWR('u', UBLK_CMD_STOP_DEV, struct ublksrv_ctrl_cmd)
#define UBLK_U_CMD_SET_PARAMS \
        _IOWR('u', UBLK_CMD_SET_PARAMS, struct ublksrv_ctrl_cmd)
#define UBLK_U_CMD_GET_PARAMS \
        _IOR('u', UBLK_CMD_GET_PARAMS, struct ublksrv_ctrl_cmd)
#define UBLK_U_CMD_START_USER_RECOVERY \
        _IOWR('u', UBLK_CMD_START_USER_RECOVERY, struct ublksrv_ctrl_cmd)
#define UBLK_U_CMD_END_USER_RECOVERY \
        _IOWR('u', UBLK_CMD_END_USER_RECOVERY, struct ublksrv_ctrl_cmd)
#define UBLK_U_CMD_GET_DEV_INFO2 \
        _IOR('u', UBLK_CMD_GET_DEV_INFO2, struct ublksrv_ctrl_cmd)
/* Returns the driver's UBLK_F_* mask (UBLK_FEATURES_LEN bytes) at addr. */
#define UBLK_U_CMD_GET_FEATURES \
        _IOR('u', 0x13, struct ublksrv_ctrl_cmd)
/* Like DEL_DEV, but does not wait for the last opener to go away. */
#define UBLK_U_CMD_DEL_DEV_ASYNC \
        _IOR('u', 0x14, struct ublksrv_ctrl_cmd)
/* UBLK_F_UPDATE_SIZE: new capacity in sectors in data[0]. */
#define UBLK_U_CMD_UPDATE_SIZE \
        _IOWR('u', 0x15, struct ublksrv_ctrl_cmd)
/* UBLK_F_QUIESCE: park the device so a new server can take over. */
#define UBLK_U_CMD_QUIESCE_DEV \
        _IOWR('u', 0x16, struct ublksrv_ctrl_cmd)
/* UBLK_F_SAFE_STOP_DEV: stop only while nobody has the disk open. */
#define UBLK_U_CMD_TRY_STOP_DEV \
        _IOWR('u', 0x17, struct ublksrv_ctrl_cmd)
/*
 * UBLK_F_SHMEM_ZC: register a shared memory area described by a
 * struct ublk_shmem_buf_reg at addr (len = its size); the result is the
 * buffer index, or a negative errno.
 */
#define UBLK_U_CMD_REG_BUF \
        _IOWR('u', 0x18, struct ublksrv_ctrl_cmd)
/* UBLK_F_SHMEM_ZC: drop the buffer whose index is in data[0]. */
#define UBLK_U_CMD_UNREG_BUF \
        _IOWR('u', 0x19, struct ublksrv_ctrl_cmd)

/* Argument block of UBLK_U_CMD_REG_BUF. */
struct ublk_shmem_buf_reg {
        __u64   addr;           /* start of the mapping in the server */
        __u64   len;            /* bytes, a multiple of the page size */
        __u32   flags;          /* UBLK_SHMEM_BUF_* */
        __u32   reserved;
};

/* Pin read-only, so that write-sealed memfds can be registered. */
#define UBLK_SHMEM_BUF_READ_ONLY        (1U << 0)

/* Size in bytes of the feature mask returned by UBLK_U_CMD_GET_FEATURES. */
#define UBLK_FEATURES_LEN  8

/*
 * Per-I/O commands, sent as URING_CMD on /dev/ublkcN.
 *
 * FETCH_REQ arms a tag once at start-up; COMMIT_AND_FETCH_REQ reports the
 * result of a request and re-arms the tag in one go; NEED_GET_DATA hands
 * the kernel a buffer for a write when UBLK_F_NEED_GET_DATA is on.  As for
 * control commands, the bare opcodes are the old encoding and everything
 * added later exists only as UBLK_U_IO_*.
 */
#define UBLK_IO_FETCH_REQ               0x20
#define UBLK_IO_COMMIT_AND_FETCH_REQ    0x21
#define UBLK_IO_NEED_GET_DATA           0x22

#define UBLK_U_IO_FETCH_REQ \
        _IOWR('u', UBLK_IO_FETCH_REQ, struct ublksrv_io_cmd)
#define UBLK_U_IO_COMMIT_AND_FETCH_REQ \
        _IOWR('u', UBLK_IO_COMMIT_AND_FETCH_REQ, struct ublksrv_io_cmd)
#define UBLK_U_IO_NEED_GET_DATA \
        _IOWR('u', UBLK_IO_NEED_GET_DATA, struct ublksrv_io_cmd)
/*
 * Zero copy (UBLK_F_SUPPORT_ZERO_COPY): install / remove the request
 * buffer of (q_id, tag) at index addr of the submitting ring's sparse
 * fixed-buffer table.
 */
#define UBLK_U_IO_REGISTER_IO_BUF \
        _IOWR('u', 0x23, struct ublksrv_io_cmd)
#define UBLK_U_IO_UNREGISTER_IO_BUF \
        _IOWR('u', 0x24, struct ublksrv_io_cmd)

/*
 * Batched I/O (UBLK_F_BATCH_IO), all taking a struct ublk_batch_io.
 * PREP arms many tags at once (0 or -errno); COMMIT returns how many
 * bytes of its element buffer were consumed, so a short count means only
 * a prefix was committed; FETCH is multishot and fills a provided buffer
 * with the tags of new requests.
 */
#define UBLK_U_IO_PREP_IO_CMDS \
        _IOWR('u', 0x25, struct ublk_batch_io)
#define UBLK_U_IO_COMMIT_IO_CMDS \
        _IOWR('u', 0x26, struct ublk_batch_io)
#define UBLK_U_IO_FETCH_IO_CMDS \
        _IOWR('u', 0x27, struct ublk_batch_io)

/* Completion values of the per-I/O commands; ABORT means "don't re-fetch". */
#define UBLK_IO_RES_OK                  0
#define UBLK_IO_RES_NEED_GET_DATA       1
#define UBLK_IO_RES_ABORT               (-ENODEV)

/* mmap() offsets on /dev/ublkcN: descriptor array, and user-copy window. */
#define UBLKSRV_CMD_BUF_OFFSET  0
#define UBLKSRV_IO_BUF_OFFSET   0x80000000

#define UBLK_MAX_QUEUE_DEPTH    4096

/*
 * UBLK_F_USER_COPY: pread()/pwrite() on /dev/ublkcN at
 * UBLKSRV_IO_BUF_OFFSET + (qid << UBLK_QID_OFF | tag << UBLK_TAG_OFF |
 * byte offset) moves the data of that request.
 */
#define UBLK_IO_BUF_OFF         0
#define UBLK_IO_BUF_BITS        25      /* 32 MiB per request */
#define UBLK_IO_BUF_BITS_MASK   ((1ULL << UBLK_IO_BUF_BITS) - 1)

#define UBLK_TAG_OFF            UBLK_IO_BUF_BITS
#define UBLK_TAG_BITS           16
#define UBLK_TAG_BITS_MASK      ((1ULL << UBLK_TAG_BITS) - 1)

#define UBLK_QID_OFF            (UBLK_TAG_OFF + UBLK_TAG_BITS)
#define UBLK_QID_BITS           12
#define UBLK_QID_BITS_MASK      ((1ULL << UBLK_QID_BITS) - 1)

#define UBLK_MAX_NR_QUEUES      (1U << UBLK_QID_BITS)

#define UBLKSRV_IO_BUF_TOTAL_BITS       (UBLK_QID_OFF + UBLK_QID_BITS)
#define UBLKSRV_IO_BUF_TOTAL_SIZE       (1ULL << UBLKSRV_IO_BUF_TOTAL_BITS)

/* Set in a user-copy offset to reach the integrity (PI) buffer instead. */
#define UBLK_INTEGRITY_FLAG_OFF 62
#define UBLKSRV_IO_INTEGRITY_FLAG (1ULL << UBLK_INTEGRITY_FLAG_OFF)

/*
 * Device feature flags: requested in ublksrv_ctrl_dev_info.flags at ADD_DEV
 * and reported by UBLK_U_CMD_GET_FEATURES.  The mixed U/UL/ULL suffixes are
 * upstream's and are kept so that the expression types match too.
 */
/* Request buffers can be registered as io_uring fixed buffers. */
#define UBLK_F_SUPPORT_ZERO_COPY        (1ULL << 0)
/* Always complete I/O commands from task context (for benchmarking). */
#define UBLK_F_URING_CMD_COMP_IN_TASK   (1ULL << 1)
/* Writes first return UBLK_IO_RES_NEED_GET_DATA to ask for a buffer. */
#define UBLK_F_NEED_GET_DATA (1UL << 2)
/* Server restart keeps the disk; in-flight I/O fails, new I/O waits. */
#define UBLK_F_USER_RECOVERY    (1UL << 3)
/* Like USER_RECOVERY, but in-flight I/O is re-issued to the new server. */
#define UBLK_F_USER_RECOVERY_REISSUE    (1UL << 4)
/* Devices owned by the (unprivileged) uid/gid that created them. */
#define UBLK_F_UNPRIVILEGED_DEV (1UL << 5)
/* Commands use the _IOC encoding (UBLK_U_*). */
#define UBLK_F_CMD_IOCTL_ENCODE (1UL << 6)
/* Data moves with pread()/pwrite() on /dev/ublkcN instead of a buffer. */
#define UBLK_F_USER_COPY        (1UL << 7)
/* Zoned block device; needs UBLK_F_USER_COPY. */
#define UBLK_F_ZONED (1ULL << 8)
/* Server restart keeps the disk; I/O fails while no server is attached. */
#define UBLK_F_USER_RECOVERY_FAIL_IO (1ULL << 9)
/* UBLK_U_CMD_UPDATE_SIZE is available. */
#define UBLK_F_UPDATE_SIZE               (1ULL << 10)
/* Request buffers are registered automatically, see ublk_auto_buf_reg. */
#define UBLK_F_AUTO_BUF_REG     (1ULL << 11)
/* UBLK_U_CMD_QUIESCE_DEV is available (needs USER_RECOVERY). */
#define UBLK_F_QUIESCE          (1ULL << 12)
/* Each (queue, tag) may be served by its own task, not one per queue. */
#define UBLK_F_PER_IO_DAEMON (1ULL << 13)
/* Buffer (un)registration may come from any task, not only the I/O's. */
#define UBLK_F_BUF_REG_OFF_DAEMON (1ULL << 14)
/* UBLK_U_IO_{PREP,COMMIT,FETCH}_IO_CMDS replace the per-tag commands. */
#define UBLK_F_BATCH_IO         (1ULL << 15)
/* Requests may carry integrity metadata; needs UBLK_F_USER_COPY. */
#define UBLK_F_INTEGRITY (1ULL << 16)
/* UBLK_U_CMD_TRY_STOP_DEV is available. */
#define UBLK_F_SAFE_STOP_DEV    (1ULL << 17)
/* Do not scan for partitions when the disk is started. */
#define UBLK_F_NO_AUTO_PART_SCAN (1ULL << 18)
/* Shared-memory zero copy via UBLK_U_CMD_REG_BUF and UBLK_IO_F_SHMEM_ZC. */
#define UBLK_F_SHMEM_ZC (1ULL << 19)
/* ublksrv_ctrl_dev_info.io_desc_size gives the descriptor stride. */
#define UBLK_F_IO_DESC_SIZE (1ULL << 20)

/* ublksrv_ctrl_dev_info.state */
#define UBLK_S_DEV_DEAD         0
#define UBLK_S_DEV_LIVE         1
#define UBLK_S_DEV_QUIESCED     2
#define UBLK_S_DEV_FAIL_IO      3

/* Payload of a control command, carried in the SQE's inline cmd area. */
struct ublksrv_ctrl_cmd {
        __u32   dev_id;         /* target device */
        __u16   queue_id;       /* target queue, or (__u16)-1 */
        __u16   len;            /* size of the buffer at addr */
        __u64   addr;           /* command-specific in/out buffer */
        __u64   data[1];        /* small inline argument */
        /*
         * Unprivileged devices and GET_DEV_INFO2: length of the device path
         * prefixed to the buffer at addr, counting its NUL.
         */
        __u16   dev_path_len;
        __u16   pad;
        __u32   reserved;
};

/* Device description exchanged by ADD_DEV and GET_DEV_INFO(2). */
struct ublksrv_ctrl_dev_info {
        __u16   nr_hw_queues;
        __u16   queue_depth;
        __u16   state;          /* UBLK_S_DEV_* */
        __u16   io_desc_size;   /* with UBLK_F_IO_DESC_SIZE */

        __u32   max_io_buf_bytes;
        __u32   dev_id;

        __s32   ublksrv_pid;
        __u32   pad1;

        __u64   flags;          /* UBLK_F_* */

        __u64   ublksrv_flags;  /* opaque to the kernel, kept for the server */

        __u32   owner_uid;      /* filled in by the kernel */
        __u32   owner_gid;      /* filled in by the kernel */
        __u64   reserved1;
        __u64   reserved2;
};

/* Operation in the low 8 bits of ublksrv_io_desc.op_flags. */
#define UBLK_IO_OP_READ                 0
#define UBLK_IO_OP_WRITE                1
#define UBLK_IO_OP_FLUSH                2
#define UBLK_IO_OP_DISCARD              3
#define UBLK_IO_OP_WRITE_SAME           4
#define UBLK_IO_OP_WRITE_ZEROES         5
#define UBLK_IO_OP_ZONE_OPEN            10
#define UBLK_IO_OP_ZONE_CLOSE           11
#define UBLK_IO_OP_ZONE_FINISH          12
#define UBLK_IO_OP_ZONE_APPEND          13
#define UBLK_IO_OP_ZONE_RESET_ALL       14
#define UBLK_IO_OP_ZONE_RESET           15
/*
 * Zone report: fill at most nr_zones struct blk_zone entries
 * (<linux/blkzoned.h>) starting with the zone at start_sector; a zeroed
 * entry ends a shorter report.
 */
#define UBLK_IO_OP_REPORT_ZONES         18

/* Request flags, bits 8..31 of ublksrv_io_desc.op_flags. */
#define UBLK_IO_F_FAILFAST_DEV          (1U << 8)
#define UBLK_IO_F_FAILFAST_TRANSPORT    (1U << 9)
#define UBLK_IO_F_FAILFAST_DRIVER       (1U << 10)
#define UBLK_IO_F_META                  (1U << 11)
#define UBLK_IO_F_FUA                   (1U << 13)
#define UBLK_IO_F_NOUNMAP               (1U << 15)
#define UBLK_IO_F_SWAP                  (1U << 16)
/* Automatic buffer registration failed; register it by hand. */
#define UBLK_IO_F_NEED_REG_BUF          (1U << 17)
/* The request has an integrity buffer. */
#define UBLK_IO_F_INTEGRITY             (1UL << 18)
/* addr is a UBLK_SHMEM_ZC_* encoded (index, offset), not a pointer. */
#define UBLK_IO_F_SHMEM_ZC              (1U << 19)

/*
 * One request as published by the kernel in the mmap()ed descriptor array
 * (UBLKSRV_CMD_BUF_OFFSET), one entry per tag.
 */
struct ublksrv_io_desc {
        __u32           op_flags;       /* UBLK_IO_OP_* | UBLK_IO_F_* */

        union {
                __u32   nr_sectors;
                __u32   nr_zones;       /* UBLK_IO_OP_REPORT_ZONES */
        };

        __u64           start_sector;

        __u64           addr;           /* server buffer for this request */
};

static __inline__ __u8 ublksrv_get_op(const struct ublksrv_io_desc *iod)
{
        return iod->op_flags & 0xff;
}

static __inline__ __u32 ublksrv_get_flags(const struct ublksrv_io_desc *iod)
{
        return iod->op_flags >> 8;
}

/*
 * Ask for the request to be completed with UBLK_IO_F_NEED_REG_BUF when
 * automatic registration fails, instead of failing the request.
 */
#define UBLK_AUTO_BUF_REG_FALLBACK      (1 << 0)
#define UBLK_AUTO_BUF_REG_F_MASK        UBLK_AUTO_BUF_REG_FALLBACK

/*
 * UBLK_F_AUTO_BUF_REG: where to register the request buffer.  It is passed
 * packed into the 64-bit sqe->addr of FETCH/COMMIT, see the helpers below.
 */
struct ublk_auto_buf_reg {
        __u16   index;          /* fixed-buffer slot */
        __u8    flags;          /* UBLK_AUTO_BUF_REG_* */
        __u8    reserved0;      /* must be zero */
        __u32   reserved1;      /* must be zero */
};

/* Layout in sqe->addr: index 0..15, flags 16..23, reserved 24..63. */
static __inline__ struct ublk_auto_buf_reg ublk_sqe_addr_to_auto_buf_reg(
                __u64 sqe_addr)
{
        struct ublk_auto_buf_reg reg = {
                .index = (__u16)sqe_addr,
                .flags = (__u8)(sqe_addr >> 16),
                .reserved0 = (__u8)(sqe_addr >> 24),
                .reserved1 = (__u32)(sqe_addr >> 32),
        };

        return reg;
}

static __inline__ __u64
ublk_auto_buf_reg_to_sqe_addr(const struct ublk_auto_buf_reg *buf)
{
        return (__u64)buf->index |
                (__u64)buf->flags << 16 |
                (__u64)buf->reserved0 << 24 |
                (__u64)buf->reserved1 << 32;
}

/* Payload of a per-I/O command, in the SQE's inline cmd area. */
struct ublksrv_io_cmd {
        __u16   q_id;
        __u16   tag;
        __s32   result;         /* COMMIT: bytes done or -errno */
        union {
                __u64   addr;           /* server buffer (not with USER_COPY) */
                __u64   zone_append_lba;/* COMMIT of a ZONE_APPEND */
        };
};

/* Fixed head of every element in a batch command buffer. */
struct ublk_elem_header {
        __u16   tag;
        __u16   buf_index;      /* UBLK_F_AUTO_BUF_REG slot */
        __s32   result;         /* COMMIT only */
};

/*
 * Batch command header (UBLK_U_IO_*_IO_CMDS).  The buffer holds nr_elem
 * elements of elem_bytes each: a struct ublk_elem_header, then a __u64
 * buffer address if UBLK_BATCH_F_HAS_BUF_ADDR, then a __u64 zone-append
 * LBA if UBLK_BATCH_F_HAS_ZONE_LBA.
 */
#define UBLK_BATCH_F_HAS_ZONE_LBA               (1 << 0)
#define UBLK_BATCH_F_HAS_BUF_ADDR               (1 << 1)
#define UBLK_BATCH_F_AUTO_BUF_REG_FALLBACK      (1 << 2)

struct ublk_batch_io {
        __u16   q_id;
        __u16   flags;          /* UBLK_BATCH_F_* */
        __u16   nr_elem;
        __u8    elem_bytes;
        __u8    reserved;
        __u64   reserved2;
};

/* ublk_param_basic.attrs */
#define UBLK_ATTR_READ_ONLY            (1 << 0)
#define UBLK_ATTR_ROTATIONAL           (1 << 1)
#define UBLK_ATTR_VOLATILE_CACHE       (1 << 2)
#define UBLK_ATTR_FUA                  (1 << 3)

/* Queue limits every device needs (UBLK_PARAM_TYPE_BASIC). */
struct ublk_param_basic {
        __u32   attrs;                  /* UBLK_ATTR_* */
        __u8    logical_bs_shift;
        __u8    physical_bs_shift;
        __u8    io_opt_shift;
        __u8    io_min_shift;

        __u32   max_sectors;
        __u32   chunk_sectors;

        __u64   dev_sectors;            /* capacity */
        __u64   virt_boundary_mask;
};

struct ublk_param_discard {
        __u32   discard_alignment;

        __u32   discard_granularity;
        __u32   max_discard_sectors;

        __u32   max_write_zeroes_sectors;
        __u16   max_discard_segments;
        __u16   reserved0;
};

/* Device numbers of the char and block nodes; read-only (GET_PARAMS). */
struct ublk_param_devt {
        __u32   char_major;
        __u32   char_minor;
        __u32   disk_major;     /* valid once the device is started */
        __u32   disk_minor;
};

struct ublk_param_zoned {
        __u32   max_open_zones;
        __u32   max_active_zones;
        __u32   max_zone_append_sectors;
        __u8    reserved[20];
};

struct ublk_param_dma_align {
        __u32   alignment;
        __u8    pad[4];
};

/* Lower bound for seg_boundary_mask + 1 and for max_segment_size. */
#define UBLK_MIN_SEGMENT_SIZE   4096

/* Segment limits; all three must be non-zero when this type is set. */
struct ublk_param_segment {
        __u64   seg_boundary_mask;      /* + 1 is a power of two */
        __u32   max_segment_size;
        __u16   max_segments;
        __u8    pad[2];
};

/* Integrity/PI limits (UBLK_PARAM_TYPE_INTEGRITY, needs UBLK_F_INTEGRITY). */
struct ublk_param_integrity {
        __u32   flags;                  /* LBMD_PI_CAP_*, <linux/fs.h> */
        __u16   max_integrity_segments; /* 0: unlimited */
        __u8    interval_exp;
        __u8    metadata_size;          /* must be non-zero */
        __u8    pi_offset;
        __u8    csum_type;              /* LBMD_PI_CSUM_*, <linux/fs.h> */
        __u8    tag_size;
        __u8    pad[5];
};

/* ublk_params.types: which of the blocks below are meaningful. */
#define UBLK_PARAM_TYPE_BASIC           (1 << 0)
#define UBLK_PARAM_TYPE_DISCARD         (1 << 1)
#define UBLK_PARAM_TYPE_DEVT            (1 << 2)
#define UBLK_PARAM_TYPE_ZONED           (1 << 3)
#define UBLK_PARAM_TYPE_DMA_ALIGN       (1 << 4)
#define UBLK_PARAM_TYPE_SEGMENT         (1 << 5)
#define UBLK_PARAM_TYPE_INTEGRITY       (1 << 6)

/*
 * SET_PARAMS / GET_PARAMS buffer.  The struct grows at the end over time:
 * the caller puts the size it knows into len and the kernel may adjust
 * len and types to what both sides understand.
 */
struct ublk_params {
        __u32   len;
        __u32   types;                  /* UBLK_PARAM_TYPE_* */

        struct ublk_param_basic         basic;
        struct ublk_param_discard       discard;
        struct ublk_param_devt          devt;
        struct ublk_param_zoned         zoned;
        struct ublk_param_dma_align     dma;
        struct ublk_param_segment       seg;
        struct ublk_param_integrity     integrity;
};

/*
 * UBLK_IO_F_SHMEM_ZC: ublksrv_io_desc.addr holds a byte offset in bits
 * 0..31 and a registered buffer index in bits 32..47; 48..63 are zero.
 */
#define UBLK_SHMEM_ZC_OFF_MASK          0xffffffffULL
#define UBLK_SHMEM_ZC_IDX_OFF           32
#define UBLK_SHMEM_ZC_IDX_MASK          0xffffULL

static __inline__ __u64 ublk_shmem_zc_addr(__u16 index, __u32 offset)
{
        return ((__u64)index << UBLK_SHMEM_ZC_IDX_OFF) | offset;
}

static __inline__ __u16 ublk_shmem_zc_index(__u64 addr)
{
        return (addr >> UBLK_SHMEM_ZC_IDX_OFF) & UBLK_SHMEM_ZC_IDX_MASK;
}

static __inline__ __u32 ublk_shmem_zc_offset(__u64 addr)
{
        return (__u32)(addr & UBLK_SHMEM_ZC_OFF_MASK);
}

#endif /* UBLKD_UAPI_UBLK_CMD_H */
