/* SPDX-License-Identifier: BSD-2-Clause */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "devices/acpi_pm.h"

#include <stdbool.h>
#include <string.h>
#include <time.h>

#define STS   ACPI_PM_STS_OFF
#define EN    ACPI_PM_EN_OFF
#define CNT   ACPI_PM_CNT_OFF
#define TMR   ACPI_PM_TMR_OFF
#define RESET ACPI_PM_RESET_OFF

#define NS_PER_S 1000000000ull
/* An arbitrary non-zero start, so the timer has to count from init rather than from 0. */
#define T0 123456789012ull

#define MAX_EVENTS 32

struct fixture {
    struct acpi_pm pm;
    uint64_t now_ns;
    bool levels[MAX_EVENTS];
    uint32_t gsis[MAX_EVENTS];
    unsigned nr_sci;
    unsigned sleep_types[MAX_EVENTS];
    unsigned nr_sleep;
    unsigned nr_reset;
};

static void fake_sci(void *ctx, uint32_t gsi, bool level)
{
    struct fixture *f = ctx;
    assert_true(f->nr_sci < MAX_EVENTS);
    f->gsis[f->nr_sci] = gsi;
    f->levels[f->nr_sci++] = level;
}

static void fake_sleep(void *ctx, unsigned slp_typ)
{
    struct fixture *f = ctx;
    assert_true(f->nr_sleep < MAX_EVENTS);
    f->sleep_types[f->nr_sleep++] = slp_typ;
}

static void fake_reset(void *ctx)
{
    struct fixture *f = ctx;
    f->nr_reset++;
}

static uint64_t fake_clock(void *ctx)
{
    struct fixture *f = ctx;
    return f->now_ns;
}

static int setup(void **state)
{
    static struct fixture f;
    memset(&f, 0, sizeof(f));
    f.now_ns = T0;
    struct acpi_pm_config cfg = {
        .sci = {.set = fake_sci, .ctx = &f, .gsi = X86_ACPI_SCI_IRQ},
        .sleep = fake_sleep,
        .reset = fake_reset,
        .ctx = &f,
        .clock_ns = fake_clock,
        .clock_ctx = &f,
    };
    assert_int_equal(acpi_pm_init(&f.pm, &cfg), 0);
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    acpi_pm_destroy(&f->pm);
    return 0;
}

static uint64_t rd(struct fixture *f, unsigned off, unsigned size)
{
    return acpi_pm_ops.read(&f->pm, off, size);
}

static void wr(struct fixture *f, unsigned off, unsigned size, uint64_t v)
{
    acpi_pm_ops.write(&f->pm, off, size, v);
}

static bool sci(const struct fixture *f)
{
    return f->nr_sci > 0 && f->levels[f->nr_sci - 1];
}

static void test_layout(void **state)
{
    (void)state;
    /* The offsets follow layout.h, and the FADT describes the same block. */
    assert_int_equal(STS, 0);
    assert_int_equal(EN, 2);
    assert_int_equal(CNT, 4);
    assert_int_equal(TMR, 8);
    assert_int_equal(RESET, 12);
}

static void test_reset_values(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(rd(f, STS, 2), 0);
    assert_int_equal(rd(f, EN, 2), 0);
    assert_int_equal(rd(f, CNT, 2), ACPI_PM1_CNT_SCI_EN);
    assert_int_equal(rd(f, TMR, 4), 0);
    assert_int_equal(rd(f, RESET, 1), 0);
    assert_int_equal(f->nr_sci, 0);
}

static void test_power_button_sci(void **state)
{
    struct fixture *f = *state;
    acpi_pm_press_power_button(&f->pm);
    assert_int_equal(rd(f, STS, 2), ACPI_PM1_PWRBTN);
    assert_int_equal(f->nr_sci, 0); /* not enabled: no SCI */
    wr(f, EN, 2, ACPI_PM1_PWRBTN);
    assert_int_equal(rd(f, EN, 2), ACPI_PM1_PWRBTN);
    assert_int_equal(f->nr_sci, 1);
    assert_int_equal(f->gsis[0], X86_ACPI_SCI_IRQ);
    assert_true(f->levels[0]);
    /* Writing 0 bits clears nothing. */
    wr(f, STS, 2, 0);
    assert_int_equal(rd(f, STS, 2), ACPI_PM1_PWRBTN);
    assert_int_equal(f->nr_sci, 1);
    /* Write 1 to clear. */
    wr(f, STS, 2, ACPI_PM1_PWRBTN);
    assert_int_equal(rd(f, STS, 2), 0);
    assert_int_equal(f->nr_sci, 2);
    assert_false(sci(f));
    /* Pressing with the event enabled raises the SCI at once; a second press does not
     * repeat the level. */
    acpi_pm_press_power_button(&f->pm);
    assert_true(sci(f));
    acpi_pm_press_power_button(&f->pm);
    assert_int_equal(f->nr_sci, 3);
    /* Disabling the event lowers the SCI while the status stays. */
    wr(f, EN, 2, 0);
    assert_false(sci(f));
    assert_int_equal(rd(f, STS, 2), ACPI_PM1_PWRBTN);
    wr(f, EN, 2, ACPI_PM1_PWRBTN);
    assert_true(sci(f));
    /* Byte write to the high half of PM1_STS clears it too. */
    wr(f, STS + 1, 1, ACPI_PM1_PWRBTN >> 8);
    assert_false(sci(f));
    assert_int_equal(rd(f, STS, 2), 0);
}

static void test_status_w1c(void **state)
{
    struct fixture *f = *state;
    acpi_pm_press_power_button(&f->pm);
    acpi_pm_wake(&f->pm);
    assert_int_equal(rd(f, STS, 2), ACPI_PM1_PWRBTN | ACPI_PM1_WAK_STS);
    assert_int_equal(f->nr_sci, 0); /* WAK_STS is not an SCI source */
    wr(f, STS, 2, ACPI_PM1_WAK_STS);
    assert_int_equal(rd(f, STS, 2), ACPI_PM1_PWRBTN);
    /* Byte reads see each half. */
    assert_int_equal(rd(f, STS, 1), 0);
    assert_int_equal(rd(f, STS + 1, 1), ACPI_PM1_PWRBTN >> 8);
    /* A low-byte write does not touch the high byte. */
    wr(f, STS, 1, 0xff);
    assert_int_equal(rd(f, STS, 2), ACPI_PM1_PWRBTN);
    wr(f, STS, 2, 0xffff);
    assert_int_equal(rd(f, STS, 2), 0);
}

static void test_enable_register(void **state)
{
    struct fixture *f = *state;
    wr(f, EN, 2, 0xffff);
    /* Every defined enable bit reads back; reserved bits do not. */
    assert_int_equal(rd(f, EN, 2), ACPI_PM1_TMR | ACPI_PM1_GBL | ACPI_PM1_PWRBTN | ACPI_PM1_SLPBTN |
                                       ACPI_PM1_RTC | ACPI_PM1_PCIEXP_WAKE);
    wr(f, EN, 1, 0x00); /* low byte only */
    assert_int_equal(rd(f, EN, 2),
                     ACPI_PM1_PWRBTN | ACPI_PM1_SLPBTN | ACPI_PM1_RTC | ACPI_PM1_PCIEXP_WAKE);
    assert_int_equal(rd(f, EN + 1, 1),
                     (ACPI_PM1_PWRBTN | ACPI_PM1_SLPBTN | ACPI_PM1_RTC | ACPI_PM1_PCIEXP_WAKE) >>
                         8);
    wr(f, EN, 2, 0);
    assert_int_equal(rd(f, EN, 2), 0);
    assert_int_equal(f->nr_sci, 0); /* nothing pending: enabling raised no SCI */
}

static void test_control_sleep(void **state)
{
    struct fixture *f = *state;
    /* SCI_EN reads 1 whatever is written: ACPI mode is permanent. */
    wr(f, CNT, 2, 0);
    assert_int_equal(rd(f, CNT, 2), ACPI_PM1_CNT_SCI_EN);
    /* SLP_TYP alone is stored and does nothing. */
    wr(f, CNT, 2, X86_ACPI_S5_TYPE << ACPI_PM1_CNT_SLP_TYP_SHIFT);
    assert_int_equal(f->nr_sleep, 0);
    assert_int_equal(rd(f, CNT, 2),
                     (X86_ACPI_S5_TYPE << ACPI_PM1_CNT_SLP_TYP_SHIFT) | ACPI_PM1_CNT_SCI_EN);
    /* SLP_EN with S5 calls the sleep callback with the type. */
    wr(f, CNT, 2,
       (X86_ACPI_S5_TYPE << ACPI_PM1_CNT_SLP_TYP_SHIFT) | ACPI_PM1_CNT_SLP_EN |
           ACPI_PM1_CNT_SCI_EN);
    assert_int_equal(f->nr_sleep, 1);
    assert_int_equal(f->sleep_types[0], X86_ACPI_S5_TYPE);
    /* SLP_EN is write-only. */
    assert_int_equal(rd(f, CNT, 2) & ACPI_PM1_CNT_SLP_EN, 0);
    /* Another type is passed on as well; the machine decides. */
    wr(f, CNT, 2, (1u << ACPI_PM1_CNT_SLP_TYP_SHIFT) | ACPI_PM1_CNT_SLP_EN);
    assert_int_equal(f->nr_sleep, 2);
    assert_int_equal(f->sleep_types[1], 1);
    /* A byte write to the high half with SLP_EN works like the word write. */
    wr(f, CNT + 1, 1, ((7u << ACPI_PM1_CNT_SLP_TYP_SHIFT) | ACPI_PM1_CNT_SLP_EN) >> 8);
    assert_int_equal(f->nr_sleep, 3);
    assert_int_equal(f->sleep_types[2], 7);
    /* BM_RLD is stored; GBL_RLS is write-only. */
    wr(f, CNT, 1, ACPI_PM1_CNT_BM_RLD | ACPI_PM1_CNT_GBL_RLS);
    assert_int_equal(rd(f, CNT, 2), ACPI_PM1_CNT_BM_RLD | ACPI_PM1_CNT_SCI_EN |
                                        (7u << ACPI_PM1_CNT_SLP_TYP_SHIFT));
    assert_int_equal(f->nr_sleep, 3);
}

static void test_reset_register(void **state)
{
    struct fixture *f = *state;
    wr(f, RESET, 1, 0x02);
    wr(f, RESET, 1, 0x00);
    assert_int_equal(f->nr_reset, 0);
    wr(f, RESET, 2, X86_ACPI_RESET_VALUE); /* wrong width */
    assert_int_equal(f->nr_reset, 0);
    wr(f, RESET, 1, X86_ACPI_RESET_VALUE);
    assert_int_equal(f->nr_reset, 1);
    assert_int_equal(f->nr_sleep, 0);
}

static void test_pm_timer(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(rd(f, TMR, 4), 0);
    f->now_ns = T0 + NS_PER_S;
    assert_int_equal(rd(f, TMR, 4), 3579545);
    f->now_ns = T0 + 1000; /* 1 us = 3.58 ticks, truncated */
    assert_int_equal(rd(f, TMR, 4), 3);
    /* 5 s is past the 24-bit wrap (about 4.69 s). */
    f->now_ns = T0 + 5 * NS_PER_S;
    assert_int_equal(rd(f, TMR, 4), (5ull * 3579545) % (1u << 24));
    /* Far in the future the arithmetic still holds (no overflow of ns * Hz). */
    f->now_ns = T0 + 100000 * NS_PER_S + NS_PER_S / 2;
    assert_int_equal(rd(f, TMR, 4), (100000ull * 3579545 + 3579545 / 2) % (1u << 24));
    /* Writes are ignored. */
    wr(f, TMR, 4, 0);
    assert_int_equal(rd(f, TMR, 4), (100000ull * 3579545 + 3579545 / 2) % (1u << 24));
}

static void test_pm_timer_monotonic(void **state)
{
    struct fixture *f = *state;
    uint32_t prev = (uint32_t)rd(f, TMR, 4);
    uint64_t total = 0;
    /* Steps of 7.3 ms over 20 s: every step advances by the expected count modulo 2^24. */
    for (int i = 1; i <= 2740; i++) {
        f->now_ns = T0 + (uint64_t)i * 7300000;
        uint32_t v = (uint32_t)rd(f, TMR, 4);
        assert_true(v < (1u << 24));
        uint32_t delta = (v - prev) & 0xffffff;
        assert_in_range(delta, 26130, 26131);
        total += delta;
        prev = v;
    }
    /* The steps add up to the count for the whole 20.002 s, truncated once. */
    assert_int_equal(total, 2740ull * 7300000 * 3579545 / NS_PER_S);
}

static void test_tmr_sts(void **state)
{
    struct fixture *f = *state;
    wr(f, EN, 2, ACPI_PM1_TMR);
    f->now_ns = T0 + 2 * NS_PER_S; /* 7159090 ticks: bit 23 not yet reached */
    assert_int_equal(rd(f, STS, 2) & ACPI_PM1_TMR, 0);
    f->now_ns = T0 + 3 * NS_PER_S; /* 10738635 > 2^23 */
    assert_int_equal(rd(f, STS, 2) & ACPI_PM1_TMR, ACPI_PM1_TMR);
    wr(f, STS, 2, ACPI_PM1_TMR);
    assert_int_equal(rd(f, STS, 2) & ACPI_PM1_TMR, 0);
    f->now_ns = T0 + 4 * NS_PER_S; /* still below 2^24 */
    assert_int_equal(rd(f, STS, 2) & ACPI_PM1_TMR, 0);
    f->now_ns = T0 + 5 * NS_PER_S; /* wrapped: bit 23 toggled back */
    assert_int_equal(rd(f, STS, 2) & ACPI_PM1_TMR, ACPI_PM1_TMR);
    /* The timer carry is not an SCI source here, even with its status and enable set. */
    wr(f, EN, 2, ACPI_PM1_TMR | ACPI_PM1_PWRBTN);
    assert_int_equal(rd(f, STS, 2) & ACPI_PM1_TMR, ACPI_PM1_TMR);
    assert_int_equal(f->nr_sci, 0);
}

static void test_unsupported_accesses(void **state)
{
    struct fixture *f = *state;
    acpi_pm_press_power_button(&f->pm);
    assert_int_equal(rd(f, STS, 4), 0xffffffffu);
    assert_int_equal(rd(f, STS + 1, 2), 0xffff); /* straddles STS and EN */
    assert_int_equal(rd(f, TMR, 2), 0xffff);
    assert_int_equal(rd(f, TMR + 1, 1), 0xff);
    assert_int_equal(rd(f, 6, 2), 0xffff);
    assert_int_equal(rd(f, 13, 1), 0xff);
    assert_int_equal(rd(f, 14, 2), 0xffff);
    assert_int_equal(rd(f, 0, 8), UINT64_MAX);
    wr(f, STS, 4, 0xffffffffu);
    wr(f, STS + 1, 2, 0xffff);
    wr(f, 6, 2, 0xffff);
    wr(f, 13, 1, X86_ACPI_RESET_VALUE);
    assert_int_equal(rd(f, STS, 2), ACPI_PM1_PWRBTN);
    assert_int_equal(rd(f, EN, 2), 0);
    assert_int_equal(f->nr_reset, 0);
    assert_int_equal(f->nr_sleep, 0);
}

static void test_machine_reset(void **state)
{
    struct fixture *f = *state;
    wr(f, EN, 2, ACPI_PM1_PWRBTN);
    wr(f, CNT, 2, 5u << ACPI_PM1_CNT_SLP_TYP_SHIFT);
    acpi_pm_press_power_button(&f->pm);
    assert_true(sci(f));
    f->now_ns = T0 + NS_PER_S;
    acpi_pm_reset(&f->pm);
    assert_false(sci(f));
    assert_int_equal(rd(f, STS, 2), 0);
    assert_int_equal(rd(f, EN, 2), 0);
    assert_int_equal(rd(f, CNT, 2), ACPI_PM1_CNT_SCI_EN);
    assert_int_equal(rd(f, TMR, 4), 3579545); /* the timer keeps running */
}

static void test_default_clock(void **state)
{
    (void)state;
    struct acpi_pm pm;
    struct acpi_pm_config cfg = {0};
    assert_int_equal(acpi_pm_init(&pm, &cfg), 0);
    uint32_t a = (uint32_t)acpi_pm_ops.read(&pm, TMR, 4);
    struct timespec ts = {.tv_sec = 0, .tv_nsec = 2000000};
    nanosleep(&ts, NULL);
    uint32_t b = (uint32_t)acpi_pm_ops.read(&pm, TMR, 4);
    /* At least 2 ms passed: about 7159 ticks. */
    assert_true(((b - a) & 0xffffff) >= 7000);
    /* Callbacks may be absent: requests are logged and ignored. */
    acpi_pm_ops.write(&pm, RESET, 1, X86_ACPI_RESET_VALUE);
    acpi_pm_ops.write(&pm, CNT, 2, ACPI_PM1_CNT_SLP_EN);
    acpi_pm_press_power_button(&pm);
    acpi_pm_destroy(&pm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout),
        cmocka_unit_test_setup_teardown(test_reset_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_power_button_sci, setup, teardown),
        cmocka_unit_test_setup_teardown(test_status_w1c, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enable_register, setup, teardown),
        cmocka_unit_test_setup_teardown(test_control_sleep, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_register, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pm_timer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pm_timer_monotonic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tmr_sts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unsupported_accesses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_machine_reset, setup, teardown),
        cmocka_unit_test(test_default_clock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
