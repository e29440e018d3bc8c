/* SPDX-License-Identifier: BSD-2-Clause */
#include "supervisor/launch.h"

#include "host/sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

bool launch_sandbox = true;

/* Every capability this build knows of: what a component that keeps its privileges
 * (an external backend, --no-sandbox) keeps; bits past CAP_LAST_CAP are refused. */
#define LAUNCH_ALL_CAPS ((1ull << (CAP_LAST_CAP + 1)) - 1)

_Static_assert(DESC_MAX_HOST_CPUS <= CPU_SETSIZE, "host-cpus must fit a cpu_set_t");

/* Descriptors a component may hold: vhost-user connections, eventfds per queue, the
 * guest-RAM memfd, io_uring; a VMM with 16 devices of 17 queues stays well below. */
#define LAUNCH_NOFILE 4096
/* Threads and processes per component's uid: the VMM has a thread per vCPU and device,
 * and starts its own backends. Only meaningful for a non-root uid; kept generous. */
#define LAUNCH_NPROC 4096

/* Where the sandbox's empty root is built before the pivot: a directory that exists on
 * every host and is hidden only inside the component's own mount namespace. */
#define LAUNCH_SCRATCH "/mnt"

/* A missing image of a blk backend with create: is made, sparse, before its first start. */
static int make_image(const struct plan_comp *pc, struct launch_result *res)
{
    if (pc->create_bytes == 0 || access(pc->image, F_OK) == 0)
        return 0;
    int fd = open(pc->image, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 || ftruncate(fd, (off_t)pc->create_bytes) != 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        snprintf(res->why, sizeof(res->why), "cannot create the image %s: %s", pc->image,
                 strerror(e));
        return -e;
    }
    close(fd);
    return 0;
}

int launch_component(const struct plan_comp *pc, int log_fd, int cgroup_fd,
                     struct launch_result *res)
{
    memset(res, 0, sizeof(*res));
    res->pidfd = -1;
    int r = make_image(pc, res);
    if (r != 0)
        return r;
    if (mkdir(pc->own_dir, 0700) != 0 && errno != EEXIST) {
        r = -errno;
        snprintf(res->why, sizeof(res->why), "cannot create %s: %s", pc->own_dir, strerror(-r));
        return r;
    }
    int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null_fd < 0) {
        r = -errno;
        snprintf(res->why, sizeof(res->why), "cannot open /dev/null: %s", strerror(-r));
        return r;
    }
    const struct sandbox_fd fds[] = {{null_fd, 0}, {log_fd, 1}, {log_fd, 2}};
    const struct sandbox_rlimit limits[] = {
        {RLIMIT_NOFILE, LAUNCH_NOFILE},
        {RLIMIT_NPROC, LAUNCH_NPROC},
    };
    struct sandbox_bind binds[PLAN_MAX_BINDS];
    for (unsigned i = 0; i < pc->nr_binds; i++)
        binds[i] = (struct sandbox_bind){.src = pc->binds[i].path,
                                         .dst = pc->binds[i].path,
                                         .flags = (pc->binds[i].rw ? SANDBOX_BIND_RW : 0u) |
                                                  (pc->binds[i].dev ? SANDBOX_BIND_DEV : 0u)};

    /* argv with --sandbox for our programs (they apply their seccomp lists once set up). */
    char *argv[PLAN_MAX_ARGS + 2];
    unsigned n = 0;
    for (unsigned i = 0; i < pc->argc; i++)
        argv[n++] = pc->argv[i];
    /* trap: a refused call is named in the component's log before it exits, so the
     * supervisor can say which call it was (the call never runs either way). */
    if (launch_sandbox && !pc->external && !pc->spawns)
        argv[n++] = (char *)"--sandbox=trap";
    argv[n] = NULL;

    /* BULKHEAD_BIN_DIR: where a VMM finds the device programs it starts itself (its
     * /proc/self/exe may not name a path that exists in its new root). */
    char bin_env[PLAN_PATH_MAX + 32];
    const char *slash = strrchr(pc->argv[0], '/');
    snprintf(bin_env, sizeof(bin_env), "BULKHEAD_BIN_DIR=%.*s",
             slash != NULL ? (int)(slash - pc->argv[0]) : 0, pc->argv[0]);
    char *const envp[] = {(char *)"PATH=/usr/sbin:/usr/bin:/sbin:/bin", bin_env, NULL};
    struct sandbox_spec spec = {
        .program = pc->argv[0],
        .argv = argv,
        .envp = envp,
        .fds = fds,
        .nr_fds = 3,
        .rlimits = limits,
        .nr_rlimits = 2,
        .uid = -1,
        .gid = -1,
        .pdeathsig = SIGKILL,
        .scratch = LAUNCH_SCRATCH,
        .in_cgroup = cgroup_fd >= 0,
        .cgroup_fd = cgroup_fd,
    };
    /* DESC_MAX_HOST_CPUS fits a cpu_set_t (static assertion below). */
    cpu_set_t cpus;
    if (pc->host_cpus_given) {
        CPU_ZERO(&cpus);
        for (unsigned cpu = 0; cpu < DESC_MAX_HOST_CPUS; cpu++)
            if (pc->host_cpus[cpu / 64] & (1ull << (cpu % 64)))
                CPU_SET(cpu, &cpus);
        spec.cpus = &cpus;
        spec.cpus_size = sizeof(cpus);
    }
    if (!launch_sandbox) {
        spec.keep_caps = LAUNCH_ALL_CAPS;
    } else if (pc->external) {
        /* Their own sandboxes need their privileges and their view of the files. */
        spec.namespaces = SANDBOX_NS_IPC | SANDBOX_NS_UTS;
        spec.keep_caps = LAUNCH_ALL_CAPS;
    } else {
        spec.namespaces = SANDBOX_NS_MOUNT | SANDBOX_NS_PID | SANDBOX_NS_IPC | SANDBOX_NS_UTS;
        /* Taps live in the host's network namespace; everything else talks over unix
         * sockets only, which a namespace of its own does not hinder. */
        if (!pc->has_taps)
            spec.namespaces |= SANDBOX_NS_NET;
        else
            spec.keep_caps = 1ull << CAP_NET_ADMIN;
        spec.new_root = true;
        spec.binds = binds;
        spec.nr_binds = pc->nr_binds;
        spec.mount_proc = true;
    }
    struct sandbox_child child;
    r = sandbox_launch(&spec, &child);
    close(null_fd);
    if (r != 0) {
        snprintf(res->why, sizeof(res->why), "%s: %s", sandbox_step_name(child.step), strerror(-r));
        return r;
    }
    res->pid = child.pid;
    res->pidfd = child.pidfd;
    return 0;
}
