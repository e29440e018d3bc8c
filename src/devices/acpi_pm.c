/* SPDX-License-Identifier: BSD-2-Clause */
#include "devices/acpi_pm.h"

#include "core/log.h"

#include <string.h>
#include <time.h>

_Static_assert(ACPI_PM_CNT_OFF == 4, "PM1a_CNT must follow the 4-byte PM1a event block");
_Static_assert(ACPI_PM_TMR_OFF % 4 == 0 && ACPI_PM_TMR_OFF + 4 <= X86_ACPI_PM_LEN,
               "PM_TMR must be an aligned dword inside the block");
_Static_assert(ACPI_PM_RESET_OFF >= ACPI_PM_TMR_OFF + 4 && ACPI_PM_RESET_OFF < X86_ACPI_PM_LEN,
               "the reset register must lie inside the block, after PM_TMR");

#define NSEC_PER_SEC 1000000000ull
#define TIMER_MASK   0xffffffu
#define TIMER_MSB    23

/* Enable bits that read back as written. Events other than the power button never occur, but
 * ACPICA checks that an enable bit sticks and complains when it does not. */
#define EN_MASK                                                                                    \
    (ACPI_PM1_TMR | ACPI_PM1_GBL | ACPI_PM1_PWRBTN | ACPI_PM1_SLPBTN | ACPI_PM1_RTC |              \
     ACPI_PM1_PCIEXP_WAKE)
/* Fixed events that raise the SCI. */
#define SCI_EVENTS ACPI_PM1_PWRBTN
/* Control bits stored; SCI_EN is forced on read, GBL_RLS and SLP_EN are write-only. */
#define CNT_STORED (ACPI_PM1_CNT_BM_RLD | ACPI_PM1_CNT_SLP_TYP_MASK)

static uint64_t monotonic_ns(void *ctx)
{
    (void)ctx;
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return 0; /* cannot fail for CLOCK_MONOTONIC; a frozen timer is the safe fallback */
    return (uint64_t)ts.tv_sec * NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

/* Timer ticks elapsed since init, modulo 2^64 (callers keep the low 24 bits). Split into whole
 * seconds and a fraction so that no product overflows before the final wrap, which is harmless
 * because 2^24 divides 2^64. */
static uint64_t timer_ticks(const struct acpi_pm *pm)
{
    uint64_t ns = pm->cfg.clock_ns(pm->cfg.clock_ctx) - pm->clock_base;
    uint64_t secs = ns / NSEC_PER_SEC;
    uint64_t frac = ns % NSEC_PER_SEC;
    return secs * ACPI_PM_TIMER_HZ + frac * ACPI_PM_TIMER_HZ / NSEC_PER_SEC;
}

/* Read the timer and latch TMR_STS if bit 23 toggled since the previous sample. */
static uint32_t sample_timer(struct acpi_pm *pm)
{
    uint64_t now = timer_ticks(pm);
    if ((now >> TIMER_MSB) != (pm->last_ticks >> TIMER_MSB))
        pm->sts |= ACPI_PM1_TMR;
    pm->last_ticks = now;
    return (uint32_t)(now & TIMER_MASK);
}

static void update_sci(struct acpi_pm *pm)
{
    bool level = (pm->sts & pm->en & SCI_EVENTS) != 0;
    if (level != pm->sci_level) {
        pm->sci_level = level;
        irq_line_set(&pm->cfg.sci, level);
    }
}

int acpi_pm_init(struct acpi_pm *pm, const struct acpi_pm_config *cfg)
{
    memset(pm, 0, sizeof(*pm));
    int ret = -os_mutex_init(&pm->lock);
    if (ret != 0)
        return -ret;
    pm->cfg = *cfg;
    if (pm->cfg.clock_ns == NULL) {
        pm->cfg.clock_ns = monotonic_ns;
        pm->cfg.clock_ctx = NULL;
    }
    pm->clock_base = pm->cfg.clock_ns(pm->cfg.clock_ctx);
    return 0;
}

void acpi_pm_destroy(struct acpi_pm *pm)
{
    os_mutex_destroy(&pm->lock);
}

void acpi_pm_reset(struct acpi_pm *pm)
{
    os_mutex_lock(&pm->lock);
    (void)sample_timer(pm);
    pm->sts = 0;
    pm->en = 0;
    pm->cnt = 0;
    update_sci(pm);
    os_mutex_unlock(&pm->lock);
}

void acpi_pm_press_power_button(struct acpi_pm *pm)
{
    os_mutex_lock(&pm->lock);
    pm->sts |= ACPI_PM1_PWRBTN;
    update_sci(pm);
    os_mutex_unlock(&pm->lock);
}

void acpi_pm_wake(struct acpi_pm *pm)
{
    os_mutex_lock(&pm->lock);
    pm->sts |= ACPI_PM1_WAK_STS;
    update_sci(pm);
    os_mutex_unlock(&pm->lock);
}

/* Locate a byte or word access inside one of the 16-bit registers. On success *reg is the
 * register's offset, *shift the bit position of the access in it and *lanes the bits it
 * covers. */
static bool decode16(uint64_t offset, unsigned size, unsigned *reg, unsigned *shift,
                     uint16_t *lanes)
{
    static const unsigned regs[] = {ACPI_PM_STS_OFF, ACPI_PM_EN_OFF, ACPI_PM_CNT_OFF};
    for (size_t i = 0; i < sizeof(regs) / sizeof(regs[0]); i++) {
        if (size == 2 && offset == regs[i]) {
            *reg = regs[i];
            *shift = 0;
            *lanes = 0xffff;
            return true;
        }
        if (size == 1 && (offset == regs[i] || offset == regs[i] + 1)) {
            *reg = regs[i];
            *shift = (unsigned)(offset - regs[i]) * 8;
            *lanes = (uint16_t)(0xffu << *shift);
            return true;
        }
    }
    return false;
}

static uint64_t all_ones(unsigned size)
{
    return size >= 8 ? UINT64_MAX : (UINT64_C(1) << (size * 8)) - 1;
}

static uint64_t pm_read(void *opaque, uint64_t offset, unsigned size)
{
    struct acpi_pm *pm = opaque;
    unsigned reg;
    unsigned shift;
    uint16_t lanes;
    uint64_t v = all_ones(size);

    os_mutex_lock(&pm->lock);
    uint32_t ticks = sample_timer(pm);
    if (decode16(offset, size, &reg, &shift, &lanes)) {
        uint16_t r = 0;
        if (reg == ACPI_PM_STS_OFF)
            r = pm->sts;
        else if (reg == ACPI_PM_EN_OFF)
            r = pm->en;
        else
            r = (uint16_t)(pm->cnt | ACPI_PM1_CNT_SCI_EN);
        v = (uint64_t)((r & lanes) >> shift);
    } else if (offset == ACPI_PM_TMR_OFF && size == 4) {
        v = ticks;
    } else if (offset == ACPI_PM_RESET_OFF && size == 1) {
        v = 0;
    } else {
        log_guest(LOG_DEBUG, "acpi_pm: unsupported %u-byte read at +%llu", size,
                  (unsigned long long)offset);
    }
    os_mutex_unlock(&pm->lock);
    return v;
}

static void pm_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct acpi_pm *pm = opaque;
    unsigned reg;
    unsigned shift;
    uint16_t lanes;
    bool do_sleep = false;
    bool do_reset = false;
    unsigned slp_typ = 0;

    os_mutex_lock(&pm->lock);
    (void)sample_timer(pm);
    if (decode16(offset, size, &reg, &shift, &lanes)) {
        uint16_t v = (uint16_t)((value << shift) & lanes);
        if (reg == ACPI_PM_STS_OFF) {
            pm->sts &= (uint16_t)~v; /* write 1 to clear */
        } else if (reg == ACPI_PM_EN_OFF) {
            pm->en = (uint16_t)((pm->en & ~lanes) | (v & EN_MASK));
        } else {
            pm->cnt = (uint16_t)((pm->cnt & ~(lanes & CNT_STORED)) | (v & CNT_STORED));
            if (v & ACPI_PM1_CNT_SLP_EN) {
                do_sleep = true;
                slp_typ = (pm->cnt & ACPI_PM1_CNT_SLP_TYP_MASK) >> ACPI_PM1_CNT_SLP_TYP_SHIFT;
            }
        }
        update_sci(pm);
    } else if (offset == ACPI_PM_RESET_OFF && size == 1) {
        if ((value & 0xff) == X86_ACPI_RESET_VALUE)
            do_reset = true;
        else
            log_guest(LOG_DEBUG, "acpi_pm: reset register write of %#llx ignored",
                      (unsigned long long)value);
    } else {
        log_guest(LOG_DEBUG, "acpi_pm: unsupported %u-byte write at +%llu ignored", size,
                  (unsigned long long)offset);
    }
    os_mutex_unlock(&pm->lock);

    /* cfg is constant after init: reading the callbacks without the lock is safe. */
    if (do_sleep) {
        log_guest(LOG_INFO, "acpi_pm: guest requests sleep type %u", slp_typ);
        if (pm->cfg.sleep != NULL)
            pm->cfg.sleep(pm->cfg.ctx, slp_typ);
    }
    if (do_reset) {
        log_guest(LOG_INFO, "acpi_pm: guest requests reset");
        if (pm->cfg.reset != NULL)
            pm->cfg.reset(pm->cfg.ctx);
    }
}

const struct bus_ops acpi_pm_ops = {
    .read = pm_read,
    .write = pm_write,
};
