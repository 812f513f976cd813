/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Host unit test of rbd-conf.c: what ublkd takes from a ceph.conf that a user other than root
 * passed.  Keys that name files (keyring, log_file, admin_socket, plugin_dir...) must never
 * reach librados; the cluster's address and settings must, [client.ID] over [client] over
 * [global]; text that is no conf is refused with its line.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "rbd-conf.h"

static char got[2048];

static int record(void *arg, const char *key, const char *value)
{
        size_t n = strlen(got);

        snprintf(got + n, sizeof(got) - n, "%s=%s;", key, value);
        return 0;
}

static int parse(const char *text, const char *id, unsigned *ignored, char *why, size_t len)
{
        got[0] = 0;
        return rbd_conf_parse_user(text, id, record, NULL, ignored, why, len);
}

int main(void)
{
        char why[200];
        unsigned ignored;
        int r;

        r = parse("# a client's conf\n[global]\n\tfsid = 1234\n\tmon host = [v2:10.0.0.1:3300]\n"
                  "keyring = /etc/ceph/ceph.client.admin.keyring\nlog_file = /etc/passwd\n"
                  "admin socket = /run/x.asok\nplugin_dir = /tmp/evil\n"
                  "rbd_persistent_cache_path = /root\n[client]\nrbd cache = false ; inline\n"
                  "[client.alice]\nrbd-cache = true\nkey = AQAAAA==\n[osd]\nosd_data = /x\n"
                  "[client.bob]\nmon_host = 6.6.6.6\n", "alice", &ignored, why, sizeof(why));
        CHECK(r == 0, "a client's conf: %d %s", r, why);
        CHECK(strcmp(got, "fsid=1234;mon_host=[v2:10.0.0.1:3300];rbd_cache=false;rbd_cache=true;") == 0,
              "taken, in order (global, client, client.alice): '%s'", got);
        CHECK(ignored == 6, "ignored %u keys, not 6 (keyring, log_file, admin_socket, plugin_dir, "
              "rbd_persistent_cache_path, key)", ignored);
        CHECK(!strstr(got, "keyring") && !strstr(got, "log_file") && !strstr(got, "/"),
              "a key naming a file got through: '%s'", got);

        r = parse("[global]\nmon_host = \"1.2.3.4\"\n", "admin", &ignored, why, sizeof(why));
        CHECK(r == 0 && strcmp(got, "mon_host=1.2.3.4;") == 0, "quoted value: %d '%s'", r, got);

        r = parse("[global]\nmon_host\n", "admin", &ignored, why, sizeof(why));
        CHECK(r == -EINVAL && strstr(why, "line 2"), "no '=': %d '%s'", r, why);
        r = parse("[global\nfsid = 1\n", "admin", &ignored, why, sizeof(why));
        CHECK(r == -EINVAL && strstr(why, "line 1"), "bad section: %d '%s'", r, why);
        r = parse("[global]\nfsid = a\x01" "b\n", "admin", &ignored, why, sizeof(why));
        CHECK(r == -EINVAL, "control character: %d '%s'", r, why);
        r = parse("", "admin", &ignored, why, sizeof(why));
        CHECK(r == 0 && !got[0] && ignored == 0, "empty: %d '%s' %u", r, got, ignored);
        for (size_t i = 0; rbd_conf_user_keys[i]; i++) {
                const char *k = rbd_conf_user_keys[i];
                size_t n = strlen(k);

                CHECK(!strstr(k, "path") && !strstr(k, "file") && !strstr(k, "_dir_") && !strstr(k, "key") &&
                      !(n > 4 && strcmp(k + n - 4, "_dir") == 0) && !strstr(k, "socket"),
                      "taken key '%s' looks like it names a file or a key", k);
        }
        return check_summary();
}
