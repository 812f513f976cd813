/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Checks of src/kernel/uapi/ublk_cmd.h that need no system header: the
 * header is self-contained, the ioctl numbers that ublk servers have
 * hard-coded for years still come out right, and the inline helpers
 * round-trip.  The field-by-field comparison with the kernel's copy is done
 * at build time by src/kernel/uapi-check.py.
 */
#include "ublk_cmd.h"   /* first: proves the header needs nothing else */
#include "ublk_cmd.h"   /* and that its guard works */

#include <errno.h>
#include <stdio.h>

static unsigned n_passed, n_failed;

#define CHECK(expr)                                                     \
        do {                                                            \
                if (expr)                                               \
                        n_passed++;                                     \
                else {                                                  \
                        n_failed++;                                     \
                        fprintf(stderr, "%s:%d: FAIL: %s\n",            \
                                __FILE__, __LINE__, #expr);             \
                }                                                       \
        } while (0)

static void test_sizes(void)
{
        CHECK(sizeof(struct ublksrv_ctrl_cmd) == 32);
        CHECK(sizeof(struct ublksrv_ctrl_dev_info) == 64);
        CHECK(sizeof(struct ublksrv_io_desc) == 24);
        CHECK(sizeof(struct ublksrv_io_cmd) == 16);
        CHECK(sizeof(struct ublk_auto_buf_reg) == 8);
        CHECK(sizeof(struct ublk_elem_header) == 8);
        CHECK(sizeof(struct ublk_batch_io) == 16);
        CHECK(sizeof(struct ublk_shmem_buf_reg) == 24);
        CHECK(sizeof(struct ublk_params) == 152);
}

static void test_ioctl_numbers(void)
{
        CHECK(UBLK_U_CMD_ADD_DEV == 0xc0207504u);
        CHECK(UBLK_U_CMD_GET_DEV_INFO2 == 0x80207512u);
        CHECK(UBLK_U_CMD_GET_FEATURES == 0x80207513u);
        CHECK(UBLK_U_IO_FETCH_REQ == 0xc0107520u);
        CHECK(UBLK_U_IO_COMMIT_AND_FETCH_REQ == 0xc0107521u);
        CHECK(UBLK_U_IO_PREP_IO_CMDS == 0xc0107525u);
        CHECK(UBLK_IO_RES_ABORT == -ENODEV);
}

static void test_user_copy_offsets(void)
{
        CHECK(UBLK_TAG_OFF == 25);
        CHECK(UBLK_QID_OFF == 41);
        CHECK(UBLKSRV_IO_BUF_TOTAL_SIZE == 1ULL << 53);
        CHECK(UBLK_MAX_NR_QUEUES == 4096);
        /* the integrity flag must not collide with any offset bit */
        CHECK((UBLKSRV_IO_INTEGRITY_FLAG & (UBLKSRV_IO_BUF_TOTAL_SIZE - 1)) == 0);
}

static void test_helpers(void)
{
        struct ublksrv_io_desc iod = {
                .op_flags = UBLK_IO_OP_WRITE | UBLK_IO_F_FUA | UBLK_IO_F_SWAP,
        };
        struct ublk_auto_buf_reg reg = {
                .index = 0x1234,
                .flags = UBLK_AUTO_BUF_REG_FALLBACK,
        }, back;
        __u64 addr;

        CHECK(ublksrv_get_op(&iod) == UBLK_IO_OP_WRITE);
        CHECK(ublksrv_get_flags(&iod) == (UBLK_IO_F_FUA | UBLK_IO_F_SWAP) >> 8);

        addr = ublk_auto_buf_reg_to_sqe_addr(&reg);
        CHECK(addr == 0x11234);
        back = ublk_sqe_addr_to_auto_buf_reg(addr);
        CHECK(back.index == reg.index && back.flags == reg.flags &&
              back.reserved0 == 0 && back.reserved1 == 0);
        back = ublk_sqe_addr_to_auto_buf_reg(0xdeadbeef12345678ULL);
        CHECK(back.index == 0x5678 && back.flags == 0x34 &&
              back.reserved0 == 0x12 && back.reserved1 == 0xdeadbeef);
        CHECK(ublk_auto_buf_reg_to_sqe_addr(&back) == 0xdeadbeef12345678ULL);

        addr = ublk_shmem_zc_addr(0xbeef, 0x87654321);
        CHECK(addr == 0xbeef87654321ULL);
        CHECK(ublk_shmem_zc_index(addr) == 0xbeef);
        CHECK(ublk_shmem_zc_offset(addr) == 0x87654321);
}

int main(void)
{
        test_sizes();
        test_ioctl_numbers();
        test_user_copy_offsets();
        test_helpers();

        printf("%u passed, %u failed\n", n_passed, n_failed);
        return n_failed ? 1 : 0;
}
