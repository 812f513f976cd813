/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nbd-uri.h"

static int hexval(char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* Decodes n bytes of s into buf (of size len), %XX escapes included; a NUL byte is refused. */
static int decode(const char *s, size_t n, char *buf, size_t len)
{
        size_t o = 0;

        for (size_t i = 0; i < n; i++) {
                char c = s[i];

                if (c == '%') {
                        int v;

                        if (i + 2 >= n || hexval(s[i + 1]) < 0 || hexval(s[i + 2]) < 0)
                                return -EINVAL;
                        v = hexval(s[i + 1]) * 16 + hexval(s[i + 2]);
                        if (v == 0)
                                return -EINVAL;
                        c = (char) v;
                        i += 2;
                }
                if (o + 1 >= len)
                        return -ENAMETOOLONG;
                buf[o++] = c;
        }
        buf[o] = 0;
        return 0;
}

#define FAIL(why) do { *reason = (why); return -EINVAL; } while (0)

int nbd_uri_parse(const char *uri, struct nbd_uri *ret, const char **reason)
{
        const char *p, *path, *query, *end;
        size_t n;

        *ret = (struct nbd_uri) {};
        if (strncmp(uri, "nbds+unix://", 12) == 0)
                ret->tls = ret->unix_socket = true, p = uri + 12;
        else if (strncmp(uri, "nbd+unix://", 11) == 0)
                ret->unix_socket = true, p = uri + 11;
        else if (strncmp(uri, "nbds://", 7) == 0)
                ret->tls = true, p = uri + 7;
        else if (strncmp(uri, "nbd://", 6) == 0)
                p = uri + 6;
        else
                FAIL("the URI must start with nbd://, nbds://, nbd+unix:// or nbds+unix://");
        if (strchr(p, '#'))
                FAIL("the URI has a fragment, which NBD URIs do not take");
        /* USER@: the TLS (PSK) identity, as libnbd takes it; no password. */
        path = p + strcspn(p, "/?");
        {
                const char *at = memchr(p, '@', (size_t) (path - p));

                if (at) {
                        if (at == p || memchr(p, ':', (size_t) (at - p)) ||
                            decode(p, (size_t) (at - p), ret->tls_username, sizeof(ret->tls_username)) < 0)
                                FAIL("the URI's user (the TLS identity, USER@) is empty, too long, has a bad "
                                     "%-escape or a password");
                        p = at + 1;
                }
        }

        query = strchr(p, '?');
        end = p + strlen(p);
        if (!query)
                query = end;

        /* Authority: [HOST][:PORT], HOST possibly [IPv6]. */
        if (ret->unix_socket) {
                if (path != p)
                        FAIL("an nbd+unix:// URI has no host: nbd+unix:///EXPORT?socket=PATH");
        } else {
                const char *colon;

                if (*p == '[') {
                        const char *close = memchr(p, ']', (size_t) (path - p));

                        if (!close)
                                FAIL("unclosed '[' in the URI's host");
                        n = (size_t) (close - p - 1);
                        colon = close + 1 < path && close[1] == ':' ? close + 1 : NULL;
                        if (!colon && close + 1 != path)
                                FAIL("junk after the URI's [host]");
                        if (n == 0 || n >= sizeof(ret->host))
                                FAIL("the URI's host is empty or too long");
                        memcpy(ret->host, p + 1, n);
                } else {
                        colon = memchr(p, ':', (size_t) (path - p));
                        n = (size_t) ((colon ? colon : path) - p);
                        if (n == 0 || n >= sizeof(ret->host))
                                FAIL("the URI has no host (nbd://HOST/EXPORT), or one too long");
                        memcpy(ret->host, p, n);
                }
                ret->host[n] = 0;
                if (colon) {
                        n = (size_t) (path - colon - 1);
                        if (n == 0 || n >= sizeof(ret->port) || strspn(colon + 1, "0123456789") < n ||
                            atoi(colon + 1) < 1 || atoi(colon + 1) > 65535)
                                FAIL("the URI's port is not a number from 1 to 65535");
                        memcpy(ret->port, colon + 1, n);
                        ret->port[n] = 0;
                } else
                        strcpy(ret->port, NBD_URI_DEFAULT_PORT);
        }

        /* Path: "/" + export name, or nothing (the default export). */
        if (*path == '/' && query > path + 1 &&
            decode(path + 1, (size_t) (query - path - 1), ret->export_name, sizeof(ret->export_name)) < 0)
                FAIL("the URI's export name has a bad %-escape or is longer than 4096 bytes");

        /* Query: key=value&... */
        for (const char *q = *query ? query + 1 : end; q < end;) {
                const char *amp = q + strcspn(q, "&;"), *eq = memchr(q, '=', (size_t) (amp - q));
                char *val;
                size_t klen, vlen;

                if (!eq)
                        FAIL("a query item of the URI has no '=value'");
                klen = (size_t) (eq - q);
                if (klen == 6 && strncmp(q, "socket", 6) == 0)
                        val = ret->socket, vlen = sizeof(ret->socket);
                else if (klen == 12 && strncmp(q, "tls-psk-file", 12) == 0)
                        val = ret->tls_psk_file, vlen = sizeof(ret->tls_psk_file);
                else if (klen == 16 && strncmp(q, "tls-certificates", 16) == 0)
                        val = ret->tls_certificates, vlen = sizeof(ret->tls_certificates);
                else
                        FAIL("the URI's query takes socket=, tls-psk-file= and tls-certificates= only");
                if (decode(eq + 1, (size_t) (amp - eq - 1), val, vlen) < 0 || !*val)
                        FAIL("a query value of the URI is empty, too long or has a bad %-escape");
                q = *amp ? amp + 1 : amp;
        }
        if (ret->unix_socket && !ret->socket[0])
                FAIL("an nbd+unix:// URI needs ?socket=PATH");
        if (!ret->unix_socket && ret->socket[0])
                FAIL("socket= is for nbd+unix:// URIs only");
        if ((ret->tls_psk_file[0] || ret->tls_certificates[0] || ret->tls_username[0]) && !ret->tls)
                FAIL("a TLS user, tls-psk-file= and tls-certificates= are for nbds:// and nbds+unix:// URIs only");
        return 0;
}
