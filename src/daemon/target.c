/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <stddef.h>
#include <string.h>

#include "macro.h"
#include "target.h"

static const struct ublk_target_ops *const targets[] = {
        &target_null_ops,
        &target_loop_ops,
};

static const char *const names[] = {
        "null",
        "loop",
        NULL,
};

const struct ublk_target_ops *target_find(const char *name)
{
        for (size_t i = 0; i < ELEMENTSOF(targets); i++)
                if (strcmp(targets[i]->name, name) == 0)
                        return targets[i];
        return NULL;
}

const char *const *target_names(void)
{
        return names;
}
