/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Host unit test of src/shared/nbd-uri.c: the NBD URIs ublkctl connects to for a user and whose
 * export name and TLS ublkd hands libnbd.  Every bus caller's URI passes through it. */
#include <stdio.h>
#include <string.h>

#include "nbd-uri.h"

static unsigned passed, failed;

#define CHECK(cond) do {                                                        \
                if (cond)                                                       \
                        passed++;                                               \
                else {                                                          \
                        failed++;                                               \
                        fprintf(stderr, "%s:%d: FAILED: %s\n", __FILE__, __LINE__, #cond); \
                }                                                               \
        } while (0)

static int parse(const char *s, struct nbd_uri *u)
{
        const char *why = NULL;
        int r = nbd_uri_parse(s, u, &why);

        if (r < 0 && !why) {
                fprintf(stderr, "no reason for refusing %s\n", s);
                failed++;
        }
        return r;
}

int main(void)
{
        struct nbd_uri u;
        char big[5000];

        CHECK(parse("nbd://host/exp", &u) == 0 && !u.tls && !u.unix_socket && !strcmp(u.host, "host") &&
              !strcmp(u.port, "10809") && !strcmp(u.export_name, "exp"));
        CHECK(parse("nbds://10.0.0.1:1234", &u) == 0 && u.tls && !strcmp(u.port, "1234") && !u.export_name[0]);
        CHECK(parse("nbd://[::1]:99/a%2Fb%20c", &u) == 0 && !strcmp(u.host, "::1") && !strcmp(u.port, "99") &&
              !strcmp(u.export_name, "a/b c"));
        CHECK(parse("nbd+unix:///e?socket=/run/x.sock", &u) == 0 && u.unix_socket && !strcmp(u.socket, "/run/x.sock") &&
              !strcmp(u.export_name, "e"));
        CHECK(parse("nbds+unix://al%69ce@/?socket=/s&tls-psk-file=/k", &u) == 0 && u.tls &&
              !strcmp(u.tls_username, "alice") && !strcmp(u.tls_psk_file, "/k") && !strcmp(u.socket, "/s"));
        CHECK(parse("nbds://bob@[::1]:5/e?tls-certificates=/c", &u) == 0 && !strcmp(u.tls_username, "bob") &&
              !strcmp(u.host, "::1") && !strcmp(u.tls_certificates, "/c"));
        /* refused: each with a reason */
        CHECK(parse("http://host/x", &u) < 0);
        CHECK(parse("nbd://", &u) < 0);
        CHECK(parse("nbd://host:0/x", &u) < 0);
        CHECK(parse("nbd://host:65536/x", &u) < 0);
        CHECK(parse("nbd://host:12a/x", &u) < 0);
        CHECK(parse("nbd://[::1/x", &u) < 0);
        CHECK(parse("nbd://user@host/x", &u) < 0);              /* a TLS user without TLS */
        CHECK(parse("nbds://user:pw@host/x", &u) < 0);          /* a password */
        CHECK(parse("nbds://@host/x", &u) < 0);
        CHECK(parse("nbd://host/x%00y", &u) < 0);
        CHECK(parse("nbd://host/x%4", &u) < 0);
        CHECK(parse("nbd://host/x%zz", &u) < 0);
        CHECK(parse("nbd+unix:///x", &u) < 0);                  /* no socket= */
        CHECK(parse("nbd+unix://host/x?socket=/s", &u) < 0);    /* a host */
        CHECK(parse("nbd://host/x?socket=/s", &u) < 0);         /* socket= on TCP */
        CHECK(parse("nbd://host/x?tls-psk-file=/k", &u) < 0);   /* a key without TLS */
        CHECK(parse("nbd://host/x?colour=red", &u) < 0);
        CHECK(parse("nbd://host/x?socket", &u) < 0);
        CHECK(parse("nbd+unix:///?socket=", &u) < 0);
        memset(big, 'a', sizeof(big));
        memcpy(big, "nbd://h/", 8);
        big[sizeof(big) - 1] = 0;
        CHECK(parse(big, &u) < 0);                              /* export name > 4096 bytes */
        memcpy(big, "nbd+unix:///?socket=/", 21);
        CHECK(parse(big, &u) < 0);                              /* socket path > sun_path */

        printf("%u passed, %u failed\n", passed, failed);
        return failed ? 1 : 0;
}
