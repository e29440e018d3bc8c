/* SPDX-License-Identifier: BSD-2-Clause */
#include "vmm/vm.h"

#include "core/log.h"
#include "vmm/machine.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

/* Per-port exit counts, kept only at log level debug and above: each exit costs tens of
 * microseconds under nested virtualisation, so knowing which ports the guest hammers is
 * the first step of any boot-time work. */
static uint32_t *pio_counts;

static void count_pio(uint16_t port)
{
    if (pio_counts != NULL)
        __atomic_add_fetch(&pio_counts[port], 1, __ATOMIC_RELAXED);
}

static void log_pio_counts(void)
{
    if (pio_counts == NULL)
        return;
    for (unsigned port = 0; port < 65536; port++) {
        if (pio_counts[port] >= 20)
            log_debug("exits: port 0x%04x: %u", port, pio_counts[port]);
    }
    memset(pio_counts, 0, 65536 * sizeof(*pio_counts));
}

static uint64_t process_start_ns;

void vm_set_process_start(uint64_t monotonic_ns)
{
    process_start_ns = monotonic_ns;
}

double vm_ms_since_start(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    uint64_t ns = (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
    return (double)(ns - process_start_ns) / 1e6;
}

static void log_startup_time(void)
{
    log_info("start-up: first vCPU entry %.3f ms after process start", vm_ms_since_start());
}

int vm_create(struct vm *vm, const struct vmm_options *opts, const struct boot_files *files,
              struct console *console, struct console *console2)
{
    memset(vm, 0, sizeof(*vm));
    vm->opts = opts;
    vm->console = console;
    vm->console2 = console2;
    vm->ram.fd = -1;
    vm->stop_fd = -1;
    pthread_mutex_init(&vm->stop_lock, NULL);
    int r;
    vm->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (vm->stop_fd < 0)
        return -errno;
    if ((r = bus_init(&vm->pio, "pio")) != 0 || (r = bus_init(&vm->mmio, "mmio")) != 0)
        return r;
    r = guest_ram_create(&vm->ram, opts->mem_bytes);
    if (r != 0) {
        log_error("cannot allocate %llu MiB of guest RAM: %s",
                  (unsigned long long)(opts->mem_bytes >> 20), strerror(-r));
        return r;
    }
    struct plat_vm_params params = {.nr_vcpus = opts->cpus};
    log_debug("start-up: %.3f ms: guest RAM allocated", vm_ms_since_start());
    if (log_get_level() >= LOG_DEBUG && pio_counts == NULL)
        pio_counts = calloc(65536, sizeof(*pio_counts));
    if ((r = plat_vm_create(&params, &vm->plat)) != 0)
        return r;
    if ((r = machine_map_ram(vm)) != 0)
        return r;
    log_debug("start-up: %.3f ms: VM created, RAM mapped", vm_ms_since_start());
    if ((r = machine_build(vm, files)) != 0)
        return r;
    log_debug("start-up: %.3f ms: machine built, guest loaded", vm_ms_since_start());
    vm->vcpus = calloc(opts->cpus, sizeof(*vm->vcpus));
    if (vm->vcpus == NULL)
        return -ENOMEM;
    for (unsigned i = 0; i < opts->cpus; i++) {
        struct vm_vcpu *v = &vm->vcpus[i];
        v->vm = vm;
        v->index = i;
        if ((r = plat_vcpu_create(vm->plat, i, &v->plat)) != 0)
            return r;
        if ((r = machine_setup_vcpu(vm, v)) != 0)
            return r;
    }
    log_debug("start-up: %.3f ms: vCPUs ready", vm_ms_since_start());
    return 0;
}

static void on_pio(void *opaque, uint16_t port, unsigned size, bool write, uint64_t *data)
{
    struct vm *vm = opaque;
    count_pio(port);
    int r = write ? bus_write(&vm->pio, port, size, *data) : bus_read(&vm->pio, port, size, data);
    if (r != 0)
        log_trace("unhandled port %s 0x%x/%u", write ? "write" : "read", port, size);
}

static void on_mmio(void *opaque, uint64_t gpa, unsigned size, bool write, uint64_t *data)
{
    struct vm *vm = opaque;
    int r = write ? bus_write(&vm->mmio, gpa, size, *data) : bus_read(&vm->mmio, gpa, size, data);
    if (r != 0)
        log_guest(LOG_DEBUG, "unhandled MMIO %s 0x%llx/%u", write ? "write" : "read",
                  (unsigned long long)gpa, size);
}

static void stop_with_registers(struct vm_vcpu *v, const char *what, unsigned long long code,
                                unsigned long long subcode)
{
    char regs[512];
    if (plat_vcpu_dump(v->plat, regs, sizeof(regs)) < 0)
        snprintf(regs, sizeof(regs), "vcpu%u (registers unavailable)", v->index);
    log_error("%s on vCPU %u: %s", what, v->index, regs);
    vm_request_stop(v->vm, VM_STOP_ERROR, "%s on vCPU %u (code 0x%llx/0x%llx)", what, v->index,
                    code, subcode);
}

static void *vcpu_thread(void *arg)
{
    struct vm_vcpu *v = arg;
    struct vm *vm = v->vm;
    const struct plat_io_handler io = {.pio = on_pio, .mmio = on_mmio, .opaque = vm};

    char name[16];
    snprintf(name, sizeof(name), "vcpu%u", v->index);
    pthread_setname_np(pthread_self(), name);
    static bool startup_logged;
    if (v->index == 0 && !startup_logged) {
        startup_logged = true; /* once per process: later boots are resets */
        log_startup_time();
    }

    while (vm_stop_reason(vm) == VM_STOP_NONE) {
        struct plat_exit exit;
        int r = plat_vcpu_run(v->plat, &io, &exit);
        if (r != 0) {
            vm_request_stop(vm, VM_STOP_ERROR, "running vCPU %u failed: %s", v->index,
                            strerror(-r));
            break;
        }
        switch (exit.reason) {
        case PLAT_EXIT_KICKED:
            break;
        case PLAT_EXIT_SYSTEM_RESET:
            vm_request_stop(vm, VM_STOP_RESET, "guest reset");
            break;
        case PLAT_EXIT_SYSTEM_OFF:
            vm_request_stop(vm, VM_STOP_POWEROFF, "guest powered off");
            break;
        case PLAT_EXIT_GUEST_CRASH:
            stop_with_registers(v, "guest crash reported to the hypervisor", exit.code,
                                exit.subcode);
            break;
        case PLAT_EXIT_SHUTDOWN:
            stop_with_registers(v, "triple fault", exit.code, exit.subcode);
            break;
        case PLAT_EXIT_INTERNAL_ERROR:
            stop_with_registers(v, "KVM internal error", exit.code, exit.subcode);
            break;
        case PLAT_EXIT_FAIL_ENTRY:
            stop_with_registers(v, "VM entry failure", exit.code, exit.subcode);
            break;
        case PLAT_EXIT_UNHANDLED:
            stop_with_registers(v, "unhandled exit", exit.code, exit.subcode);
            break;
        }
    }
    plat_vcpu_thread_done(v->plat);
    return NULL;
}

int vm_start(struct vm *vm)
{
    /* vCPU threads take only the kick signal; the main thread handles the rest. */
    sigset_t all, old;
    sigfillset(&all);
    sigdelset(&all, SIGSYS); /* --sandbox=trap reports a refused call through it */
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int r = 0;
    for (unsigned i = 0; i < vm->opts->cpus && r == 0; i++) {
        struct vm_vcpu *v = &vm->vcpus[i];
        sigset_t mask = all;
        sigdelset(&mask, SIGRTMIN + 1);
        pthread_sigmask(SIG_SETMASK, &mask, NULL);
        r = -pthread_create(&v->thread, NULL, vcpu_thread, v);
        v->started = r == 0;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r != 0) {
        vm_request_stop(vm, VM_STOP_ERROR, "cannot start vCPU threads: %s", strerror(-r));
        vm_join(vm);
    }
    return r;
}

enum vm_stop vm_stop_reason(struct vm *vm)
{
    return (enum vm_stop)__atomic_load_n(&vm->stop_reason, __ATOMIC_ACQUIRE);
}

void vm_request_stop(struct vm *vm, enum vm_stop reason, const char *fmt, ...)
{
    pthread_mutex_lock(&vm->stop_lock);
    if (vm_stop_reason(vm) == VM_STOP_NONE) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(vm->stop_message, sizeof(vm->stop_message), fmt, ap);
        va_end(ap);
        __atomic_store_n(&vm->stop_reason, (int)reason, __ATOMIC_RELEASE);
        uint64_t one = 1;
        if (write(vm->stop_fd, &one, sizeof(one)) < 0)
            log_debug("stop eventfd: %s", strerror(errno));
    }
    pthread_mutex_unlock(&vm->stop_lock);
    for (unsigned i = 0; vm->vcpus != NULL && i < vm->opts->cpus; i++) {
        if (vm->vcpus[i].plat != NULL)
            plat_vcpu_kick(vm->vcpus[i].plat);
    }
}

void vm_join(struct vm *vm)
{
    for (unsigned i = 0; vm->vcpus != NULL && i < vm->opts->cpus; i++) {
        if (vm->vcpus[i].started) {
            pthread_join(vm->vcpus[i].thread, NULL);
            vm->vcpus[i].started = false;
        }
    }
}

void vm_destroy(struct vm *vm)
{
    log_pio_counts();
    machine_destroy(vm);
    plat_vm_destroy(vm->plat); /* also frees the platform vCPUs */
    vm->plat = NULL;
    free(vm->vcpus);
    vm->vcpus = NULL;
    guest_ram_destroy(&vm->ram);
    bus_destroy(&vm->pio);
    bus_destroy(&vm->mmio);
    if (vm->stop_fd >= 0)
        close(vm->stop_fd);
    vm->stop_fd = -1;
    pthread_mutex_destroy(&vm->stop_lock);
}
