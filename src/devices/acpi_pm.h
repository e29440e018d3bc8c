/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file acpi_pm.h
 * @brief ACPI fixed-hardware registers: PM1 event and control blocks, PM timer, reset register.
 *
 * One 16-port I/O range (X86_ACPI_PM1A_EVT_PORT, X86_ACPI_PM_LEN bytes) holds, at offsets
 * taken from arch/x86/layout.h:
 * - +0 PM1a_STS (16 bits): fixed-event status, write 1 to clear (ACPI 6.x, 4.8.3.1.1);
 * - +2 PM1a_EN (16 bits): fixed-event enables (4.8.3.1.2);
 * - +4 PM1a_CNT (16 bits): SCI_EN (always 1: the machine has no SMI handler, so ACPI mode is
 *   permanent and the FADT's SMI_CMD is 0), SLP_TYP and SLP_EN (4.8.3.2.1);
 * - +8 PM_TMR (32 bits, read-only): 24-bit counter at 3.579545 MHz (4.8.3.3);
 * - +12 RESET_REG (8 bits): writing X86_ACPI_RESET_VALUE resets the machine (FADT, 5.2.9).
 *
 * The 16-bit registers also accept byte accesses to either half; PM_TMR takes 32-bit reads
 * and the reset register 8-bit writes. Any other width or offset reads all-ones and is
 * ignored on write.
 *
 * The SCI (level-triggered, active high) is asserted while a supported fixed event has both
 * its status and enable bits set. The supported event is the power button; the other enable
 * bits are stored so that an OS that enables them reads back what it wrote, but their events
 * never occur. TMR_STS is maintained (set whenever bit 23 of the timer has toggled since the
 * previous register access), but does not raise the SCI: the device has no timer of its
 * own to raise it at the right moment, so the FADT must not rely on it.
 *
 * Locking: a mutex guards the state (vCPU threads, and the supervisor pressing the power
 * button). The SCI setter is called with it held and must not call back into this device;
 * the sleep and reset callbacks are called without it and may call acpi_pm_wake() or any
 * other function here. They run on the vCPU thread inside a bus callback, so they must not
 * register or unregister ranges of the I/O bus; a machine normally records the request
 * and kicks its vCPUs.
 */
#ifndef BULKHEAD_DEVICES_ACPI_PM_H
#define BULKHEAD_DEVICES_ACPI_PM_H

#include "arch/x86/layout.h"
#include "core/bus.h"
#include "core/irq.h"

#include "core/lock.h"
#include <stdbool.h>
#include <stdint.h>

/** Offset of PM1a_STS in the block. */
#define ACPI_PM_STS_OFF 0u
/** Offset of PM1a_EN: the second half of the PM1a event block. */
#define ACPI_PM_EN_OFF 2u
/** Offset of PM1a_CNT in the block. */
#define ACPI_PM_CNT_OFF ((unsigned)(X86_ACPI_PM1A_CNT_PORT - X86_ACPI_PM1A_EVT_PORT))
/** Offset of PM_TMR in the block. */
#define ACPI_PM_TMR_OFF ((unsigned)(X86_ACPI_PM_TMR_PORT - X86_ACPI_PM1A_EVT_PORT))
/** Offset of the reset register in the block. */
#define ACPI_PM_RESET_OFF ((unsigned)(X86_ACPI_RESET_PORT - X86_ACPI_PM1A_EVT_PORT))

/** PM timer frequency in Hz, fixed by the ACPI specification. */
#define ACPI_PM_TIMER_HZ 3579545u

/** PM1 status/enable: timer carry (bit 23 of PM_TMR toggled). */
#define ACPI_PM1_TMR 0x0001u
/** PM1 status: bus master activity (never set here). */
#define ACPI_PM1_BM_STS 0x0010u
/** PM1 status/enable: global lock release (never set here). */
#define ACPI_PM1_GBL 0x0020u
/** PM1 status/enable: fixed power button. */
#define ACPI_PM1_PWRBTN 0x0100u
/** PM1 status/enable: fixed sleep button (never set here). */
#define ACPI_PM1_SLPBTN 0x0200u
/** PM1 status/enable: RTC alarm (never set here). */
#define ACPI_PM1_RTC 0x0400u
/** PM1 status: PCIe wake; enable register: PCIEXP_WAKE_DIS (never set here). */
#define ACPI_PM1_PCIEXP_WAKE 0x4000u
/** PM1 status: the system has woken (see acpi_pm_wake()). */
#define ACPI_PM1_WAK_STS 0x8000u

/** PM1 control: SCI_EN, reads 1 always. */
#define ACPI_PM1_CNT_SCI_EN 0x0001u
/** PM1 control: BM_RLD (stored only). */
#define ACPI_PM1_CNT_BM_RLD 0x0002u
/** PM1 control: GBL_RLS (write-only, no effect). */
#define ACPI_PM1_CNT_GBL_RLS 0x0004u
/** PM1 control: shift of the 3-bit SLP_TYP field. */
#define ACPI_PM1_CNT_SLP_TYP_SHIFT 10
/** PM1 control: SLP_TYP field mask. */
#define ACPI_PM1_CNT_SLP_TYP_MASK 0x1c00u
/** PM1 control: SLP_EN (write-only; writing 1 enters the state in SLP_TYP). */
#define ACPI_PM1_CNT_SLP_EN 0x2000u

/** Callbacks and parameters of the block. */
struct acpi_pm_config {
    struct irq_line sci; /**< The SCI (x86: GSI X86_ACPI_SCI_IRQ, level-triggered). */
    /**
     * The guest wrote SLP_EN. The machine powers off for X86_ACPI_S5_TYPE; for a state it
     * does not enter it should call acpi_pm_wake() so a guest waiting for WAK_STS resumes.
     * Called without the device lock, on the writing vCPU's thread. NULL: requests are
     * logged and ignored.
     * @param ctx the ctx member.
     * @param slp_typ the SLP_TYP value written with SLP_EN (0..7).
     */
    void (*sleep)(void *ctx, unsigned slp_typ);
    /**
     * The guest wrote the reset value to the reset register. Called without the device lock,
     * on the writing vCPU's thread. NULL: requests are logged and ignored.
     * @param ctx the ctx member.
     */
    void (*reset)(void *ctx);
    void *ctx; /**< Passed to sleep() and reset(). */
    /**
     * Monotonic clock driving the PM timer. NULL selects CLOCK_MONOTONIC; tests inject one.
     * @param clock_ctx the clock_ctx member.
     * @return nanoseconds since an arbitrary fixed point, never decreasing.
     */
    uint64_t (*clock_ns)(void *clock_ctx);
    void *clock_ctx; /**< Passed to clock_ns(). */
};

/** State of the block. Embed it in the machine; the members are private to acpi_pm.c. */
struct acpi_pm {
    os_mutex lock;             /**< Guards the registers below. */
    struct acpi_pm_config cfg; /**< Callbacks, copied at init (clock_ns never NULL). */
    uint64_t clock_base;       /**< Clock reading at init: the timer counts from there. */
    uint64_t last_ticks;       /**< Timer ticks at the previous access, for TMR_STS. */
    uint16_t sts;              /**< PM1a_STS. */
    uint16_t en;               /**< PM1a_EN. */
    uint16_t cnt;              /**< PM1a_CNT as stored (SLP_TYP, BM_RLD). */
    bool sci_level;            /**< Level last driven on the SCI. */
};

/**
 * Initialise the block in its reset state (all events clear and disabled, timer at 0).
 * @param pm the block.
 * @param cfg callbacks (copied).
 * @return 0, or a negative errno from the mutex initialisation.
 */
int acpi_pm_init(struct acpi_pm *pm, const struct acpi_pm_config *cfg);

/**
 * Release the block's resources. No thread may be using it any more.
 * @param pm the block.
 */
void acpi_pm_destroy(struct acpi_pm *pm);

/**
 * Machine reset: clear status, enable and control registers and lower the SCI. The timer
 * keeps running, as it does across a platform reset.
 * @param pm the block.
 */
void acpi_pm_reset(struct acpi_pm *pm);

/**
 * Press the fixed power button: sets PWRBTN_STS and asserts the SCI if PWRBTN_EN is set.
 * An ACPI OS answers with an orderly shutdown. Safe from any thread.
 * @param pm the block.
 */
void acpi_pm_press_power_button(struct acpi_pm *pm);

/**
 * Report that the machine has woken (or refused to sleep): sets WAK_STS, which an OS polls
 * after writing SLP_EN. Safe from any thread, including the sleep callback.
 * @param pm the block.
 */
void acpi_pm_wake(struct acpi_pm *pm);

/**
 * Bus callbacks for the X86_ACPI_PM_LEN-port range at X86_ACPI_PM1A_EVT_PORT; the opaque is
 * the struct acpi_pm.
 */
extern const struct bus_ops acpi_pm_ops;

#endif
