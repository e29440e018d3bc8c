/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The platform interface on Linux KVM (x86-64): VM-wide calls.
 * Everything KVM-specific in bulkhead lives in this directory.
 */
#include "platform/kvm/kvm_internal.h"

#include "arch/x86/layout.h"
#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

struct kvm_platform kvm_platform = {.sys_fd = -1};

static void kick_signal_handler(int sig)
{
    (void)sig; /* Only here so that the signal interrupts KVM_RUN with EINTR. */
}

static int check_cap(int fd, long cap, const char *name)
{
    int r = ioctl(fd, KVM_CHECK_EXTENSION, cap);
    if (r <= 0) {
        log_error("KVM lacks the %s capability", name);
        return -ENOTSUP;
    }
    return r;
}

/* APICv (Intel) and AVIC (AMD) are module parameters of KVM; say which is in use (REQ-101). */
static void log_apic_virtualisation(void)
{
    static const char *const params[] = {"/sys/module/kvm_intel/parameters/enable_apicv",
                                         "/sys/module/kvm_amd/parameters/avic"};
    for (size_t i = 0; i < sizeof(params) / sizeof(params[0]); i++) {
        char v[8] = {0};
        int fd = open(params[i], O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        ssize_t n = read(fd, v, sizeof(v) - 1);
        close(fd);
        if (n > 0)
            log_info("APIC virtualisation (%s): %s", i == 0 ? "APICv" : "AVIC",
                     (v[0] == 'Y' || v[0] == '1') ? "on" : "off (not offered by this host)");
    }
}

int plat_init(void)
{
    if (kvm_platform.sys_fd >= 0)
        return 0;
    int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        int err = errno;
        log_error("cannot open /dev/kvm: %s", strerror(err));
        return -err;
    }
    int version = ioctl(fd, KVM_GET_API_VERSION, 0);
    if (version != KVM_API_VERSION) {
        log_error("/dev/kvm speaks API version %d, bulkhead needs %d", version, KVM_API_VERSION);
        close(fd);
        return -ENOTSUP;
    }
    static const struct {
        long cap;
        const char *name;
    } required[] = {
        {KVM_CAP_IRQCHIP, "IRQCHIP"},       {KVM_CAP_USER_MEMORY, "USER_MEMORY"},
        {KVM_CAP_IOEVENTFD, "IOEVENTFD"},   {KVM_CAP_IRQFD, "IRQFD"},
        {KVM_CAP_SIGNAL_MSI, "SIGNAL_MSI"}, {KVM_CAP_PIT2, "PIT2"},
        {KVM_CAP_EXT_CPUID, "EXT_CPUID"},   {KVM_CAP_IMMEDIATE_EXIT, "IMMEDIATE_EXIT"},
    };
    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
        int r = check_cap(fd, required[i].cap, required[i].name);
        if (r < 0) {
            close(fd);
            return r;
        }
    }
    int mmap_size = ioctl(fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (mmap_size < (int)sizeof(struct kvm_run)) {
        log_error("KVM_GET_VCPU_MMAP_SIZE failed");
        close(fd);
        return -ENOTSUP;
    }
    int max = ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
    if (max <= 0)
        max = ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
    if (max <= 0)
        max = 4;
    /* Without x2APIC IDs in the MADT, xAPIC IDs stop at 254 (255 is broadcast). */
    if (max > 254)
        max = 254;

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = kick_signal_handler;
    sigemptyset(&sa.sa_mask);
    if (sigaction(KVM_KICK_SIGNAL, &sa, NULL) != 0) {
        int err = errno;
        close(fd);
        return -err;
    }
    log_apic_virtualisation();
    kvm_platform.sys_fd = fd;
    kvm_platform.vcpu_mmap_size = (size_t)mmap_size;
    kvm_platform.max_vcpus = (unsigned)max;
    return 0;
}

unsigned plat_max_vcpus(void)
{
    return kvm_platform.max_vcpus;
}

int plat_vm_create(const struct plat_vm_params *params, struct plat_vm **out)
{
    if (kvm_platform.sys_fd < 0)
        return -ENODEV;
    if (params->nr_vcpus == 0 || params->nr_vcpus > kvm_platform.max_vcpus)
        return -EINVAL;
    struct plat_vm *vm = calloc(1, sizeof(*vm));
    if (vm == NULL)
        return -ENOMEM;
    vm->nr_vcpus = params->nr_vcpus;
    int lr = pthread_mutex_init(&vm->routes_lock, NULL);
    if (lr != 0) {
        free(vm);
        return -lr;
    }
    vm->fd = ioctl(kvm_platform.sys_fd, KVM_CREATE_VM, 0);
    if (vm->fd < 0) {
        int err = errno;
        log_error("KVM_CREATE_VM: %s", strerror(err));
        pthread_mutex_destroy(&vm->routes_lock);
        free(vm);
        return -err;
    }
    /* Intel VMX needs three pages for a real-mode TSS and one for an identity page table;
     * both sit in a range the e820 map reports as reserved. AMD ignores them. */
    if (ioctl(vm->fd, KVM_SET_TSS_ADDR, (unsigned long)X86_HV_PRIVATE_GPA) < 0)
        goto fail;
    uint64_t ident = X86_HV_PRIVATE_GPA + 0x3000;
    if (ioctl(vm->fd, KVM_SET_IDENTITY_MAP_ADDR, &ident) < 0)
        goto fail;
    if (ioctl(vm->fd, KVM_CREATE_IRQCHIP, 0) < 0)
        goto fail;
    /* The PIT drives the speaker port too; a dummy speaker avoids exits on port 0x61. */
    struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};
    if (ioctl(vm->fd, KVM_CREATE_PIT2, &pit) < 0)
        goto fail;
    /* Reinjecting missed PIT ticks makes KVM inhibit APIC virtualisation (AVIC); Linux guests
     * keep time with kvm-clock and do not need the ticks, so let the hardware have the APIC. */
    if (ioctl(kvm_platform.sys_fd, KVM_CHECK_EXTENSION, KVM_CAP_REINJECT_CONTROL) > 0) {
        struct kvm_reinject_control reinject = {.pit_reinject = 0};
        if (ioctl(vm->fd, KVM_REINJECT_CONTROL, &reinject) < 0)
            log_debug("KVM_REINJECT_CONTROL: %s", strerror(errno));
    }
    *out = vm;
    return 0;
fail:;
    int err = errno;
    log_error("creating the KVM VM failed: %s", strerror(err));
    close(vm->fd);
    pthread_mutex_destroy(&vm->routes_lock);
    free(vm);
    return -err;
}

void plat_vm_destroy(struct plat_vm *vm)
{
    if (vm == NULL)
        return;
    for (unsigned i = 0; i < KVM_MAX_VCPUS_TRACKED; i++) {
        if (vm->vcpus[i] != NULL)
            kvm_vcpu_free(vm->vcpus[i]);
    }
    close(vm->fd);
    pthread_mutex_destroy(&vm->routes_lock);
    free(vm->msi_routes);
    free(vm->routing);
    free(vm);
}

int plat_vm_map_ram(struct plat_vm *vm, unsigned slot, uint64_t gpa, void *hva, uint64_t size)
{
    struct kvm_userspace_memory_region region = {
        .slot = slot,
        .flags = 0,
        .guest_phys_addr = gpa,
        .memory_size = size,
        .userspace_addr = (uint64_t)(uintptr_t)hva,
    };
    if (ioctl(vm->fd, KVM_SET_USER_MEMORY_REGION, &region) < 0) {
        int err = errno;
        log_error("KVM_SET_USER_MEMORY_REGION(slot %u, gpa 0x%llx, size 0x%llx): %s", slot,
                  (unsigned long long)gpa, (unsigned long long)size, strerror(err));
        return -err;
    }
    return 0;
}

int plat_irq_set(struct plat_vm *vm, uint32_t gsi, bool level)
{
    struct kvm_irq_level irq = {.irq = gsi, .level = level ? 1 : 0};
    if (ioctl(vm->fd, KVM_IRQ_LINE, &irq) < 0)
        return -errno;
    return 0;
}

int plat_msi_send(struct plat_vm *vm, uint64_t addr, uint32_t data)
{
    struct kvm_msi msi = {
        .address_lo = (uint32_t)addr,
        .address_hi = (uint32_t)(addr >> 32),
        .data = data,
    };
    int r = ioctl(vm->fd, KVM_SIGNAL_MSI, &msi);
    if (r < 0)
        return -errno;
    return r > 0 ? 0 : -EAGAIN; /* 0 means the guest blocked it (masked or no target). */
}

static int ioeventfd(struct plat_vm *vm, enum plat_space space, uint64_t addr, unsigned len,
                     int notify_fd, uint32_t extra_flags)
{
    struct kvm_ioeventfd ev = {
        .addr = addr,
        .len = len,
        .fd = notify_fd,
        .flags = extra_flags | (space == PLAT_SPACE_PIO ? KVM_IOEVENTFD_FLAG_PIO : 0),
    };
    if (ioctl(vm->fd, KVM_IOEVENTFD, &ev) < 0)
        return -errno;
    return 0;
}

int plat_doorbell_add(struct plat_vm *vm, enum plat_space space, uint64_t addr, unsigned len,
                      int notify_fd)
{
    return ioeventfd(vm, space, addr, len, notify_fd, 0);
}

int plat_doorbell_remove(struct plat_vm *vm, enum plat_space space, uint64_t addr, unsigned len,
                         int notify_fd)
{
    return ioeventfd(vm, space, addr, len, notify_fd, KVM_IOEVENTFD_FLAG_DEASSIGN);
}

int plat_irq_notification_add(struct plat_vm *vm, uint32_t gsi, int notify_fd)
{
    struct kvm_irqfd irqfd = {.fd = (uint32_t)notify_fd, .gsi = gsi};
    if (ioctl(vm->fd, KVM_IRQFD, &irqfd) < 0)
        return -errno;
    return 0;
}

int plat_irq_notification_remove(struct plat_vm *vm, uint32_t gsi, int notify_fd)
{
    struct kvm_irqfd irqfd = {
        .fd = (uint32_t)notify_fd, .gsi = gsi, .flags = KVM_IRQFD_FLAG_DEASSIGN};
    if (ioctl(vm->fd, KVM_IRQFD, &irqfd) < 0)
        return -errno;
    return 0;
}

/*
 * MSI routes.
 *
 * KVM_SET_GSI_ROUTING replaces the VM's whole routing table, and the table that
 * KVM_CREATE_IRQCHIP installed (GSI n -> IOAPIC pin n for 0-23, and -> pin n % 8 of the
 * master (n < 8) or slave PIC for 0-15) would vanish with the first MSI route, silently
 * disconnecting plat_irq_set() and the PIT. So the table is kept here: those default
 * entries, then one MSI entry per allocated GSI from KVM_MSI_GSI_BASE up, rebuilt and set
 * whole on every change under routes_lock. A failed ioctl leaves KVM's previous table in
 * force, and the copy is rolled back to match it.
 *
 * seL4 has no in-kernel routing: the VMM's own interrupt-controller model would keep this
 * same GSI -> (address, data) table, and a notification bound with
 * plat_irq_notification_add() would wake a VMM thread that looks the GSI up and injects
 * the message through its LAPIC model; removing a binding unbinds the notification.
 */

/* Irqchip entries KVM_CREATE_IRQCHIP sets up on x86: 24 IOAPIC pins plus 16 PIC pins. */
#define KVM_DEFAULT_ROUTES 40u

static unsigned put_default_routes(struct kvm_irq_routing_entry *e)
{
    unsigned n = 0;
    for (uint32_t gsi = 0; gsi < KVM_MSI_GSI_BASE; gsi++) {
        e[n++] = (struct kvm_irq_routing_entry){
            .gsi = gsi,
            .type = KVM_IRQ_ROUTING_IRQCHIP,
            .u.irqchip = {.irqchip = KVM_IRQCHIP_IOAPIC, .pin = gsi},
        };
        if (gsi < 16) {
            e[n++] = (struct kvm_irq_routing_entry){
                .gsi = gsi,
                .type = KVM_IRQ_ROUTING_IRQCHIP,
                .u.irqchip = {.irqchip = gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE,
                              .pin = gsi % 8},
            };
        }
    }
    return n;
}

/* Allocate the copy of the table on first use, sized by what this KVM allows. */
static int routes_init_locked(struct plat_vm *vm)
{
    if (vm->msi_routes != NULL)
        return 0;
    /* KVM_CAP_IRQ_ROUTING reports the number of GSIs (and of entries) a table may have. */
    int max = ioctl(kvm_platform.sys_fd, KVM_CHECK_EXTENSION, KVM_CAP_IRQ_ROUTING);
    if (max <= (int)KVM_DEFAULT_ROUTES)
        return -ENOTSUP;
    unsigned n = (unsigned)max - KVM_DEFAULT_ROUTES;
    if (n > KVM_MSI_ROUTES_MAX)
        n = KVM_MSI_ROUTES_MAX;
    struct kvm_msi_route *routes = calloc(n, sizeof(*routes));
    struct kvm_irq_routing *routing =
        calloc(1, sizeof(*routing) + (KVM_DEFAULT_ROUTES + n) * sizeof(routing->entries[0]));
    if (routes == NULL || routing == NULL) {
        free(routes);
        free(routing);
        return -ENOMEM;
    }
    vm->msi_routes = routes;
    vm->nr_msi_routes = n;
    vm->routing = routing;
    return 0;
}

static int routes_commit_locked(struct plat_vm *vm)
{
    struct kvm_irq_routing *r = vm->routing;
    unsigned n = put_default_routes(r->entries);
    for (unsigned i = 0; i < vm->nr_msi_routes; i++) {
        const struct kvm_msi_route *m = &vm->msi_routes[i];
        if (!m->used)
            continue;
        r->entries[n++] = (struct kvm_irq_routing_entry){
            .gsi = KVM_MSI_GSI_BASE + i,
            .type = KVM_IRQ_ROUTING_MSI,
            .u.msi = {.address_lo = (uint32_t)m->addr,
                      .address_hi = (uint32_t)(m->addr >> 32),
                      .data = m->data},
        };
    }
    r->nr = n;
    r->flags = 0;
    if (ioctl(vm->fd, KVM_SET_GSI_ROUTING, r) < 0) {
        int err = errno;
        log_warn("KVM_SET_GSI_ROUTING (%u entries): %s", n, strerror(err));
        return -err;
    }
    return 0;
}

/* The table slot of an allocated MSI GSI, or NULL. */
static struct kvm_msi_route *msi_route_locked(struct plat_vm *vm, uint32_t gsi)
{
    if (vm->msi_routes == NULL || gsi < KVM_MSI_GSI_BASE ||
        gsi - KVM_MSI_GSI_BASE >= vm->nr_msi_routes)
        return NULL;
    struct kvm_msi_route *m = &vm->msi_routes[gsi - KVM_MSI_GSI_BASE];
    return m->used ? m : NULL;
}

int plat_msi_route_add(struct plat_vm *vm, uint64_t addr, uint32_t data, uint32_t *gsi)
{
    pthread_mutex_lock(&vm->routes_lock);
    int r = routes_init_locked(vm);
    if (r == 0) {
        r = -ENOSPC;
        for (unsigned i = 0; i < vm->nr_msi_routes; i++) {
            struct kvm_msi_route *m = &vm->msi_routes[i];
            if (m->used)
                continue;
            *m = (struct kvm_msi_route){.used = true, .addr = addr, .data = data};
            r = routes_commit_locked(vm);
            if (r < 0)
                m->used = false;
            else
                *gsi = KVM_MSI_GSI_BASE + i;
            break;
        }
    }
    pthread_mutex_unlock(&vm->routes_lock);
    return r;
}

int plat_msi_route_update(struct plat_vm *vm, uint32_t gsi, uint64_t addr, uint32_t data)
{
    int r = -ENOENT;
    pthread_mutex_lock(&vm->routes_lock);
    struct kvm_msi_route *m = msi_route_locked(vm, gsi);
    if (m != NULL) {
        struct kvm_msi_route old = *m;
        m->addr = addr;
        m->data = data;
        r = routes_commit_locked(vm);
        if (r < 0)
            *m = old;
    }
    pthread_mutex_unlock(&vm->routes_lock);
    return r;
}

int plat_msi_route_remove(struct plat_vm *vm, uint32_t gsi)
{
    int r = -ENOENT;
    pthread_mutex_lock(&vm->routes_lock);
    struct kvm_msi_route *m = msi_route_locked(vm, gsi);
    if (m != NULL) {
        m->used = false;
        r = routes_commit_locked(vm);
        if (r < 0)
            m->used = true;
    }
    pthread_mutex_unlock(&vm->routes_lock);
    return r;
}
