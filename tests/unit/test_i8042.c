/* SPDX-License-Identifier: BSD-2-Clause */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>

#include "arch/x86/layout.h"
#include "core/bus.h"
#include "devices/i8042.h"

static unsigned nr_resets;

static void fake_reset(void *ctx)
{
    unsigned *count = ctx;
    (*count)++;
}

static void test_status_and_data_read_zero(void **state)
{
    (void)state;
    struct i8042 k;
    i8042_init(&k, fake_reset, &nr_resets);
    /* Status 0: output buffer empty, input buffer empty, so reboot loops never wait. */
    assert_int_equal(i8042_cmd_ops.read(&k, 0, 1), 0);
    assert_int_equal(i8042_data_ops.read(&k, 0, 1), 0);
}

static void test_reset_command(void **state)
{
    (void)state;
    struct i8042 k;
    nr_resets = 0;
    i8042_init(&k, fake_reset, &nr_resets);
    i8042_cmd_ops.write(&k, 0, 1, I8042_CMD_RESET);
    assert_int_equal(nr_resets, 1);
    i8042_cmd_ops.write(&k, 0, 1, 0xfe);
    assert_int_equal(nr_resets, 2);
}

static void test_other_commands_ignored(void **state)
{
    (void)state;
    struct i8042 k;
    nr_resets = 0;
    i8042_init(&k, fake_reset, &nr_resets);
    for (unsigned cmd = 0; cmd < 0x100; cmd++) {
        if (cmd != I8042_CMD_RESET)
            i8042_cmd_ops.write(&k, 0, 1, cmd);
    }
    /* 0xfe on the data port is keyboard data, not a controller command. */
    i8042_data_ops.write(&k, 0, 1, 0xfe);
    assert_int_equal(nr_resets, 0);
    assert_int_equal(i8042_cmd_ops.read(&k, 0, 1), 0);
}

static void test_null_callback(void **state)
{
    (void)state;
    struct i8042 k;
    i8042_init(&k, NULL, NULL);
    i8042_cmd_ops.write(&k, 0, 1, I8042_CMD_RESET); /* logged, no crash */
    assert_int_equal(i8042_cmd_ops.read(&k, 0, 1), 0);
}

static void test_register_on_bus(void **state)
{
    (void)state;
    struct bus pio;
    struct i8042 k;
    uint64_t v = 1;
    nr_resets = 0;
    assert_int_equal(bus_init(&pio, "pio"), 0);
    i8042_init(&k, fake_reset, &nr_resets);
    assert_int_equal(i8042_register(&k, &pio), 0);
    assert_int_equal(bus_read(&pio, X86_I8042_CMD_PORT, 1, &v), 0);
    assert_int_equal(v, 0);
    v = 1;
    assert_int_equal(bus_read(&pio, X86_I8042_DATA_PORT, 1, &v), 0);
    assert_int_equal(v, 0);
    /* The ports in between stay free for other devices. */
    assert_int_equal(bus_read(&pio, X86_I8042_DATA_PORT + 1, 1, &v), -ENOENT);
    assert_int_equal(bus_write(&pio, X86_I8042_DATA_PORT, 1, I8042_CMD_RESET), 0);
    assert_int_equal(nr_resets, 0);
    assert_int_equal(bus_write(&pio, X86_I8042_CMD_PORT, 1, I8042_CMD_RESET), 0);
    assert_int_equal(nr_resets, 1);
    /* A second registration fails and leaves the first intact. */
    struct i8042 k2;
    i8042_init(&k2, NULL, NULL);
    assert_int_equal(i8042_register(&k2, &pio), -EEXIST);
    assert_int_equal(bus_write(&pio, X86_I8042_CMD_PORT, 1, I8042_CMD_RESET), 0);
    assert_int_equal(nr_resets, 2);
    bus_destroy(&pio);
}

static void test_register_rolls_back(void **state)
{
    (void)state;
    struct bus pio;
    struct i8042 k;
    static const struct bus_ops dummy = {0};
    assert_int_equal(bus_init(&pio, "pio"), 0);
    /* Something already owns the command port: the data port must not stay registered. */
    assert_int_equal(bus_register(&pio, X86_I8042_CMD_PORT, 1, &dummy, NULL, "other"), 0);
    i8042_init(&k, NULL, NULL);
    assert_int_equal(i8042_register(&k, &pio), -EEXIST);
    assert_int_equal(bus_unregister(&pio, X86_I8042_DATA_PORT, &k), -ENOENT);
    bus_destroy(&pio);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_and_data_read_zero),
        cmocka_unit_test(test_reset_command),
        cmocka_unit_test(test_other_commands_ignored),
        cmocka_unit_test(test_null_callback),
        cmocka_unit_test(test_register_on_bus),
        cmocka_unit_test(test_register_rolls_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
