/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "macro.h"
#include "manager.h"
#include "polkit.h"
#include "ublkd-bus.h"

/* Long enough for a person to type a password into their agent. */
#define POLKIT_INTERACTIVE_TIMEOUT_USEC (300ULL * 1000000)

struct auth_pending {
        struct manager *manager;
        sd_bus_message *call;
        sd_bus_slot *slot;
        char *action, *what;
        bool interactive;
        uid_t uid;
        bus_authorize_cb_t cb;
        void *userdata;
        struct auth_pending *next;
};

int bus_caller_uid(sd_bus_message *msg, uid_t *ret, sd_bus_error *error)
{
        _cleanup_(sd_bus_creds_unrefp) sd_bus_creds *creds = NULL;
        int r;

        r = sd_bus_query_sender_creds(msg, SD_BUS_CREDS_EUID, &creds);
        if (r >= 0 && (sd_bus_creds_get_augmented_mask(creds) & SD_BUS_CREDS_EUID))
                r = -EPERM;
        if (r >= 0)
                r = sd_bus_creds_get_euid(creds, ret);
        if (r < 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                         "Cannot tell who the caller is (%s): refused", strerror(-r));
        return 0;
}

static void pending_free(struct auth_pending *p)
{
        struct manager *m = p->manager;

        for (struct auth_pending **pp = &m->auth_pending; *pp; pp = &(*pp)->next)
                if (*pp == p) {
                        *pp = p->next;
                        m->n_auth_pending--;
                        break;
                }
        sd_bus_slot_unref(p->slot);
        sd_bus_message_unref(p->call);
        free(p->action);
        free(p->what);
        free(p);
}

static int on_check_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error)
{
        struct auth_pending *p = userdata;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        int authorized = 0, challenge = 0, r;

        if (sd_bus_message_is_method_error(reply, NULL)) {
                const sd_bus_error *e = sd_bus_message_get_error(reply);

                log_warning("polkit could not check %s: %s", p->action, e->message ? e->message : e->name);
                sd_bus_error_setf(&error, SD_BUS_ERROR_ACCESS_DENIED,
                                  "Not authorized to %s: polkit cannot be asked (%s), so only root may",
                                  p->what, e->name);
                goto out;
        }
        r = sd_bus_message_enter_container(reply, 'r', "bba{ss}");
        if (r >= 0)
                r = sd_bus_message_read(reply, "bb", &authorized, &challenge);
        if (r < 0) {
                sd_bus_error_setf(&error, SD_BUS_ERROR_ACCESS_DENIED,
                                  "Not authorized to %s: polkit's answer could not be read", p->what);
                goto out;
        }
        if (authorized)
                goto out;
        if (challenge && !p->interactive)
                sd_bus_error_setf(&error, SD_BUS_ERROR_INTERACTIVE_AUTHORIZATION_REQUIRED,
                                  "Authentication is required to %s (polkit action %s): run it from a "
                                  "terminal, or allow interactive authorization", p->what, p->action);
        else
                sd_bus_error_setf(&error, SD_BUS_ERROR_ACCESS_DENIED,
                                  "Not authorized to %s (polkit action %s)", p->what, p->action);
out:
        if (!authorized)
                log_info("Refused to %s for %s: %s", p->what, sd_bus_message_get_sender(p->call), error.message);
        p->cb(p->call, authorized ? 1 : -EACCES, &error, p->userdata);
        pending_free(p);
        return 0;
}

static unsigned pending_of_uid(const struct manager *m, uid_t uid)
{
        unsigned n = 0;

        for (const struct auth_pending *p = m->auth_pending; p; p = p->next)
                n += p->uid == uid;
        return n;
}

int bus_authorize(struct manager *m, sd_bus_message *call, uid_t uid, const char *action,
                  const char *what, const char *detail_device, bus_authorize_cb_t cb, void *userdata,
                  sd_bus_error *error)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *check = NULL;
        struct auth_pending *p;
        int r;

        if (uid == 0)
                return 1;
        if (m->n_auth_pending >= POLKIT_MAX_PENDING)
                return sd_bus_error_setf(error, UBLKD_ERROR_BUSY,
                                         "Too many authorization checks in progress: try again later");
        if (pending_of_uid(m, uid) >= POLKIT_MAX_PENDING_PER_UID)
                return sd_bus_error_setf(error, UBLKD_ERROR_BUSY,
                                         "uid %u has %u authorization checks in progress, the most ublkd keeps "
                                         "for one user: answer or cancel those first", (unsigned) uid,
                                         POLKIT_MAX_PENDING_PER_UID);

        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        p->manager = m;
        p->uid = uid;
        p->cb = cb;
        p->userdata = userdata;
        p->interactive = sd_bus_message_get_allow_interactive_authorization(call) > 0;
        p->action = strdup(action);
        p->what = strdup(what);
        if (!p->action || !p->what) {
                r = -ENOMEM;
                goto fail;
        }

        r = sd_bus_message_new_method_call(m->bus, &check, "org.freedesktop.PolicyKit1",
                                           "/org/freedesktop/PolicyKit1/Authority",
                                           "org.freedesktop.PolicyKit1.Authority", "CheckAuthorization");
        if (r >= 0)
                r = sd_bus_message_append(check, "(sa{sv})s", "system-bus-name", 1, "name", "s",
                                          sd_bus_message_get_sender(call), action);
        if (r >= 0)
                r = *detail_device ? sd_bus_message_append(check, "a{ss}", 1, "device", detail_device)
                                   : sd_bus_message_append(check, "a{ss}", 0);
        /* Flag 1: polkit may ask the caller's agent for a password. */
        if (r >= 0)
                r = sd_bus_message_append(check, "us", (uint32_t) (p->interactive ? 1 : 0), "");
        if (r >= 0)
                r = sd_bus_call_async(m->bus, &p->slot, check, on_check_reply, p,
                                      p->interactive ? POLKIT_INTERACTIVE_TIMEOUT_USEC : 0);
        if (r < 0)
                goto fail;

        p->call = sd_bus_message_ref(call);
        p->next = m->auth_pending;
        m->auth_pending = p;
        m->n_auth_pending++;
        return 0;

fail:
        sd_bus_slot_unref(p->slot);
        free(p->action);
        free(p->what);
        free(p);
        return r;
}

void bus_authorize_cancel_all(struct manager *m)
{
        while (m->auth_pending) {
                struct auth_pending *p = m->auth_pending;
                _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;

                sd_bus_error_setf(&error, UBLKD_ERROR_BUSY, "ublkd is shutting down");
                p->cb(p->call, -ESHUTDOWN, &error, p->userdata);
                pending_free(p);
        }
}
