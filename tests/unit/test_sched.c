/* SPDX-License-Identifier: BSD-2-Clause */
/* --sched: the words, and the class a thread is really in afterwards (and what its
 * threads inherit, which is how the VMM's vCPU and device threads get it). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "host/sched.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>

static void test_parse(void **state)
{
    (void)state;
    enum host_sched s = HOST_SCHED_NORMAL;
    assert_int_equal(host_sched_parse("batch", &s), 0);
    assert_int_equal(s, HOST_SCHED_BATCH);
    assert_int_equal(host_sched_parse("normal", &s), 0);
    assert_int_equal(s, HOST_SCHED_NORMAL);
    const char *bad[] = {"", "Batch", "fifo", "batch ", "idle"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        s = HOST_SCHED_BATCH;
        assert_int_equal(host_sched_parse(bad[i], &s), -EINVAL);
        assert_int_equal(s, HOST_SCHED_BATCH); /* untouched */
    }
    assert_int_equal(host_sched_parse(NULL, &s), -EINVAL);
    assert_string_equal(host_sched_name(HOST_SCHED_BATCH), "batch");
    assert_string_equal(host_sched_name(HOST_SCHED_NORMAL), "normal");
}

static void *child_policy(void *arg)
{
    *(int *)arg = sched_getscheduler(0);
    return NULL;
}

/* In a thread of its own, so that the test program's main thread keeps its class. */
static void *apply_and_spawn(void *arg)
{
    int *out = arg;
    out[0] = host_sched_apply(HOST_SCHED_BATCH);
    out[1] = sched_getscheduler(0);
    out[2] = (int)host_sched_current();
    pthread_t t;
    out[3] = -1;
    if (pthread_create(&t, NULL, child_policy, &out[3]) == 0)
        pthread_join(t, NULL);
    out[4] = host_sched_apply(HOST_SCHED_NORMAL);
    out[5] = sched_getscheduler(0);
    out[6] = (int)host_sched_current();
    return NULL;
}

static void test_apply_and_inherit(void **state)
{
    (void)state;
    int out[7];
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, apply_and_spawn, out), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(out[0], 0);
    assert_int_equal(out[1], SCHED_BATCH);
    assert_int_equal(out[2], HOST_SCHED_BATCH);
    assert_int_equal(out[3], SCHED_BATCH); /* a thread created afterwards inherits it */
    assert_int_equal(out[4], 0);
    assert_int_equal(out[5], SCHED_OTHER);
    assert_int_equal(out[6], HOST_SCHED_NORMAL);
    /* Only the calling thread changed. */
    assert_int_equal(sched_getscheduler(0), SCHED_OTHER);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_apply_and_inherit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
