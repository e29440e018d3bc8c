/* SPDX-License-Identifier: BSD-2-Clause */
#include "devices/i8042.h"

#include "arch/x86/layout.h"
#include "core/log.h"

void i8042_init(struct i8042 *k, void (*reset)(void *ctx), void *ctx)
{
    k->reset = reset;
    k->ctx = ctx;
}

int i8042_register(struct i8042 *k, struct bus *pio)
{
    int ret = bus_register(pio, X86_I8042_DATA_PORT, 1, &i8042_data_ops, k, "i8042-data");
    if (ret < 0)
        return ret;
    ret = bus_register(pio, X86_I8042_CMD_PORT, 1, &i8042_cmd_ops, k, "i8042-cmd");
    if (ret < 0) {
        int undo = bus_unregister(pio, X86_I8042_DATA_PORT, k);
        if (undo < 0)
            log_warn("i8042: cannot undo data port registration: %d", undo);
        return ret;
    }
    return 0;
}

/* Reads of either port: no data, and both buffers empty in the status register. */
static uint64_t i8042_read(void *opaque, uint64_t offset, unsigned size)
{
    (void)opaque;
    (void)offset;
    (void)size;
    return 0;
}

static void i8042_data_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    (void)opaque;
    (void)offset;
    (void)size;
    log_guest(LOG_DEBUG, "i8042: data write %#llx ignored", (unsigned long long)value);
}

static void i8042_cmd_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct i8042 *k = opaque;
    (void)offset;
    if (size != 1 || (value & 0xff) != I8042_CMD_RESET) {
        log_guest(LOG_DEBUG, "i8042: command %#llx ignored", (unsigned long long)value);
        return;
    }
    log_guest(LOG_INFO, "i8042: guest pulses the reset line");
    if (k->reset != NULL)
        k->reset(k->ctx);
}

const struct bus_ops i8042_data_ops = {
    .read = i8042_read,
    .write = i8042_data_write,
};

const struct bus_ops i8042_cmd_ops = {
    .read = i8042_read,
    .write = i8042_cmd_write,
};
