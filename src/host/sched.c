/* SPDX-License-Identifier: BSD-2-Clause */
#include "host/sched.h"

#include <errno.h>
#include <sched.h>
#include <string.h>

int host_sched_parse(const char *arg, enum host_sched *out)
{
    if (arg == NULL)
        return -EINVAL;
    if (strcmp(arg, "batch") == 0)
        *out = HOST_SCHED_BATCH;
    else if (strcmp(arg, "normal") == 0)
        *out = HOST_SCHED_NORMAL;
    else
        return -EINVAL;
    return 0;
}

int host_sched_apply(enum host_sched s)
{
    const struct sched_param p = {.sched_priority = 0};
    /* pid 0 is the calling thread on Linux, not the whole process. */
    if (sched_setscheduler(0, s == HOST_SCHED_BATCH ? SCHED_BATCH : SCHED_OTHER, &p) != 0)
        return -errno;
    return 0;
}

enum host_sched host_sched_current(void)
{
    return sched_getscheduler(0) == SCHED_BATCH ? HOST_SCHED_BATCH : HOST_SCHED_NORMAL;
}

const char *host_sched_name(enum host_sched s)
{
    return s == HOST_SCHED_BATCH ? "batch" : "normal";
}
