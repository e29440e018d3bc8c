/* SPDX-License-Identifier: BSD-2-Clause */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "devices/uart16550.h"

#include <pthread.h>
#include <stdbool.h>
#include <limits.h>
#include <string.h>

enum { RBR = 0, THR = 0, DLL = 0, IER = 1, DLM = 1, IIR = 2, FCR = 2 };
enum { LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7 };

#define MAX_EVENTS 64

/* Everything the UART does to the outside world, recorded. */
struct fixture {
    struct uart16550 u;
    bool levels[MAX_EVENTS]; /* irq set() calls, in order */
    uint32_t gsis[MAX_EVENTS];
    unsigned nr_irq;
    uint8_t tx[256];
    unsigned nr_tx;
    unsigned tx_room; /* bytes the host takes before refusing; UINT_MAX: no limit */
    unsigned nr_rx_ready;
};

static void fake_irq_set(void *ctx, uint32_t gsi, bool level)
{
    struct fixture *f = ctx;
    assert_true(f->nr_irq < MAX_EVENTS);
    f->gsis[f->nr_irq] = gsi;
    f->levels[f->nr_irq] = level;
    f->nr_irq++;
}

static bool fake_tx(void *ctx, uint8_t byte)
{
    struct fixture *f = ctx;
    if (f->tx_room == 0)
        return false;
    if (f->tx_room != UINT_MAX)
        f->tx_room--;
    assert_true(f->nr_tx < sizeof(f->tx));
    f->tx[f->nr_tx++] = byte;
    return true;
}

static void fake_rx_ready(void *ctx)
{
    struct fixture *f = ctx;
    f->nr_rx_ready++;
}

static int setup(void **state)
{
    static struct fixture f;
    memset(&f, 0, sizeof(f));
    f.tx_room = UINT_MAX;
    struct irq_line line = {.set = fake_irq_set, .ctx = &f, .gsi = 4};
    assert_int_equal(uart16550_init(&f.u, &line, fake_tx, &f), 0);
    uart16550_set_rx_ready_cb(&f.u, fake_rx_ready, &f);
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    uart16550_destroy(&f->u);
    return 0;
}

static uint8_t rd(struct fixture *f, unsigned reg)
{
    uint64_t v = uart16550_ops.read(&f->u, reg, 1);
    assert_true(v <= 0xff);
    return (uint8_t)v;
}

static void wr(struct fixture *f, unsigned reg, uint8_t v)
{
    uart16550_ops.write(&f->u, reg, 1, v);
}

static size_t rx(struct fixture *f, const char *s)
{
    return uart16550_receive(&f->u, (const uint8_t *)s, strlen(s));
}

static bool line_level(const struct fixture *f)
{
    return f->nr_irq > 0 && f->levels[f->nr_irq - 1];
}

static void test_reset_values(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(rd(f, IER), 0x00);
    assert_int_equal(rd(f, IIR), 0x01);
    assert_int_equal(rd(f, LCR), 0x00);
    assert_int_equal(rd(f, MCR), 0x00);
    assert_int_equal(rd(f, LSR), 0x60);
    assert_int_equal(rd(f, MSR), 0xb0); /* CTS, DSR, DCD asserted, no deltas */
    assert_int_equal(rd(f, SCR), 0x00);
    wr(f, LCR, 0x80);
    assert_int_equal(rd(f, DLL), 12);
    assert_int_equal(rd(f, DLM), 0);
    assert_int_equal(f->nr_irq, 0);
    assert_int_equal(f->nr_tx, 0);
}

static void test_dlab_switching(void **state)
{
    struct fixture *f = *state;
    wr(f, IER, 0x05);
    wr(f, LCR, 0x83);
    wr(f, DLL, 0x01);
    wr(f, DLM, 0x02);
    assert_int_equal(rd(f, DLL), 0x01);
    assert_int_equal(rd(f, DLM), 0x02);
    assert_int_equal(rd(f, LCR), 0x83);
    assert_int_equal(f->nr_tx, 0); /* a DLL write is not a transmission */
    wr(f, LCR, 0x03);
    assert_int_equal(rd(f, IER), 0x05); /* the DLM write did not reach IER */
    wr(f, THR, 'x');
    assert_int_equal(f->nr_tx, 1);
    assert_int_equal(f->tx[0], 'x');
    wr(f, LCR, 0x80);
    assert_int_equal(rd(f, DLL), 0x01); /* the THR write did not reach DLL */
    /* IIR is visible with DLAB set too */
    assert_int_equal(rd(f, IIR) & 0x0f, 0x01);
}

static void test_scratch_and_masks(void **state)
{
    struct fixture *f = *state;
    wr(f, SCR, 0xa5);
    assert_int_equal(rd(f, SCR), 0xa5);
    wr(f, SCR, 0x5a);
    assert_int_equal(rd(f, SCR), 0x5a);
    wr(f, IER, 0xff);
    assert_int_equal(rd(f, IER), 0x0f); /* bits 4-7 are 0 on a 16550 */
    wr(f, IER, 0x00);
    wr(f, MCR, 0xff);
    assert_int_equal(rd(f, MCR), 0x1f);
    wr(f, MCR, 0x00);
    assert_int_equal(rd(f, MSR), 0xb4); /* RI (OUT1 in loopback) fell: TERI */
    wr(f, LCR, 0x7f);
    assert_int_equal(rd(f, LCR), 0x7f);
    /* LSR and MSR ignore writes */
    wr(f, LSR, 0x00);
    assert_int_equal(rd(f, LSR), 0x60);
    wr(f, MSR, 0x00);
    assert_int_equal(rd(f, MSR), 0xb0);
}

static void test_unsupported_widths(void **state)
{
    struct fixture *f = *state;
    wr(f, SCR, 0x12);
    assert_int_equal(uart16550_ops.read(&f->u, 0, 2), 0xffff);
    assert_int_equal(uart16550_ops.read(&f->u, 4, 4), 0xffffffffu);
    uart16550_ops.write(&f->u, 6, 2, 0x3434);
    uart16550_ops.write(&f->u, 0, 4, 'a');
    assert_int_equal(rd(f, SCR), 0x12);
    assert_int_equal(f->nr_tx, 0);
}

static void test_loopback(void **state)
{
    struct fixture *f = *state;
    /* What Linux's autoconfig checks: LOOP|OUT2|RTS gives DCD|CTS. */
    wr(f, MCR, 0x10 | 0x0a);
    assert_int_equal(rd(f, MSR) & 0xf0, 0x90);
    /* DTR alone: DSR rises, CTS and DCD fall, each with its delta bit. */
    wr(f, MCR, 0x10 | 0x01);
    assert_int_equal(rd(f, MSR), 0x20 | 0x01 | 0x02 | 0x08);
    /* Restoring MCR leaves loopback (Linux's autoconfig does this right after). */
    wr(f, MCR, 0x00);
    assert_int_equal(rd(f, MCR), 0x00);
    assert_int_equal(rd(f, MSR) & 0xf0, 0xb0);
}

static void test_loopback_msr_from_mcr(void **state)
{
    struct fixture *f = *state;
    static const struct {
        uint8_t mcr, msr;
    } map[] = {{0x01, 0x20}, {0x02, 0x10}, {0x04, 0x40}, {0x08, 0x80}, {0x0f, 0xf0}, {0x00, 0}};
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        wr(f, MCR, 0x10 | map[i].mcr);
        assert_int_equal(rd(f, MSR) & 0xf0, map[i].msr);
    }
    /* Out of loopback the modem lines read as a ready peer again. */
    wr(f, MCR, 0x00);
    assert_int_equal(rd(f, MSR) & 0xf0, 0xb0);
}

static void test_msr_deltas(void **state)
{
    struct fixture *f = *state;
    /* 0xb0 -> loopback with nothing set: CTS, DSR, DCD drop. */
    wr(f, MCR, 0x10);
    assert_int_equal(rd(f, MSR), 0x0b);
    assert_int_equal(rd(f, MSR), 0x00); /* deltas clear on read */
    wr(f, MCR, 0x10 | 0x04);            /* RI rises: no TERI */
    assert_int_equal(rd(f, MSR), 0x40);
    wr(f, MCR, 0x10); /* RI falls: TERI */
    assert_int_equal(rd(f, MSR), 0x04);
    wr(f, MCR, 0x10 | 0x03); /* DTR, RTS -> DSR, CTS */
    assert_int_equal(rd(f, MSR), 0x30 | 0x02 | 0x01);
    wr(f, MCR, 0x00); /* back to 0xb0: DCD changes */
    assert_int_equal(rd(f, MSR), 0xb0 | 0x08);
    assert_int_equal(rd(f, MSR), 0xb0);
}

static void test_loopback_tx_to_rx(void **state)
{
    struct fixture *f = *state;
    wr(f, MCR, 0x10);
    wr(f, THR, 'A');
    wr(f, THR, 'B');
    assert_int_equal(f->nr_tx, 0);      /* nothing leaves in loopback */
    assert_int_equal(rd(f, LSR), 0x63); /* DR | OE */
    assert_int_equal(rd(f, RBR), 'B');  /* 16450 mode: one byte, overwritten by the second */
    assert_int_equal(rd(f, LSR), 0x60);

    wr(f, FCR, 0x01);
    wr(f, THR, 'C');
    wr(f, THR, 'D');
    assert_int_equal(rd(f, RBR), 'C');
    assert_int_equal(rd(f, RBR), 'D');
    assert_int_equal(rd(f, LSR), 0x60);
    /* Host input is held off while the receiver is looped. */
    assert_int_equal(rx(f, "zz"), 0);
    assert_int_equal(f->nr_rx_ready, 0);
    wr(f, MCR, 0x00);
    assert_int_equal(f->nr_rx_ready, 1);
    assert_int_equal(rx(f, "zz"), 2);
    wr(f, THR, 'E');
    assert_int_equal(f->nr_tx, 1);
    assert_int_equal(f->tx[0], 'E');
}

static void test_loopback_overrun(void **state)
{
    struct fixture *f = *state;
    wr(f, FCR, 0x01);
    wr(f, MCR, 0x10);
    for (int i = 0; i < 17; i++)
        wr(f, THR, (uint8_t)('a' + i));
    assert_int_equal(rd(f, LSR), 0x63); /* DR | OE | THRE | TEMT */
    assert_int_equal(rd(f, LSR), 0x61); /* OE clears on read */
    for (int i = 0; i < 16; i++)
        assert_int_equal(rd(f, RBR), 'a' + i); /* the 17th byte was the one lost */
    assert_int_equal(rd(f, LSR), 0x60);
    assert_int_equal(f->u.rx_lost, 1);
}

static void test_fifo_fill_and_overflow(void **state)
{
    struct fixture *f = *state;
    wr(f, FCR, 0x01);
    uint8_t in[40];
    for (size_t i = 0; i < sizeof(in); i++)
        in[i] = (uint8_t)i;
    size_t n = uart16550_receive(&f->u, in, 20);
    assert_int_equal(n, 16);
    assert_int_equal(rd(f, LSR), 0x61); /* host input never overruns */
    assert_int_equal(uart16550_receive(&f->u, in + 16, 4), 0);
    for (int i = 0; i < 16; i++)
        assert_int_equal(rd(f, RBR), i);
    assert_int_equal(rd(f, LSR), 0x60);
    n = uart16550_receive(&f->u, in + 16, 24);
    assert_int_equal(n, 16);
    for (int i = 16; i < 32; i++)
        assert_int_equal(rd(f, RBR), i);
    assert_int_equal(uart16550_receive(&f->u, in + 32, 8), 8);
    for (int i = 32; i < 40; i++)
        assert_int_equal(rd(f, RBR), i);
    assert_int_equal(rd(f, LSR) & 0x01, 0);
    assert_int_equal(rd(f, RBR), 0); /* empty FIFO reads 0, nothing duplicated */
    assert_int_equal(uart16550_receive(&f->u, in, 0), 0);
}

static void test_no_fifo_holds_one_byte(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(rx(f, "xyz"), 1);
    assert_int_equal(rd(f, RBR), 'x');
    assert_int_equal(f->nr_rx_ready, 1);
    assert_int_equal(rx(f, "yz"), 1);
    assert_int_equal(rd(f, RBR), 'y');
}

static void test_fcr(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(rd(f, IIR), 0x01);
    wr(f, FCR, 0x01);
    assert_int_equal(rd(f, IIR), 0xc1);
    assert_int_equal(rx(f, "hello"), 5);
    wr(f, FCR, 0x01 | 0x04); /* clearing TX only keeps RX data */
    assert_int_equal(rd(f, RBR), 'h');
    wr(f, FCR, 0x02); /* without FCR0 the clear bit is not programmed, and FIFO mode ends */
    assert_int_equal(rd(f, IIR), 0x01);
    assert_int_equal(rd(f, LSR) & 0x01, 0); /* leaving FIFO mode emptied it */
    wr(f, FCR, 0x01);
    assert_int_equal(rx(f, "abc"), 3);
    wr(f, FCR, 0xc1); /* trigger level change alone keeps data */
    assert_int_equal(rd(f, LSR) & 0x01, 1);
    wr(f, FCR, 0x03);
    assert_int_equal(rd(f, LSR) & 0x01, 0);
    assert_int_equal(rd(f, IIR), 0xc1);
}

static void test_iir_priority(void **state)
{
    struct fixture *f = *state;
    wr(f, FCR, 0x01);
    wr(f, MCR, 0x10); /* loopback: deltas pending, then overrun with looped bytes */
    for (int i = 0; i < 17; i++)
        wr(f, THR, 'q');
    wr(f, IER, 0x0f);
    assert_int_equal(rd(f, IIR), 0xc6); /* receiver line status */
    assert_int_equal(rd(f, IIR), 0xc6); /* IIR reads do not clear it */
    (void)rd(f, LSR);
    assert_int_equal(rd(f, IIR), 0xc4); /* data available */
    for (int i = 0; i < 16; i++)
        (void)rd(f, RBR);
    assert_int_equal(rd(f, IIR), 0xc2); /* THR empty, acknowledged by this read */
    assert_int_equal(rd(f, IIR), 0xc0); /* modem status */
    (void)rd(f, MSR);
    assert_int_equal(rd(f, IIR), 0xc1);
}

static void test_thre_rules(void **state)
{
    struct fixture *f = *state;
    wr(f, IER, 0x02);
    assert_int_equal(rd(f, IIR), 0x02); /* raised at once: THR is empty */
    assert_int_equal(rd(f, IIR), 0x01); /* and cleared by that read */
    wr(f, THR, 'a');
    assert_int_equal(f->nr_tx, 1);
    assert_int_equal(rd(f, IIR), 0x02); /* THR empty again after the byte left */
    wr(f, IER, 0x02);                   /* no 0 -> 1 transition: nothing new */
    assert_int_equal(rd(f, IIR), 0x01);
    wr(f, IER, 0x00);
    wr(f, IER, 0x02); /* re-enabling raises it again (Linux's THRE test) */
    assert_int_equal(rd(f, IIR), 0x02);
    assert_int_equal(rd(f, IIR), 0x01);

    /* Disabling ETBEI drops a pending THRE interrupt. */
    wr(f, THR, 'b');
    wr(f, IER, 0x00);
    wr(f, IER, 0x01);
    assert_int_equal(rd(f, IIR), 0x01);

    /* An IIR read that reports a higher source leaves THRE pending. */
    wr(f, IER, 0x03);
    assert_int_equal(rx(f, "r"), 1);
    assert_int_equal(rd(f, IIR), 0x04);
    assert_int_equal(rd(f, RBR), 'r');
    assert_int_equal(rd(f, IIR), 0x02);
    assert_int_equal(rd(f, IIR), 0x01);
    /* While the host takes output, LSR always shows THRE and TEMT. */
    assert_int_equal(rd(f, LSR) & 0x60, 0x60);
}

/* A host that cannot take output (its console buffer is full) makes the guest wait through
 * THRE/TEMT rather than the VMM blocking; nothing is lost or reordered when it resumes. */
static void test_tx_backpressure(void **state)
{
    struct fixture *f = *state;
    wr(f, FCR, 0x01); /* FIFO mode: 16 bytes of transmit FIFO */
    wr(f, MCR, 0x08); /* OUT2: the interrupt reaches the line */
    wr(f, IER, 0x02);
    assert_int_equal(rd(f, IIR) & 0x0f, 0x02);
    f->tx_room = 2;
    for (int i = 0; i < 18; i++)
        wr(f, THR, (uint8_t)('a' + i));
    assert_int_equal(f->nr_tx, 2);
    assert_int_equal(f->u.tx_lost, 0);
    assert_int_equal(rd(f, LSR) & 0x60, 0); /* THRE and TEMT clear: 16 bytes wait */
    assert_int_equal(rd(f, IIR) & 0x0f, 0x01);
    wr(f, THR, 'X'); /* a write to a full FIFO is lost, as on the chip */
    assert_int_equal(f->u.tx_lost, 1);

    /* The host gets room for 10: THR still not empty, no interrupt. */
    f->tx_room = 10;
    uart16550_tx_ready(&f->u);
    assert_int_equal(f->nr_tx, 12);
    assert_int_equal(rd(f, LSR) & 0x60, 0);
    assert_int_equal(rd(f, IIR) & 0x0f, 0x01);

    /* Room for everything: the FIFO drains in order and THRE is raised. */
    f->tx_room = UINT_MAX;
    unsigned irqs = f->nr_irq;
    uart16550_tx_ready(&f->u);
    assert_int_equal(f->nr_tx, 18);
    for (int i = 0; i < 18; i++)
        assert_int_equal(f->tx[i], 'a' + i);
    assert_int_equal(rd(f, LSR) & 0x60, 0x60);
    assert_true(f->nr_irq > irqs && f->levels[f->nr_irq - 1]);
    assert_int_equal(rd(f, IIR) & 0x0f, 0x02);

    /* In 16450 mode the transmitter holds one byte. */
    wr(f, FCR, 0x00);
    f->tx_room = 0;
    wr(f, THR, '1');
    wr(f, THR, '2');
    assert_int_equal(f->u.tx_lost, 2); /* 'X' earlier, '2' now */
    f->tx_room = UINT_MAX;
    uart16550_tx_ready(&f->u);
    assert_int_equal(f->nr_tx, 19);
    assert_int_equal(f->tx[18], '1');

    /* FCR's transmit-clear bit empties a blocked FIFO and THR reads empty again. */
    wr(f, FCR, 0x01);
    f->tx_room = 0;
    wr(f, THR, 'z');
    assert_int_equal(rd(f, LSR) & 0x60, 0);
    wr(f, FCR, 0x05);
    assert_int_equal(rd(f, LSR) & 0x60, 0x60);
    f->tx_room = UINT_MAX;
    uart16550_tx_ready(&f->u);
    assert_int_equal(f->nr_tx, 19);
}

static void test_irq_line(void **state)
{
    struct fixture *f = *state;
    wr(f, IER, 0x01);
    assert_int_equal(rx(f, "a"), 1);
    assert_int_equal(f->nr_irq, 0); /* OUT2 clear gates the line */
    wr(f, MCR, 0x08);
    assert_int_equal(f->nr_irq, 1);
    assert_int_equal(f->gsis[0], 4);
    assert_true(f->levels[0]);
    assert_int_equal(rd(f, IIR), 0x04);
    assert_int_equal(f->nr_irq, 1); /* no repeated levels */
    assert_int_equal(rd(f, RBR), 'a');
    assert_int_equal(f->nr_irq, 2);
    assert_false(f->levels[1]);

    assert_int_equal(rx(f, "b"), 1);
    assert_int_equal(f->nr_irq, 3);
    assert_true(line_level(f));
    wr(f, IER, 0x00); /* masking the source lowers the line */
    assert_int_equal(f->nr_irq, 4);
    assert_false(line_level(f));
    wr(f, IER, 0x01);
    assert_true(line_level(f));
    wr(f, MCR, 0x00); /* and so does OUT2 */
    assert_false(line_level(f));
    wr(f, MCR, 0x08);
    assert_true(line_level(f));
    assert_int_equal(f->nr_irq, 7);
    (void)rd(f, RBR);
    assert_false(line_level(f));

    /* ETBEI: the line rises as soon as the interrupt is enabled; an IIR read drops it; a THR
     * write raises it again. */
    unsigned before = f->nr_irq;
    wr(f, IER, 0x03);
    assert_int_equal(f->nr_irq, before + 1);
    assert_true(line_level(f));
    assert_int_equal(rd(f, IIR), 0x02);
    assert_false(line_level(f));
    wr(f, THR, 'z');
    assert_true(line_level(f));
    wr(f, THR, 'z'); /* still pending: no new call */
    assert_int_equal(f->nr_irq, before + 3);

    /* Modem status interrupt. */
    wr(f, IER, 0x08);
    assert_false(line_level(f));
    wr(f, MCR, 0x08 | 0x10); /* loopback: DCD stays (OUT2), CTS and DSR drop */
    assert_true(line_level(f));
    (void)rd(f, MSR);
    assert_false(line_level(f));

    /* Receiver line status interrupt. */
    wr(f, IER, 0x04);
    wr(f, THR, '1');
    wr(f, THR, '2'); /* 16450 mode: overrun */
    assert_true(line_level(f));
    assert_int_equal(rd(f, LSR), 0x63);
    assert_false(line_level(f));
}

static void test_rx_ready_low_water(void **state)
{
    struct fixture *f = *state;
    wr(f, FCR, 0x01);
    assert_int_equal(rx(f, "0123456789abcdefXYZ"), 16);
    for (int i = 0; i < 7; i++)
        (void)rd(f, RBR);
    assert_int_equal(f->nr_rx_ready, 0); /* 9 left: above half */
    (void)rd(f, RBR);
    assert_int_equal(f->nr_rx_ready, 1); /* 8 left */
    (void)rd(f, RBR);
    assert_int_equal(f->nr_rx_ready, 1); /* once per refusal */
    assert_int_equal(rx(f, "XYZ"), 3);
    assert_int_equal(f->nr_rx_ready, 1);
    /* A FIFO clear also makes room. */
    assert_int_equal(rx(f, "0123456789"), 6);
    wr(f, FCR, 0x03);
    assert_int_equal(f->nr_rx_ready, 2);
}

static void test_reset(void **state)
{
    struct fixture *f = *state;
    wr(f, FCR, 0x01);
    wr(f, SCR, 0x77);
    wr(f, IER, 0x01);
    wr(f, MCR, 0x08);
    wr(f, LCR, 0x03);
    assert_int_equal(rx(f, "abc"), 3);
    assert_true(line_level(f));
    uart16550_reset(&f->u);
    assert_false(line_level(f));
    assert_int_equal(rd(f, IER), 0);
    assert_int_equal(rd(f, IIR), 0x01);
    assert_int_equal(rd(f, LCR), 0);
    assert_int_equal(rd(f, MCR), 0);
    assert_int_equal(rd(f, LSR), 0x60);
    assert_int_equal(rd(f, MSR), 0xb0);
    assert_int_equal(rd(f, SCR), 0x77); /* not affected by master reset */
}

/* The register dialogue of a driver identifying a 16550A and checking its THRE interrupt (the
 * sequence Linux's 8250 autoconfig and startup go through, written from the datasheet's view). */
static void test_driver_probe_dialogue(void **state)
{
    struct fixture *f = *state;
    /* IER: the low nibble is implemented, the high nibble is not. */
    wr(f, IER, 0x00);
    assert_int_equal(rd(f, IER) & 0x0f, 0x00);
    wr(f, IER, 0x0f);
    assert_int_equal(rd(f, IER) & 0x0f, 0x0f);
    wr(f, IER, 0x00);
    /* Loopback with RTS and OUT2 reads back CTS and DCD. */
    wr(f, MCR, 0x1a);
    assert_int_equal(rd(f, MSR) & 0xf0, 0x90);
    wr(f, MCR, 0x00);
    /* A write to offset 2 in the 0xbf "configuration mode" of later chips is an FCR write. */
    wr(f, LCR, 0xbf);
    wr(f, FCR, 0x00);
    wr(f, LCR, 0x00);
    wr(f, FCR, 0x01);
    assert_int_equal(rd(f, IIR) >> 6, 3); /* FIFO works: a 16550A */
    /* No enhanced-feature register behind offset 2 in either configuration mode. */
    wr(f, LCR, 0x80);
    assert_int_not_equal(rd(f, IIR), 0);
    wr(f, LCR, 0xbf);
    assert_int_not_equal(rd(f, IIR), 0);
    wr(f, LCR, 0x00);
    /* No 64-byte FIFO (16750): IIR bit 5 stays clear. */
    wr(f, FCR, 0x21);
    assert_int_equal(rd(f, IIR) & 0x20, 0);
    wr(f, LCR, 0x80);
    wr(f, FCR, 0x21);
    assert_int_equal(rd(f, IIR) & 0x20, 0);
    wr(f, LCR, 0x00);
    /* No UART-unit-enable bit (XScale). */
    wr(f, IER, 0x40);
    assert_int_equal(rd(f, IER), 0x00);
    /* Startup: enabling ETBEI on an empty THR interrupts at once, twice in a row. */
    wr(f, LCR, 0x03);
    wr(f, MCR, 0x0b);
    wr(f, IER, 0x02);
    assert_int_equal(rd(f, IIR) & 0x01, 0);
    wr(f, IER, 0x00);
    wr(f, IER, 0x02);
    assert_int_equal(rd(f, IIR) & 0x01, 0);
    wr(f, IER, 0x00);
    assert_int_not_equal(rd(f, LSR), 0xff);
    assert_false(line_level(f));
}

/* Input from one thread, reads from another: every byte arrives once and in order. */
struct race {
    struct fixture *f;
    unsigned total;
};

static void *producer(void *arg)
{
    struct race *r = arg;
    unsigned sent = 0;
    while (sent < r->total) {
        uint8_t buf[7];
        size_t n = 0;
        while (n < sizeof(buf) && sent + n < r->total) {
            buf[n] = (uint8_t)((sent + n) * 7);
            n++;
        }
        sent += (unsigned)uart16550_receive(&r->f->u, buf, n);
    }
    return NULL;
}

static void test_concurrent_receive(void **state)
{
    struct fixture *f = *state;
    wr(f, FCR, 0x01);
    uart16550_set_rx_ready_cb(&f->u, NULL, NULL);
    struct race r = {.f = f, .total = 20000};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, producer, &r), 0);
    unsigned got = 0;
    while (got < r.total) {
        if (rd(f, LSR) & 0x01) {
            assert_int_equal(rd(f, RBR), (uint8_t)(got * 7));
            got++;
        }
    }
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(rd(f, LSR) & 0x03, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_reset_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dlab_switching, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scratch_and_masks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unsupported_widths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_loopback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_loopback_msr_from_mcr, setup, teardown),
        cmocka_unit_test_setup_teardown(test_msr_deltas, setup, teardown),
        cmocka_unit_test_setup_teardown(test_loopback_tx_to_rx, setup, teardown),
        cmocka_unit_test_setup_teardown(test_loopback_overrun, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fifo_fill_and_overflow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_fifo_holds_one_byte, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fcr, setup, teardown),
        cmocka_unit_test_setup_teardown(test_iir_priority, setup, teardown),
        cmocka_unit_test_setup_teardown(test_thre_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tx_backpressure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_irq_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rx_ready_low_water, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_driver_probe_dialogue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_receive, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
