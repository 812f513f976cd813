/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Host unit test of the /etc/ublk/NAME.conf parser (src/ctl/conf.c). */
#include <stdio.h>
#include <string.h>

#include "conf.h"

static unsigned passed, failed;

/* Parses text; want_err NULL: must succeed; else the error must contain want_err. */
static void check_n(const char *text, size_t len, const char *want_err, struct ublk_conf *out)
{
        FILE *f = fmemopen((void *) text, len, "r");
        struct ublk_conf c;
        char err[256] = "";
        int r;

        r = ublk_conf_parse(f, "t.conf", &c, err, sizeof(err));
        fclose(f);
        if (want_err ? (r < 0 && strstr(err, want_err)) : r == 0)
                passed++;
        else {
                failed++;
                fprintf(stderr, "FAILED: %s: r=%d err='%s', want %s\n", text, r, err, want_err ? want_err : "success");
        }
        if (r == 0 && out)
                *out = c;
        else if (r == 0)
                ublk_conf_free(&c);
}

static void check(const char *text, const char *want_err, struct ublk_conf *out)
{
        check_n(text, strlen(text), want_err, out);
}

#define IS(a, b) ((a) && !strcmp((a), (b)))
#define EXPECT(cond) do { if (cond) passed++; else { failed++; fprintf(stderr, "FAILED: %s\n", #cond); } } while (0)

int main(void)
{
        struct ublk_conf c;
        char big[6000];

        check("# comment\n\n  target = loop  \nbacking=/srv/a b.img\nsize = 1G\nqueues=2\ndepth = 64\n"
              "logical-block-size = 4096\nread-only = yes\noffset = 1M\ndirect-io = off\nzero-copy=auto\n"
              "recovery = fail-io\n", NULL, &c);
        EXPECT(c.target && !strcmp(c.target, "loop"));
        EXPECT(IS(ublk_conf_get(&c, "backing"), "/srv/a b.img"));
        EXPECT(IS(ublk_conf_get(&c, "size"), "1G") && IS(ublk_conf_get(&c, "queues"), "2"));
        EXPECT(IS(ublk_conf_get(&c, "depth"), "64") && IS(ublk_conf_get(&c, "logical-block-size"), "4096"));
        EXPECT(IS(ublk_conf_get(&c, "read-only"), "yes") && IS(ublk_conf_get(&c, "offset"), "1M"));
        EXPECT(IS(ublk_conf_get(&c, "direct-io"), "off") && IS(ublk_conf_get(&c, "zero-copy"), "auto"));
        EXPECT(IS(ublk_conf_get(&c, "recovery"), "fail-io"));
        EXPECT(!ublk_conf_get(&c, "name") && !ublk_conf_get(&c, "start"));
        ublk_conf_free(&c);

        check("target=null\nsize=64M", NULL, NULL);                     /* no final newline */
        check("", "t.conf: no 'target'", NULL);
        check("size=1G\n", "t.conf: no 'target' (null, loop, nbd, qcow2 or rbd)", NULL);
        check("target=null\ncolour=red\n", "t.conf:2: unknown key 'colour' (see ublk.conf(5))", NULL);
        check("target=null\ntarget=loop\n", "t.conf:2: 'target' given twice", NULL);
        check("target=null\nsize\n", "t.conf:2: expected 'key = value'", NULL);
        check("target=null\nsize=lots\n", "t.conf:2: size must be a size", NULL);
        check("target=null\nsize=0\n", "t.conf:2: size must be a size", NULL);
        check("target=null\nqueues=-1\n", "t.conf:2: queues must be a positive number", NULL);
        check("target=loop\nbacking=relative.img\n", "t.conf:2: backing must be an absolute path", NULL);
        check("target=null\nread-only=maybe\n", "t.conf:2: read-only must be yes or no", NULL);
        check("target=null\ndirect-io=fast\n", "t.conf:2: direct-io must be auto, on or off", NULL);
        check("target=null\nrecovery=maybe\n", "t.conf:2: recovery must be reissue, fail-io or none", NULL);
        check("target=\n", "t.conf:1: target must not be empty", NULL);
        /* Keys that are options of "ublkctl add" but not of NAME.conf. */
        check("target=null\nname=x\n", "t.conf:2: unknown key 'name'", NULL);
        check("target=null\nstart=no\n", "t.conf:2: unknown key 'start'", NULL);
        check_n("target=null\nsi\0ze=1G\n", 21, "t.conf:2: NUL byte in line", NULL);
        memset(big, 'x', sizeof(big) - 1);
        big[sizeof(big) - 1] = 0;
        memcpy(big, "target=", 7);
        check(big, "t.conf:1: line longer than 4096 characters", NULL);

        printf("%u passed, %u failed\n", passed, failed);
        return failed ? 1 : 0;
}
