/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The allowlists. Each profile is a list of groups; each group is the calls one piece
 * of code makes after set-up (docs/security.md gives the reason for every entry). The
 * lists were taken from the code paths and checked by running each program's serving
 * code under its filter in trap mode (tests/unit/test_sandbox.c).
 */
#include "host/seccomp.h"

#include "core/log.h"
#include "core/os.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

/* A rule's first comparison datum that stands for the process's own pid, filled in at
 * load time (the tables are constant). */
#define DATUM_SELF_PID UINT64_MAX

/** One rule: a call allowed (err == 0) or failed with errno err, when all of its
 * argument comparisons hold. */
struct rule {
    int nr;                     /**< The system call's number. */
    int err;                    /**< 0: allowed; else it fails with this errno. */
    unsigned ncmp;              /**< Entries of @c cmp in use. */
    struct scmp_arg_cmp cmp[2]; /**< Argument conditions, all of which must hold. */
};

#define ALLOW(name)                                                                                \
    {                                                                                              \
        SCMP_SYS(name), 0, 0,                                                                      \
        {                                                                                          \
            {                                                                                      \
                0                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }
#define ALLOW_EQ(name, arg, val)                                                                   \
    {                                                                                              \
        SCMP_SYS(name), 0, 1,                                                                      \
        {                                                                                          \
            {                                                                                      \
                (arg), SCMP_CMP_EQ, (scmp_datum_t)(val), 0                                         \
            }                                                                                      \
        }                                                                                          \
    }
/* Allowed when (argument & mask) == val. */
#define ALLOW_MASKED(name, arg, mask, val)                                                         \
    {                                                                                              \
        SCMP_SYS(name), 0, 1,                                                                      \
        {                                                                                          \
            {                                                                                      \
                (arg), SCMP_CMP_MASKED_EQ, (scmp_datum_t)(mask), (scmp_datum_t)(val)               \
            }                                                                                      \
        }                                                                                          \
    }
#define FAIL(name, e)                                                                              \
    {                                                                                              \
        SCMP_SYS(name), (e), 0,                                                                    \
        {                                                                                          \
            {                                                                                      \
                0                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }

/*
 * Every program: plain I/O on descriptors it holds, memory management by malloc (never
 * executable memory), time, sleeping, and ending. fstat() is newfstatat(fd, "",
 * AT_EMPTY_PATH) in glibc, so that call is allowed with exactly that flag only.
 */
static const struct rule base_rules[] = {
    ALLOW(read),
    ALLOW(write),
    ALLOW(readv),
    ALLOW(writev),
    ALLOW(close),
    ALLOW(poll),
    ALLOW(ppoll),
    ALLOW(exit),
    ALLOW(exit_group),
    ALLOW(rt_sigreturn),
    ALLOW(restart_syscall),
    ALLOW(brk),
    ALLOW_MASKED(mmap, 2, PROT_EXEC, 0),
    ALLOW_MASKED(mprotect, 2, PROT_EXEC, 0),
    ALLOW(munmap),
    ALLOW(mremap),
    ALLOW(madvise),
    ALLOW(clock_gettime),
    ALLOW(clock_nanosleep),
    ALLOW(fstat),
    ALLOW_EQ(newfstatat, 3, AT_EMPTY_PATH),
    ALLOW_EQ(fcntl, 1, F_GETFL),
    ALLOW_EQ(fcntl, 1, F_SETFL),
    ALLOW_EQ(fcntl, 1, F_GETFD),
    ALLOW_EQ(fcntl, 1, F_SETFD),
};

/*
 * The vhost-user backend library and skeleton (vhost/backend.c, backend_prog.c):
 * control messages carry descriptors (recvmsg/sendmsg), the next frontend is accepted
 * on --socket, memory-table memfds are checked for their seals. The socket file is
 * removed at exit: that fails (EPERM) under the sandbox rather than killing a process
 * that is stopping anyway; the next run replaces the stale file.
 */
static const struct rule vhost_backend_rules[] = {
    ALLOW(recvmsg),      ALLOW(sendmsg),        ALLOW(accept4), ALLOW_EQ(fcntl, 1, F_GET_SEALS),
    FAIL(unlink, EPERM), FAIL(unlinkat, EPERM),
};

static const struct rule rng_rules[] = {
    ALLOW(getrandom),
};

/* io_uring: a ring (and its eventfd) per queue is made on each new connection; a
 * polling window yields the CPU between looks. */
static const struct rule blk_rules[] = {
    ALLOW(sched_yield),       ALLOW(io_uring_setup), ALLOW(io_uring_enter),
    ALLOW(io_uring_register), ALLOW(eventfd2),
};

/* Guest ports and uplinks are open; only the listening ports' accept() remains. */
static const struct rule net_rules[] = {
    ALLOW(accept),
};

/* Host unix sockets: connect out for the guest, accept in for host programs. */
static const struct rule vsock_rules[] = {
    ALLOW_EQ(socket, 0, AF_UNIX),
    ALLOW(connect),
    ALLOW(sendto),
    ALLOW(recvfrom),
    ALLOW(shutdown),
    ALLOW(getsockopt),
};

/* Clients of the unix ports come and go; a port's input is sized with FIONREAD. */
static const struct rule console_rules[] = {
    ALLOW(sendto),
    ALLOW(recvfrom),
    ALLOW_EQ(ioctl, 1, FIONREAD),
};

/*
 * bulkhead-vmm after its first VM is built. A reboot builds the whole VM again in the
 * same process (memfd RAM, KVM VM and vCPUs, eventfds, device threads), so those calls
 * stay; what the first start alone needs (open(), /dev/kvm itself, spawning backends)
 * does not. Threads are created by clone() with CLONE_THREAD only; clone3() fails with
 * ENOSYS, which makes glibc fall back to clone(), whose flags a filter can see. The
 * control and serial sockets' files are removed at exit: that fails (EPERM) rather than
 * killing a VMM that is stopping anyway (found by the supervisor's test: SIGSYS at exit).
 */
static const struct rule vmm_rules[] = {
    FAIL(unlink, EPERM),
    FAIL(unlinkat, EPERM),
    ALLOW_MASKED(clone, 0, CLONE_THREAD, CLONE_THREAD),
    FAIL(clone3, ENOSYS),
    ALLOW(set_robust_list),
    ALLOW(rseq),
    ALLOW(futex),
    ALLOW(rt_sigprocmask),
    ALLOW(rt_sigaction),
    ALLOW(getpid),
    ALLOW(gettid),
    ALLOW_EQ(tgkill, 0, DATUM_SELF_PID),
    ALLOW_EQ(prctl, 0, PR_SET_NAME),
    ALLOW(sched_yield),
    ALLOW(memfd_create),
    ALLOW(ftruncate),
    ALLOW_EQ(fcntl, 1, F_ADD_SEALS),
    ALLOW_EQ(fcntl, 1, F_GET_SEALS),
    ALLOW(pread64),
    ALLOW(eventfd2),
    ALLOW(timerfd_create),
    ALLOW(timerfd_settime),
    ALLOW(epoll_create1),
    ALLOW(epoll_ctl),
    ALLOW(epoll_wait),
    ALLOW(epoll_pwait),
    ALLOW_EQ(socket, 0, AF_UNIX),
    ALLOW(connect),
    ALLOW(accept4),
    ALLOW(sendmsg),
    ALLOW(recvmsg),
    ALLOW(sendto),
    ALLOW(recvfrom),
    ALLOW(getrandom),
    ALLOW_EQ(ioctl, 1, KVM_CREATE_VM),
    ALLOW_EQ(ioctl, 1, KVM_CHECK_EXTENSION),
    ALLOW_EQ(ioctl, 1, KVM_GET_SUPPORTED_CPUID),
    ALLOW_EQ(ioctl, 1, KVM_SET_TSS_ADDR),
    ALLOW_EQ(ioctl, 1, KVM_SET_IDENTITY_MAP_ADDR),
    ALLOW_EQ(ioctl, 1, KVM_CREATE_IRQCHIP),
    ALLOW_EQ(ioctl, 1, KVM_CREATE_PIT2),
    ALLOW_EQ(ioctl, 1, KVM_REINJECT_CONTROL),
    ALLOW_EQ(ioctl, 1, KVM_SET_USER_MEMORY_REGION),
    ALLOW_EQ(ioctl, 1, KVM_IRQ_LINE),
    ALLOW_EQ(ioctl, 1, KVM_SIGNAL_MSI),
    ALLOW_EQ(ioctl, 1, KVM_IOEVENTFD),
    ALLOW_EQ(ioctl, 1, KVM_IRQFD),
    ALLOW_EQ(ioctl, 1, KVM_SET_GSI_ROUTING),
    ALLOW_EQ(ioctl, 1, KVM_CREATE_VCPU),
    ALLOW_EQ(ioctl, 1, KVM_RUN),
    ALLOW_EQ(ioctl, 1, KVM_GET_REGS),
    ALLOW_EQ(ioctl, 1, KVM_SET_REGS),
    ALLOW_EQ(ioctl, 1, KVM_GET_SREGS),
    ALLOW_EQ(ioctl, 1, KVM_SET_SREGS),
    ALLOW_EQ(ioctl, 1, KVM_SET_CPUID2),
    ALLOW_EQ(ioctl, 1, KVM_SET_MSRS),
    ALLOW_EQ(ioctl, 1, KVM_SET_FPU),
    ALLOW_EQ(ioctl, 1, TCGETS),
    ALLOW_EQ(ioctl, 1, TCSETS),
};

/** One group of rules, with its length ("read" is call 0 on x86-64: no sentinel). */
struct group {
    const struct rule *rules; /**< The rules. */
    size_t n;                 /**< How many. */
};
#define GROUP(g)                                                                                   \
    {                                                                                              \
        (g), sizeof(g) / sizeof((g)[0])                                                            \
    }

/* The groups of each profile, ended by an empty one. */
static const struct group profile_vmm[] = {GROUP(base_rules), GROUP(vmm_rules), {NULL, 0}};
static const struct group profile_blk[] = {
    GROUP(base_rules), GROUP(vhost_backend_rules), GROUP(blk_rules), {NULL, 0}};
static const struct group profile_net[] = {
    GROUP(base_rules), GROUP(vhost_backend_rules), GROUP(net_rules), {NULL, 0}};
static const struct group profile_vsock[] = {
    GROUP(base_rules), GROUP(vhost_backend_rules), GROUP(vsock_rules), {NULL, 0}};
static const struct group profile_console[] = {
    GROUP(base_rules), GROUP(vhost_backend_rules), GROUP(console_rules), {NULL, 0}};
static const struct group profile_rng[] = {
    GROUP(base_rules), GROUP(vhost_backend_rules), GROUP(rng_rules), {NULL, 0}};

static const struct {
    const char *name;
    const struct group *groups;
} profiles[SANDBOX_NR_PROFILES] = {
    [SANDBOX_PROFILE_NONE] = {"none", NULL},
    [SANDBOX_PROFILE_VMM] = {"vmm", profile_vmm},
    [SANDBOX_PROFILE_BLK] = {"blk", profile_blk},
    [SANDBOX_PROFILE_NET] = {"net", profile_net},
    [SANDBOX_PROFILE_VSOCK] = {"vsock", profile_vsock},
    [SANDBOX_PROFILE_CONSOLE] = {"console", profile_console},
    [SANDBOX_PROFILE_RNG] = {"rng", profile_rng},
};

int sandbox_seccomp_parse(const char *arg, enum sandbox_seccomp_mode *out)
{
    if (arg == NULL || strcmp(arg, "kill") == 0)
        *out = SANDBOX_SECCOMP_KILL;
    else if (strcmp(arg, "trap") == 0)
        *out = SANDBOX_SECCOMP_TRAP;
    else
        return -EINVAL;
    return 0;
}

const char *sandbox_profile_name(enum sandbox_profile p)
{
    return (unsigned)p < SANDBOX_NR_PROFILES ? profiles[p].name : "?";
}

/* --- trap mode ---------------------------------------------------------------------- */

/* Names resolved before the filter is loaded: the handler may run inside malloc (a
 * refused mmap), so it can only read what is ready. */
#define TRAP_NAMES 512
static char *trap_names[TRAP_NAMES];
static const char *trap_prog;

static size_t put_str(char *buf, size_t len, size_t cap, const char *s)
{
    while (*s != '\0' && len < cap)
        buf[len++] = *s++;
    return len;
}

static size_t put_num(char *buf, size_t len, size_t cap, long v)
{
    char digits[24];
    size_t n = 0;
    unsigned long u = v < 0 ? -(unsigned long)v : (unsigned long)v;
    do {
        digits[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0 && len < cap)
        buf[len++] = '-';
    while (n > 0 && len < cap)
        buf[len++] = digits[--n];
    return len;
}

/* Only async-signal-safe work: format into a local buffer, one write(), _exit(). */
static void on_sigsys(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    char line[256];
    const size_t cap = sizeof(line) - 1;
    int nr = si->si_syscall;
    size_t n = put_str(line, 0, cap, trap_prog);
    n = put_str(line, n, cap, ": error: seccomp: system call ");
    const char *name = nr >= 0 && nr < TRAP_NAMES ? trap_names[nr] : NULL;
    n = put_str(line, n, cap, name != NULL ? name : "?");
    n = put_str(line, n, cap, " (");
    n = put_num(line, n, cap, nr);
    n = put_str(line, n, cap, ") is not allowed\n");
    (void)!write(STDERR_FILENO, line, n);
    _exit(128 + SIGSYS);
}

static int install_trap_handler(void)
{
    trap_prog = os_program_name();
    for (int nr = 0; nr < TRAP_NAMES; nr++) {
        if (trap_names[nr] == NULL)
            trap_names[nr] = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
    }
    struct sigaction sa = {.sa_sigaction = on_sigsys, .sa_flags = SA_SIGINFO};
    sigemptyset(&sa.sa_mask);
    sigset_t sys;
    sigemptyset(&sys);
    sigaddset(&sys, SIGSYS);
    /* A blocked SIGSYS would make the kernel kill the process instead, silently. */
    if (sigaction(SIGSYS, &sa, NULL) != 0 || sigprocmask(SIG_UNBLOCK, &sys, NULL) != 0)
        return -errno;
    return 0;
}

/* --- building and loading ------------------------------------------------------------ */

static int add_rule(scmp_filter_ctx ctx, const struct rule *r)
{
    struct scmp_arg_cmp cmp[2];
    memcpy(cmp, r->cmp, sizeof(cmp));
    for (unsigned i = 0; i < r->ncmp; i++) {
        if (cmp[i].datum_a == DATUM_SELF_PID)
            cmp[i].datum_a = (scmp_datum_t)getpid();
    }
    uint32_t action = r->err != 0 ? SCMP_ACT_ERRNO((uint32_t)r->err) : SCMP_ACT_ALLOW;
    int rc = seccomp_rule_add_array(ctx, action, r->nr, r->ncmp, cmp);
    /* A call this architecture does not have (a pseudo-number) needs no rule. */
    if (rc == -EDOM && r->nr < 0)
        return 0;
    return rc;
}

static int build_and_load(enum sandbox_profile p, uint32_t default_action)
{
    scmp_filter_ctx ctx = seccomp_init(default_action);
    if (ctx == NULL)
        return -ENOMEM;
    int rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
    if (rc == 0)
        rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, default_action);
    for (const struct group *g = profiles[p].groups; rc == 0 && g->rules != NULL; g++) {
        for (size_t i = 0; rc == 0 && i < g->n; i++)
            rc = add_rule(ctx, &g->rules[i]);
    }
    if (rc == 0)
        rc = seccomp_load(ctx);
    seccomp_release(ctx);
    return rc;
}

int sandbox_seccomp_apply(enum sandbox_profile p, enum sandbox_seccomp_mode mode)
{
    if (p == SANDBOX_PROFILE_NONE || (unsigned)p >= SANDBOX_NR_PROFILES ||
        (unsigned)mode > SANDBOX_SECCOMP_TRAP)
        return -EINVAL;
    if (mode == SANDBOX_SECCOMP_OFF)
        return 0;
    uint32_t action = SCMP_ACT_KILL_PROCESS;
    if (mode == SANDBOX_SECCOMP_TRAP) {
        int r = install_trap_handler();
        if (r != 0) {
            log_error("seccomp: cannot install the SIGSYS handler: %s", strerror(-r));
            return r;
        }
        action = SCMP_ACT_TRAP;
    }
    int rc = build_and_load(p, action);
    if (rc != 0) {
        log_error("seccomp: cannot load the %s profile: %s", profiles[p].name, strerror(-rc));
        return rc < 0 ? rc : -EINVAL;
    }
    log_info("seccomp: %s profile loaded (%s)", profiles[p].name,
             mode == SANDBOX_SECCOMP_TRAP ? "a refused call is reported" : "a refused call kills");
    return 0;
}
