/* SPDX-License-Identifier: BSD-2-Clause */
#include "devices/uart16550.h"

#include "core/log.h"

#include <string.h>

/* Register offsets (PC16550D table II). DLAB selects DLL/DLM at offsets 0 and 1. */
enum {
    REG_RBR_THR = 0, /* also DLL with DLAB */
    REG_IER = 1,     /* also DLM with DLAB */
    REG_IIR_FCR = 2,
    REG_LCR = 3,
    REG_MCR = 4,
    REG_LSR = 5,
    REG_MSR = 6,
    REG_SCR = 7,
};

#define IER_ERBFI 0x01 /* received data available */
#define IER_ETBEI 0x02 /* transmitter holding register empty */
#define IER_ELSI  0x04 /* receiver line status */
#define IER_EDSSI 0x08 /* modem status */
#define IER_MASK  0x0f /* bits 4-7 are always 0 on a 16550 */

#define IIR_NO_INT  0x01
#define IIR_MSR     0x00
#define IIR_THRE    0x02
#define IIR_RDA     0x04
#define IIR_RLS     0x06
#define IIR_FIFO_ON 0xc0

#define FCR_ENABLE   0x01
#define FCR_CLEAR_RX 0x02
#define FCR_CLEAR_TX 0x04

#define LCR_DLAB 0x80

#define MCR_DTR  0x01
#define MCR_RTS  0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08
#define MCR_LOOP 0x10
#define MCR_MASK 0x1f /* bits 5-7 are always 0 on a 16550 */

#define LSR_DR   0x01
#define LSR_OE   0x02
#define LSR_THRE 0x20
#define LSR_TEMT 0x40

#define MSR_DCTS 0x01
#define MSR_DDSR 0x02
#define MSR_TERI 0x04
#define MSR_DDCD 0x08
#define MSR_CTS  0x10
#define MSR_DSR  0x20
#define MSR_RI   0x40
#define MSR_DCD  0x80

/* Divisor for 9600 baud from the PC's 1.8432 MHz clock: a plausible value for a guest that
 * reads the divisor before programming it (the chip leaves it undefined). */
#define DEFAULT_DIVISOR 12

/** Work left for after the lock is dropped: the rx-ready callback must not run under it. */
struct deferred {
    bool rx_ready; /**< The host input side is owed its wake-up. */
};

static bool loopback(const struct uart16550 *u)
{
    return (u->mcr & MCR_LOOP) != 0;
}

static unsigned rx_capacity(const struct uart16550 *u)
{
    return u->fifo_enabled ? UART16550_FIFO_SIZE : 1;
}

/* Modem input lines as seen in MSR bits 4-7. Outside loopback nothing is attached, so report
 * a peer that is always present and ready (CTS, DSR, DCD), which keeps flow control and carrier
 * checks of drivers satisfied. In loopback the outputs feed the inputs. */
static uint8_t modem_inputs(const struct uart16550 *u)
{
    if (!loopback(u))
        return MSR_CTS | MSR_DSR | MSR_DCD;
    uint8_t v = 0;
    if (u->mcr & MCR_DTR)
        v |= MSR_DSR;
    if (u->mcr & MCR_RTS)
        v |= MSR_CTS;
    if (u->mcr & MCR_OUT1)
        v |= MSR_RI;
    if (u->mcr & MCR_OUT2)
        v |= MSR_DCD;
    return v;
}

static void update_msr(struct uart16550 *u)
{
    uint8_t now = modem_inputs(u);
    uint8_t changed = now ^ u->msr;
    if (changed & MSR_CTS)
        u->msr_delta |= MSR_DCTS;
    if (changed & MSR_DSR)
        u->msr_delta |= MSR_DDSR;
    /* TERI reports only the trailing edge of ring indicate. */
    if ((changed & MSR_RI) && !(now & MSR_RI))
        u->msr_delta |= MSR_TERI;
    if (changed & MSR_DCD)
        u->msr_delta |= MSR_DDCD;
    u->msr = now;
}

/* The highest-priority enabled interrupt, as IIR bits 0-3 (datasheet table IV). With a FIFO
 * the character-timeout indication is folded into "data available": a driver drains the FIFO
 * on either, and data is never stuck below the trigger level this way. */
static uint8_t pending_source(const struct uart16550 *u)
{
    if ((u->ier & IER_ELSI) && u->overrun)
        return IIR_RLS;
    if ((u->ier & IER_ERBFI) && u->rx_count > 0)
        return IIR_RDA;
    if ((u->ier & IER_ETBEI) && u->thre_pending)
        return IIR_THRE;
    if ((u->ier & IER_EDSSI) && u->msr_delta != 0)
        return IIR_MSR;
    return IIR_NO_INT;
}

/* Called with the lock held, after every state change that can affect the output. */
static void update_irq(struct uart16550 *u)
{
    bool level = pending_source(u) != IIR_NO_INT && (u->mcr & MCR_OUT2);
    if (level != u->irq_level) {
        u->irq_level = level;
        irq_line_set(&u->irq, level);
    }
}

static void rx_clear(struct uart16550 *u)
{
    u->rx_head = 0;
    u->rx_count = 0;
}

/* A byte arriving at the receiver from the loopback path. A full receiver overruns: in FIFO
 * mode the new byte is lost, in 16450 mode it overwrites the unread one (datasheet, LSR1). */
static void rx_push_looped(struct uart16550 *u, uint8_t byte)
{
    unsigned cap = rx_capacity(u);
    if (u->rx_count < cap) {
        u->rx_fifo[(u->rx_head + u->rx_count) % UART16550_FIFO_SIZE] = byte;
        u->rx_count++;
        return;
    }
    u->overrun = true;
    u->rx_lost++;
    if (!u->fifo_enabled)
        u->rx_fifo[u->rx_head] = byte;
}

/* Whether the host is owed an rx-ready call now; clears the debt when it is. */
static bool rx_room_check(struct uart16550 *u)
{
    if (!u->rx_blocked || loopback(u) || u->rx_count > rx_capacity(u) / 2)
        return false;
    u->rx_blocked = false;
    return true;
}

static void run_deferred(const struct deferred *d, void (*rx_ready)(void *), void *rx_ready_ctx)
{
    if (d->rx_ready && rx_ready != NULL)
        rx_ready(rx_ready_ctx);
}

/* Bytes the transmitter holds at most: the FIFO in FIFO mode, the THR alone in 16450 mode. */
static unsigned tx_capacity(const struct uart16550 *u)
{
    return u->fifo_enabled ? UART16550_FIFO_SIZE : 1;
}

/* Hand waiting bytes to the host until it refuses one. When the FIFO runs empty, THR is
 * empty again and, if enabled, the THRE interrupt is raised anew. Lock held. */
static void tx_drain(struct uart16550 *u)
{
    if (u->tx_count == 0)
        return;
    while (u->tx_count > 0) {
        if (u->tx != NULL && !u->tx(u->tx_ctx, u->tx_fifo[u->tx_head]))
            return;
        u->tx_head = (u->tx_head + 1) % UART16550_FIFO_SIZE;
        u->tx_count--;
    }
    u->thre_pending = (u->ier & IER_ETBEI) != 0;
}

/* A byte written to THR outside loopback. A full transmitter loses it, as the chip would
 * overwrite its holding register; a driver that honours THRE never does this. */
static void tx_push(struct uart16550 *u, uint8_t byte)
{
    if (u->tx_count >= tx_capacity(u)) {
        u->tx_lost++;
        return;
    }
    u->tx_fifo[(u->tx_head + u->tx_count) % UART16550_FIFO_SIZE] = byte;
    u->tx_count++;
}

static void tx_clear(struct uart16550 *u)
{
    u->tx_head = 0;
    u->tx_count = 0;
}

static void reset_regs(struct uart16550 *u)
{
    rx_clear(u);
    tx_clear(u);
    u->ier = 0;
    u->lcr = 0;
    u->mcr = 0;
    u->msr = modem_inputs(u);
    u->msr_delta = 0;
    u->overrun = false;
    u->fifo_enabled = false;
    u->thre_pending = false;
}

int uart16550_init(struct uart16550 *u, const struct irq_line *irq,
                   bool (*tx)(void *ctx, uint8_t byte), void *tx_ctx)
{
    memset(u, 0, sizeof(*u));
    int ret = -os_mutex_init(&u->lock);
    if (ret != 0)
        return -ret;
    u->irq = *irq;
    u->tx = tx;
    u->tx_ctx = tx_ctx;
    u->dll = DEFAULT_DIVISOR;
    u->dlm = 0;
    reset_regs(u);
    return 0;
}

void uart16550_destroy(struct uart16550 *u)
{
    os_mutex_destroy(&u->lock);
}

void uart16550_reset(struct uart16550 *u)
{
    struct deferred d = {0};
    os_mutex_lock(&u->lock);
    reset_regs(u);
    d.rx_ready = rx_room_check(u);
    update_irq(u);
    void (*cb)(void *) = u->rx_ready;
    void *cb_ctx = u->rx_ready_ctx;
    os_mutex_unlock(&u->lock);
    run_deferred(&d, cb, cb_ctx);
}

void uart16550_set_rx_ready_cb(struct uart16550 *u, void (*cb)(void *ctx), void *ctx)
{
    os_mutex_lock(&u->lock);
    u->rx_ready = cb;
    u->rx_ready_ctx = ctx;
    os_mutex_unlock(&u->lock);
}

void uart16550_tx_ready(struct uart16550 *u)
{
    os_mutex_lock(&u->lock);
    tx_drain(u);
    update_irq(u);
    os_mutex_unlock(&u->lock);
}

size_t uart16550_receive(struct uart16550 *u, const uint8_t *buf, size_t len)
{
    if (len == 0)
        return 0;
    os_mutex_lock(&u->lock);
    size_t n = 0;
    if (!loopback(u)) {
        size_t room = rx_capacity(u) - u->rx_count;
        n = len < room ? len : room;
        for (size_t i = 0; i < n; i++) {
            u->rx_fifo[(u->rx_head + u->rx_count) % UART16550_FIFO_SIZE] = buf[i];
            u->rx_count++;
        }
    }
    if (n < len)
        u->rx_blocked = true;
    update_irq(u);
    os_mutex_unlock(&u->lock);
    return n;
}

static uint8_t reg_read(struct uart16550 *u, unsigned reg, struct deferred *d)
{
    uint8_t v = 0;
    switch (reg) {
    case REG_RBR_THR:
        if (u->lcr & LCR_DLAB) {
            v = u->dll;
        } else if (u->rx_count > 0) {
            v = u->rx_fifo[u->rx_head];
            u->rx_head = (u->rx_head + 1) % UART16550_FIFO_SIZE;
            u->rx_count--;
            d->rx_ready = rx_room_check(u);
        }
        break;
    case REG_IER:
        v = (u->lcr & LCR_DLAB) ? u->dlm : u->ier;
        break;
    case REG_IIR_FCR:
        v = pending_source(u);
        /* Reading IIR acknowledges a THRE interrupt only when it is the one reported. */
        if (v == IIR_THRE)
            u->thre_pending = false;
        if (u->fifo_enabled)
            v |= IIR_FIFO_ON;
        break;
    case REG_LCR:
        v = u->lcr;
        break;
    case REG_MCR:
        v = u->mcr;
        break;
    case REG_LSR:
        /* With no shift register of its own, the transmitter is empty exactly when the FIFO
         * is: THRE and TEMT move together. */
        v = u->tx_count == 0 ? LSR_THRE | LSR_TEMT : 0;
        if (u->rx_count > 0)
            v |= LSR_DR;
        if (u->overrun)
            v |= LSR_OE;
        u->overrun = false;
        break;
    case REG_MSR:
        v = u->msr | u->msr_delta;
        u->msr_delta = 0;
        break;
    case REG_SCR:
        v = u->scr;
        break;
    default:
        v = 0xff;
        break;
    }
    return v;
}

static void write_fcr(struct uart16550 *u, uint8_t v, struct deferred *d)
{
    /* FCR0 gates the other bits; switching between FIFO and 16450 mode empties the FIFO. */
    bool enable = (v & FCR_ENABLE) != 0;
    if (enable != u->fifo_enabled) {
        rx_clear(u);
        u->fifo_enabled = enable;
    }
    if (enable && (v & FCR_CLEAR_RX))
        rx_clear(u);
    if (enable && (v & FCR_CLEAR_TX) && u->tx_count > 0) {
        tx_clear(u);
        u->thre_pending = (u->ier & IER_ETBEI) != 0;
    }
    /* The receive trigger level has no effect here, since data available is reported as
     * soon as one byte is there. */
    d->rx_ready = rx_room_check(u);
}

static void reg_write(struct uart16550 *u, unsigned reg, uint8_t v, struct deferred *d)
{
    switch (reg) {
    case REG_RBR_THR:
        if (u->lcr & LCR_DLAB) {
            u->dll = v;
            break;
        }
        /* Writing THR clears the THRE interrupt; it is raised anew when the transmitter is
         * empty again, at once if the host takes the byte now. */
        u->thre_pending = false;
        if (loopback(u)) {
            rx_push_looped(u, v);
            u->thre_pending = (u->ier & IER_ETBEI) != 0;
        } else {
            tx_push(u, v);
            tx_drain(u);
        }
        break;
    case REG_IER:
        if (u->lcr & LCR_DLAB) {
            u->dlm = v;
            break;
        }
        v &= IER_MASK;
        /* Enabling ETBEI while THR is empty raises the interrupt immediately. */
        if ((v & IER_ETBEI) && !(u->ier & IER_ETBEI))
            u->thre_pending = u->tx_count == 0;
        if (!(v & IER_ETBEI))
            u->thre_pending = false;
        u->ier = v;
        break;
    case REG_IIR_FCR:
        write_fcr(u, v, d);
        break;
    case REG_LCR:
        u->lcr = v;
        break;
    case REG_MCR:
        u->mcr = v & MCR_MASK;
        update_msr(u);
        /* Leaving loopback reconnects the receiver to the host. */
        d->rx_ready = rx_room_check(u);
        break;
    case REG_SCR:
        u->scr = v;
        break;
    default:
        /* LSR and MSR are read-only. */
        break;
    }
}

static uint64_t uart_read(void *opaque, uint64_t offset, unsigned size)
{
    struct uart16550 *u = opaque;
    if (size != 1 || offset >= UART16550_NR_PORTS) {
        log_guest(LOG_DEBUG, "uart16550: unsupported %u-byte read at +%llu", size,
                  (unsigned long long)offset);
        return size >= 8 ? UINT64_MAX : (UINT64_C(1) << (size * 8)) - 1;
    }
    struct deferred d = {0};
    os_mutex_lock(&u->lock);
    uint8_t v = reg_read(u, (unsigned)offset, &d);
    update_irq(u);
    void (*cb)(void *) = u->rx_ready;
    void *cb_ctx = u->rx_ready_ctx;
    os_mutex_unlock(&u->lock);
    run_deferred(&d, cb, cb_ctx);
    return v;
}

static void uart_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct uart16550 *u = opaque;
    if (size != 1 || offset >= UART16550_NR_PORTS) {
        log_guest(LOG_DEBUG, "uart16550: unsupported %u-byte write at +%llu ignored", size,
                  (unsigned long long)offset);
        return;
    }
    struct deferred d = {0};
    os_mutex_lock(&u->lock);
    reg_write(u, (unsigned)offset, (uint8_t)value, &d);
    update_irq(u);
    void (*cb)(void *) = u->rx_ready;
    void *cb_ctx = u->rx_ready_ctx;
    os_mutex_unlock(&u->lock);
    run_deferred(&d, cb, cb_ctx);
}

const struct bus_ops uart16550_ops = {
    .read = uart_read,
    .write = uart_write,
};
