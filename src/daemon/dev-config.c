/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A device's configuration from the options of add-options.h, whoever gives them (Add, a state
 * file): the common ones are fields of ublk_dev_config, the rest its target's (target.h).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "device.h"
#include "parse.h"

_Static_assert(UBLK_ZERO_COPY_AUTO == 0 && UBLK_ZERO_COPY_ON == 1 && UBLK_ZERO_COPY_OFF == 2,
               "zero-copy's value is the index of its choice");
_Static_assert(UBLK_RECOVERY_REISSUE == 1 && UBLK_RECOVERY_FAIL_IO == 2 && UBLK_RECOVERY_NONE == 3,
               "recovery's value is the index of its choice, + 1 (0: the default)");

int ublk_dev_config_set_target(struct ublk_dev_config *config, const struct ublk_target_ops *target)
{
        ublk_dev_config_clear(config);
        config->target = target;
        return target_config_new(target, &config->target_config);
}

void ublk_dev_config_clear(struct ublk_dev_config *config)
{
        if (config->target)
                target_config_free(config->target, config->target_config);
        config->target_config = NULL;
}

/* The common options; NULL for the target's. */
static void *common_field(struct ublk_dev_config *c, const char *key)
{
        if (strcmp(key, "size") == 0)
                return &c->size;
        if (strcmp(key, "queues") == 0)
                return &c->queues;
        if (strcmp(key, "depth") == 0)
                return &c->depth;
        if (strcmp(key, "logical-block-size") == 0)
                return &c->logical_block_size;
        if (strcmp(key, "read-only") == 0)
                return &c->read_only;
        if (strcmp(key, "zero-copy") == 0)
                return &c->zero_copy;
        if (strcmp(key, "recovery") == 0)
                return &c->recovery;
        if (strcmp(key, "name") == 0)
                return c->name;
        return NULL;
}

int ublk_dev_config_set(struct ublk_dev_config *config, const struct ublk_option *o,
                        const union ublk_opt_value *v, char *why, size_t why_len)
{
        void *field = common_field(config, o->key);
        int r;

        why[0] = 0;
        if (!field) {
                if (!config->target->set_option || !ublk_option_takes(o, config->target->desc))
                        return -EINVAL;
                r = config->target->set_option(config->target_config, o, v);
                if (r == -EINVAL && !why[0])
                        snprintf(why, why_len, "Invalid value for option '%s'", o->key);
                return r;
        }
        if (field == &config->size)
                config->size = v->u;
        else if (field == &config->read_only)
                config->read_only = v->b;
        else if (field == &config->zero_copy)
                config->zero_copy = (enum ublk_zero_copy) v->u;
        else if (field == &config->recovery)
                config->recovery = (enum ublk_recovery) (v->u + 1);
        else if (field == config->name) {
                if (!device_name_is_valid(v->s)) {
                        snprintf(why, why_len, "Invalid name: use 1-%d characters of A-Z a-z 0-9 - _ . not "
                                 "starting with '-' or '.', after 'USER:' for a user's device", UBLK_DEV_NAME_MAX);
                        return -EINVAL;
                }
                snprintf(config->name, sizeof(config->name), "%s", v->s);
        } else {
                /* queues, depth, logical-block-size: "u" */
                if (v->u > UINT32_MAX)
                        return -EINVAL;
                *(uint32_t *) field = (uint32_t) v->u;
        }
        return 0;
}

int ublk_dev_config_get(const struct ublk_dev_config *config, const struct ublk_option *o,
                        union ublk_opt_value *ret)
{
        const void *field = common_field((struct ublk_dev_config *) config, o->key);

        *ret = (union ublk_opt_value) {};
        if (!field) {
                if (!config->target->get_option || !ublk_option_takes(o, config->target->desc))
                        return -ENOENT;
                return config->target->get_option(config->target_config, o, ret);
        }
        if (field == &config->size)
                ret->u = config->size;
        else if (field == &config->read_only)
                ret->b = config->read_only;
        else if (field == &config->zero_copy)
                ret->u = config->zero_copy;
        else if (field == &config->recovery) {
                if (config->recovery == UBLK_RECOVERY_DEFAULT)
                        return -ENOENT;
                ret->u = config->recovery - 1;
        } else if (field == config->name) {
                if (!config->name[0])
                        return -ENOENT;
                ret->s = config->name;
        } else
                ret->u = *(const uint32_t *) field;
        return 0;
}
