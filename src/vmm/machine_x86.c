/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The x86-64 PC: RAM below and above the PCI hole, COM1, the ACPI PM block, the
 * keyboard-controller reset line, a PCIe host bridge, ACPI tables and a direct kernel boot.
 * Interrupt controllers and the PIT are the platform's (in-kernel with KVM).
 */
#include "arch/x86/acpi/acpi.h"
#include "arch/x86/boot.h"
#include "arch/x86/cpuid.h"
#include "arch/x86/layout.h"
#include "core/checked.h"
#include "core/log.h"
#include "devices/acpi_pm.h"
#include "devices/i8042.h"
#include "devices/pci/pci_host.h"
#include "devices/uart16550.h"
#include "vmm/vhost_dev.h"
#include "platform/platform_x86.h"
#include "vmm/machine.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/** The PC's devices and what the vCPUs start with. */
struct machine {
    struct uart16550 com1;                   /**< COM1. */
    struct uart16550 com2;                   /**< COM2, when the VM has --serial2. */
    bool com2_ready;                         /**< com2 initialised. */
    struct acpi_pm pm;                       /**< ACPI fixed hardware. */
    struct i8042 kbc;                        /**< Reset line only. */
    struct pci_host pci;                     /**< PCIe host bridge and bus 0. */
    bool com1_ready;                         /**< com1 needs destroying. */
    bool pm_ready;                           /**< pm needs destroying. */
    bool pci_ready;                          /**< pci needs destroying. */
    struct vhost_dev *devs[VMM_MAX_DEVICES]; /**< vhost-user devices (--disk, --net, ...). */
    unsigned nr_devs;                        /**< Entries of devs. */
    struct x86_boot_state boot_state;        /**< What vCPU 0 starts with. */
    struct x86_cpuid_entry supported[X86_CPUID_MAX_ENTRIES]; /**< The host's CPUID. */
    unsigned nr_supported;                                   /**< Valid entries in supported. */
};

static uint64_t low_ram_size(const struct vm *vm)
{
    return vm->ram.size < X86_LOW_RAM_END ? vm->ram.size : X86_LOW_RAM_END;
}

int machine_map_ram(struct vm *vm)
{
    uint64_t low = low_ram_size(vm);
    uint64_t high = vm->ram.size - low;
    int r = guest_mem_add_region(&vm->mem, 0, low, vm->ram.base);
    if (r == 0)
        r = plat_vm_map_ram(vm->plat, 0, 0, vm->ram.base, low);
    if (r == 0 && high > 0) {
        r = guest_mem_add_region(&vm->mem, X86_HIGH_RAM_START, high, vm->ram.base + low);
        if (r == 0)
            r = plat_vm_map_ram(vm->plat, 1, X86_HIGH_RAM_START, vm->ram.base + low, high);
    }
    return r;
}

/* The 64-bit PCI window starts at the first 1 GiB boundary above RAM. */
static uint64_t mmio64_base(const struct vm *vm)
{
    uint64_t top = X86_HIGH_RAM_START + (vm->ram.size - low_ram_size(vm));
    uint64_t base;
    if (checked_align_up(top, 1ull << 30, &base))
        return 0;
    return base;
}

static void set_gsi(void *ctx, uint32_t gsi, bool level)
{
    struct vm *vm = ctx;
    int r = plat_irq_set(vm->plat, gsi, level);
    if (r != 0)
        log_guest(LOG_WARN, "setting GSI %u failed: %s", gsi, strerror(-r));
}

static uint32_t route_intx(void *ctx, unsigned slot, unsigned pin)
{
    (void)ctx;
    return X86_PCI_INTX_GSI(slot, pin);
}

static bool com1_tx(void *ctx, uint8_t byte)
{
    struct vm *vm = ctx;
    return console_write(vm->console, byte);
}

static void com1_rx_ready(void *ctx)
{
    struct vm *vm = ctx;
    console_rx_ready(vm->console);
}

static bool com2_tx(void *ctx, uint8_t byte)
{
    struct vm *vm = ctx;
    return console_write(vm->console2, byte);
}

static void com2_rx_ready(void *ctx)
{
    struct vm *vm = ctx;
    console_rx_ready(vm->console2);
}

/* COM2 exists only with --serial2: a guest sees a second UART only when it leads
 * somewhere (a serial link to another VM, or a file). */
static int add_com2(struct vm *vm)
{
    struct machine *m = vm->machine;
    if (vm->console2 == NULL)
        return 0;
    struct irq_line irq = {.set = set_gsi, .ctx = vm, .gsi = X86_COM2_IRQ};
    int r = uart16550_init(&m->com2, &irq, com2_tx, vm);
    if (r != 0)
        return r;
    m->com2_ready = true;
    uart16550_set_rx_ready_cb(&m->com2, com2_rx_ready, vm);
    return bus_register(&vm->pio, X86_COM2_PORT, UART16550_NR_PORTS, &uart16550_ops, &m->com2,
                        "com2");
}

static void pm_sleep(void *ctx, unsigned slp_typ)
{
    struct vm *vm = ctx;
    if (slp_typ == X86_ACPI_S5_TYPE) {
        vm_request_stop(vm, VM_STOP_POWEROFF, "guest powered off (ACPI S5)");
        return;
    }
    log_guest(LOG_WARN, "guest asked for sleep state type %u, which this machine does not have",
              slp_typ);
    acpi_pm_wake(&vm->machine->pm);
}

static void pm_reset(void *ctx)
{
    vm_request_stop(ctx, VM_STOP_RESET, "guest reset (ACPI reset register)");
}

static void kbc_reset(void *ctx)
{
    vm_request_stop(ctx, VM_STOP_RESET, "guest reset (keyboard controller)");
}

static int add_legacy_devices(struct vm *vm)
{
    struct machine *m = vm->machine;
    struct irq_line com1_irq = {.set = set_gsi, .ctx = vm, .gsi = X86_COM1_IRQ};
    int r = uart16550_init(&m->com1, &com1_irq, com1_tx, vm);
    if (r != 0)
        return r;
    m->com1_ready = true;
    uart16550_set_rx_ready_cb(&m->com1, com1_rx_ready, vm);
    r = bus_register(&vm->pio, X86_COM1_PORT, UART16550_NR_PORTS, &uart16550_ops, &m->com1, "com1");
    if (r != 0 || (r = add_com2(vm)) != 0)
        return r;

    struct acpi_pm_config pm = {
        .sci = {.set = set_gsi, .ctx = vm, .gsi = X86_ACPI_SCI_IRQ},
        .sleep = pm_sleep,
        .reset = pm_reset,
        .ctx = vm,
    };
    if ((r = acpi_pm_init(&m->pm, &pm)) != 0)
        return r;
    m->pm_ready = true;
    r = bus_register(&vm->pio, X86_ACPI_PM1A_EVT_PORT, X86_ACPI_PM_LEN, &acpi_pm_ops, &m->pm,
                     "acpi-pm");
    if (r != 0)
        return r;

    i8042_init(&m->kbc, kbc_reset, vm);
    return i8042_register(&m->kbc, &vm->pio);
}

/* The PCI host decodes exactly the windows the ACPI tables describe. */
static int add_pci(struct vm *vm, const struct acpi_machine *am)
{
    struct pci_host_config cfg = {
        .ecam_base = am->ecam_base,
        .bus_first = am->bus_first,
        .bus_last = am->bus_last,
        .mmio32_base = am->mmio32_base,
        .mmio32_size = am->mmio32_size,
        .mmio64_base = am->mmio64_base,
        .mmio64_size = am->mmio64_size,
        .io_base = am->io_base,
        .io_size = am->io_size,
        .route_intx = route_intx,
        .set_irq = set_gsi,
        .irq_ctx = vm,
    };
    int r = pci_host_init(&vm->machine->pci, &cfg, &vm->mmio, &vm->pio);
    if (r == 0)
        vm->machine->pci_ready = true;
    return r;
}

static int write_acpi_tables(struct vm *vm, const struct acpi_machine *am)
{
    uint8_t *buf = guest_mem_ptr(&vm->mem, X86_ACPI_TABLES_GPA, X86_ACPI_TABLES_SIZE);
    if (buf == NULL)
        return -ENOMEM;
    size_t used;
    int r = acpi_build_tables(am, buf, X86_ACPI_TABLES_SIZE, X86_ACPI_TABLES_GPA, &used);
    if (r != 0)
        log_error("building the ACPI tables failed: %s", strerror(-r));
    return r;
}

int machine_build(struct vm *vm, const struct boot_files *files)
{
    vm->machine = calloc(1, sizeof(*vm->machine));
    if (vm->machine == NULL)
        return -ENOMEM;
    struct acpi_machine am;
    acpi_machine_from_layout(&am, vm->opts->cpus, mmio64_base(vm));
    int r;
    if ((r = add_legacy_devices(vm)) != 0 || (r = add_pci(vm, &am)) != 0) {
        log_error("creating the devices failed: %s", strerror(-r));
        return r;
    }
    /* Each device is numbered among those of its type: disk0, disk1, net0, ... */
    unsigned per_kind[VMM_DEV_FS + 1] = {0};
    for (unsigned i = 0; i < vm->opts->nr_devices; i++) {
        struct machine *m = vm->machine;
        const struct vmm_device *opt = &vm->opts->devices[i];
        r = vhost_dev_create(vm, opt, per_kind[opt->kind]++, &m->devs[m->nr_devs]);
        m->nr_devs++; /* destroyed on failure too */
        if (r == 0)
            r = vhost_dev_start(m->devs[m->nr_devs - 1], &m->pci);
        if (r != 0)
            return r;
    }
    if ((r = write_acpi_tables(vm, &am)) != 0)
        return r;
    log_debug("start-up: %.3f ms: devices and ACPI tables ready", vm_ms_since_start());
    struct x86_boot_spec spec = {
        .mem = &vm->mem,
        .kernel = {.size = files->kernel->size, .read = boot_file_read, .ctx = files->kernel},
        .cmdline = vm->opts->cmdline,
        .rsdp_gpa = X86_ACPI_TABLES_GPA,
    };
    if (files->initrd != NULL)
        spec.initrd = (struct boot_image){
            .size = files->initrd->size, .read = boot_file_read, .ctx = files->initrd};
    if ((r = x86_boot_load(&spec, &vm->machine->boot_state)) != 0)
        return r;
    log_debug("start-up: %.3f ms: kernel and initrd loaded", vm_ms_since_start());
    r = plat_x86_supported_cpuid(vm->machine->supported, X86_CPUID_MAX_ENTRIES,
                                 &vm->machine->nr_supported);
    if (r != 0) {
        log_error("reading the host's CPUID: %s", strerror(-r));
        return r;
    }
    for (unsigned i = 0; i < vm->machine->nr_supported; i++) {
        const struct x86_cpuid_entry *e = &vm->machine->supported[i];
        log_trace("host cpuid %08x.%u: %08x %08x %08x %08x", e->function, e->index, e->eax, e->ebx,
                  e->ecx, e->edx);
    }
    return 0;
}

int machine_setup_vcpu(struct vm *vm, struct vm_vcpu *vcpu)
{
    struct machine *m = vm->machine;
    struct x86_cpuid_entry cpuid[X86_CPUID_MAX_ENTRIES];
    unsigned n;
    int r =
        x86_cpuid_for_vcpu(m->supported, m->nr_supported, vcpu->index, vm->opts->cpus, cpuid, &n);
    if (r == 0)
        r = plat_x86_vcpu_set_cpuid(vcpu->plat, cpuid, n);
    /* Application processors wait for INIT/SIPI from the guest; only the BSP gets registers. */
    if (r == 0 && vcpu->index == 0)
        r = plat_x86_vcpu_set_boot_state(vcpu->plat, &m->boot_state);
    if (r != 0)
        log_error("setting up vCPU %u: %s", vcpu->index, strerror(-r));
    return r;
}

static size_t console_to_com1(void *ctx, const uint8_t *buf, size_t len)
{
    struct vm *vm = ctx;
    return uart16550_receive(&vm->machine->com1, buf, len);
}

static void console_to_com1_ready(void *ctx)
{
    struct vm *vm = ctx;
    uart16550_tx_ready(&vm->machine->com1);
}

static void console_quit(void *ctx)
{
    vm_request_stop(ctx, VM_STOP_QUIT, "quit from the console (Ctrl-A x)");
}

static size_t console_to_com2(void *ctx, const uint8_t *buf, size_t len)
{
    struct vm *vm = ctx;
    return uart16550_receive(&vm->machine->com2, buf, len);
}

static void console_to_com2_ready(void *ctx)
{
    struct vm *vm = ctx;
    uart16550_tx_ready(&vm->machine->com2);
}

int machine_attach_console(struct vm *vm, struct event_loop *loop)
{
    const struct console_sink sink = {
        .deliver = console_to_com1,
        .tx_ready = console_to_com1_ready,
        .quit = console_quit,
        .ctx = vm,
    };
    int r = console_attach(vm->console, loop, &sink);
    if (r != 0 || vm->console2 == NULL)
        return r;
    const struct console_sink sink2 = {
        .deliver = console_to_com2,
        .tx_ready = console_to_com2_ready,
        .quit = NULL,
        .ctx = vm,
    };
    return console_attach(vm->console2, loop, &sink2);
}

void machine_request_shutdown(struct vm *vm)
{
    acpi_pm_press_power_button(&vm->machine->pm);
}

void machine_counters(struct vm *vm, struct control_reply *reply)
{
    struct machine *m = vm->machine;
    for (unsigned i = 0; m != NULL && i < m->nr_devs; i++)
        vhost_dev_counters(m->devs[i], reply);
}

void machine_destroy(struct vm *vm)
{
    struct machine *m = vm->machine;
    if (m == NULL)
        return;
    if (m->pci_ready)
        pci_host_destroy(&m->pci);
    /* After the host: it still names the devices until it is gone. */
    for (unsigned i = 0; i < m->nr_devs; i++)
        vhost_dev_destroy(m->devs[i]);
    if (m->pm_ready)
        acpi_pm_destroy(&m->pm);
    if (m->com1_ready)
        uart16550_destroy(&m->com1);
    if (m->com2_ready)
        uart16550_destroy(&m->com2);
    free(m);
    vm->machine = NULL;
}
