/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The launcher (host/sandbox.c) and the seccomp profiles (host/seccomp.c).
 *
 * Launcher: this test program starts itself through sandbox_launch() with the argument
 * CHILD_ARG; that run reports from inside the sandbox (its open descriptors, limits,
 * no_new_privs, capabilities, pid, uid, namespaces, what its root holds) through the
 * one descriptor it was given. Privileged (the suite runs as root) and unprivileged
 * (a forked helper that becomes nobody first, so the launcher makes a user namespace)
 * launches are both checked, and so are failures before exec.
 *
 * Profiles: a forked child applies each profile and then opens a file, calls ptrace,
 * makes an AF_INET socket, executes a program, forks and maps executable memory: each
 * must kill it by SIGSYS. And the backends' serving code (rng, blk on a real image and
 * io_uring) runs under its profile in trap mode in a forked child, driven over a
 * socketpair by the fake guest: real traffic, and a call missing from a list would end
 * the child with status 159 and its name on stderr.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "backends/blk/blk_device.h"
#include "backends/blk/blk_engine.h"
#include "backends/blk/virtio_blk.h"
#include "backends/common/backend_prog.h"
#include "backends/rng/rng_device.h"
#include "fake_guest.h"
#include "host/sandbox.h"
#include "host/seccomp.h"
#include "vhost/backend.h"
#include "vhost/frontend.h"
#include "virtio/virtio_ring.h"
#include "virtio/virtqueue.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <poll.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHILD_ARG "--sandbox-report"
#define REPORT_FD 3
#define F(bit)    (1ull << (bit))

/* ---- the report a launched copy of this program sends from inside its sandbox ---- */

struct report {
    int nfds;
    int fds[32];
    uint64_t nofile, nproc, core, memlock;
    int nnp;
    uint64_t cap_eff, cap_prm, cap_inh;
    int bounding_any, ambient_any;
    int pid, uid, sid_is_pid;
    int sigpipe_default;
    int have_proc;
    uint64_t ns[5]; /* mnt pid ipc net uts, from /proc/self/ns when /proc is there */
    int passwd_errno, mkdir_errno;
    char root[128];   /* the root's entries, sorted, space-separated */
    uint64_t cpus;    /* sched_getaffinity(), CPUs 0 to 63 */
    char cgroup[256]; /* the cgroup v2 path, from /proc/self/cgroup's "0::" line */
};

static const char *const ns_names[5] = {"mnt", "pid", "ipc", "net", "uts"};

static uint64_t soft_limit(int res)
{
    struct rlimit rl;
    getrlimit((__rlimit_resource_t)res, &rl);
    return rl.rlim_cur;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void list_root(char *out, size_t len)
{
    char names[16][32];
    const char *ptrs[16];
    unsigned n = 0;
    DIR *d = opendir("/");
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL && n < 16) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(names[n], sizeof(names[n]), "%.31s", e->d_name);
        ptrs[n] = names[n];
        n++;
    }
    if (d != NULL)
        closedir(d);
    qsort(ptrs, n, sizeof(ptrs[0]), cmp_str);
    out[0] = '\0';
    for (unsigned i = 0; i < n; i++) {
        strncat(out, ptrs[i], len - strlen(out) - 1);
        if (i + 1 < n)
            strncat(out, " ", len - strlen(out) - 1);
    }
}

static int child_report(void)
{
    static struct report r;
    /* Probe before anything else opens a descriptor. */
    for (int fd = 0; fd < 1024 && r.nfds < 32; fd++) {
        if (fcntl(fd, F_GETFD) >= 0)
            r.fds[r.nfds++] = fd;
    }
    r.nofile = soft_limit(RLIMIT_NOFILE);
    r.nproc = soft_limit(RLIMIT_NPROC);
    r.core = soft_limit(RLIMIT_CORE);
    r.memlock = soft_limit(RLIMIT_MEMLOCK);
    r.nnp = prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0);
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof(data));
    syscall(SYS_capget, &hdr, data);
    r.cap_eff = data[0].effective | (uint64_t)data[1].effective << 32;
    r.cap_prm = data[0].permitted | (uint64_t)data[1].permitted << 32;
    r.cap_inh = data[0].inheritable | (uint64_t)data[1].inheritable << 32;
    for (int cap = 0; cap < 64; cap++) {
        if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) == 1)
            r.bounding_any = 1;
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, cap, 0, 0) == 1)
            r.ambient_any = 1;
    }
    r.pid = getpid();
    r.uid = (int)getuid();
    r.sid_is_pid = getsid(0) == getpid();
    struct sigaction sa;
    r.sigpipe_default = sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL;
    struct stat st;
    r.have_proc = stat("/proc/self/ns/mnt", &st) == 0;
    for (unsigned i = 0; r.have_proc && i < 5; i++) {
        char p[64];
        snprintf(p, sizeof(p), "/proc/self/ns/%s", ns_names[i]);
        if (stat(p, &st) == 0)
            r.ns[i] = st.st_ino;
    }
    r.passwd_errno = open("/etc/passwd", O_RDONLY | O_CLOEXEC) < 0 ? errno : 0;
    r.mkdir_errno = mkdir("/sandbox-test-dir", 0755) < 0 ? errno : 0;
    list_root(r.root, sizeof(r.root));
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
        for (unsigned cpu = 0; cpu < 64; cpu++)
            if (CPU_ISSET(cpu, &set))
                r.cpus |= 1ull << cpu;
    }
    FILE *f = fopen("/proc/self/cgroup", "re");
    char line[300];
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "0::", 3) == 0)
            snprintf(r.cgroup, sizeof(r.cgroup), "%.*s", (int)strcspn(line + 3, "\n"), line + 3);
    }
    if (f != NULL)
        fclose(f);
    return write(REPORT_FD, &r, sizeof(r)) == (ssize_t)sizeof(r) ? 0 : 1;
}

/* ---- launching ---- */

static char *child_argv[] = {"test_sandbox", CHILD_ARG, NULL};
static char *child_env[] = {"SANDBOX_TEST=1", NULL};

/* The dynamic loader and libraries of this (dynamically linked) test program. */
static const struct sandbox_bind lib_binds[] = {
    {"/usr", "/usr", 0},
    {"/lib", "/lib", 0},
    {"/lib64", "/lib64", 0},
};

static bool has_lib64(void)
{
    struct stat st;
    return stat("/lib64", &st) == 0;
}

/* Read the report; the pipe's write end must already be closed here. */
static void read_report(int rfd, struct report *r)
{
    memset(r, 0, sizeof(*r));
    assert_int_equal(read(rfd, r, sizeof(*r)), (ssize_t)sizeof(*r));
}

static int wait_exit(pid_t pid)
{
    int status;
    while (waitpid(pid, &status, 0) < 0)
        assert_int_equal(errno, EINTR);
    return status;
}

static void assert_no_privileges(const struct report *r)
{
    assert_int_equal(r->nnp, 1);
    assert_int_equal(r->cap_eff, 0);
    assert_int_equal(r->cap_prm, 0);
    assert_int_equal(r->cap_inh, 0);
    assert_int_equal(r->bounding_any, 0);
    assert_int_equal(r->ambient_any, 0);
    assert_int_equal(r->core, 0);
}

static void test_full_sandbox(void **state)
{
    (void)state;
    assert_int_equal(getuid(), 0); /* the suite runs as root; the unprivileged path below */
    int rep[2];
    assert_int_equal(pipe2(rep, O_CLOEXEC), 0);
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    int passed = eventfd(0, EFD_CLOEXEC);
    int not_passed = eventfd(0, 0); /* not close-on-exec: must still be closed */
    assert_true(devnull >= 0 && passed >= 0 && not_passed >= 0);
    const struct sandbox_fd fds[] = {{devnull, 0}, {rep[1], REPORT_FD}, {passed, 7}};
    const struct sandbox_rlimit limits[] = {
        {RLIMIT_NOFILE, 64}, {RLIMIT_NPROC, 512}, {RLIMIT_MEMLOCK, 0}};
    const struct sandbox_spec spec = {
        .program = "/proc/self/exe",
        .argv = child_argv,
        .envp = child_env,
        .fds = fds,
        .nr_fds = 3,
        .namespaces =
            SANDBOX_NS_MOUNT | SANDBOX_NS_PID | SANDBOX_NS_IPC | SANDBOX_NS_NET | SANDBOX_NS_UTS,
        .new_root = true,
        .binds = lib_binds,
        .nr_binds = has_lib64() ? 3 : 2,
        .mount_proc = true,
        .rlimits = limits,
        .nr_rlimits = 3,
        .uid = -1,
        .gid = -1,
    };
    /* An ignored SIGPIPE survives exec: the launcher must reset it. */
    void (*old)(int) = signal(SIGPIPE, SIG_IGN);
    struct sandbox_child c;
    int r = sandbox_launch(&spec, &c);
    signal(SIGPIPE, old);
    if (r != 0)
        fail_msg("launch failed: %s: %s", sandbox_step_name(c.step), strerror(c.err));
    close(rep[1]);
    struct report rp;
    read_report(rep[0], &rp);
    int status = wait_exit(c.pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_true(c.pidfd >= 0);
    close(c.pidfd);

    /* Exactly the passed descriptors, at their numbers. */
    assert_int_equal(rp.nfds, 3);
    assert_int_equal(rp.fds[0], 0);
    assert_int_equal(rp.fds[1], REPORT_FD);
    assert_int_equal(rp.fds[2], 7);
    assert_int_equal(rp.nofile, 64);
    assert_int_equal(rp.nproc, 512);
    assert_int_equal(rp.memlock, 0);
    assert_no_privileges(&rp);
    assert_int_equal(rp.uid, 0);
    assert_int_equal(rp.pid, 1); /* PID 1 of its own namespace */
    assert_int_equal(rp.sid_is_pid, 1);
    assert_int_equal(rp.sigpipe_default, 1);
    /* Every namespace is new. */
    assert_int_equal(rp.have_proc, 1);
    for (unsigned i = 0; i < 5; i++) {
        char p[64];
        struct stat st;
        snprintf(p, sizeof(p), "/proc/self/ns/%s", ns_names[i]);
        assert_int_equal(stat(p, &st), 0);
        assert_true(rp.ns[i] != 0);
        if (rp.ns[i] == st.st_ino)
            fail_msg("the %s namespace is the host's", ns_names[i]);
    }
    /* An empty, read-only root: only the bind mounts and /proc. */
    assert_string_equal(rp.root, has_lib64() ? "lib lib64 proc usr" : "lib proc usr");
    assert_int_equal(rp.passwd_errno, ENOENT);
    assert_int_equal(rp.mkdir_errno, EROFS);
    close(rep[0]);
    close(devnull);
    close(passed);
    close(not_passed);
}

/* No namespaces, but another uid: ids, limits, no_new_privs and capabilities. */
static void test_plain_launch_as_other_user(void **state)
{
    (void)state;
    int rep[2];
    assert_int_equal(pipe2(rep, O_CLOEXEC), 0);
    const struct sandbox_fd fds[] = {{rep[1], REPORT_FD}};
    const struct sandbox_rlimit limits[] = {{RLIMIT_NOFILE, 32}};
    const struct sandbox_spec spec = {.program = "/proc/self/exe",
                                      .argv = child_argv,
                                      .fds = fds,
                                      .nr_fds = 1,
                                      .rlimits = limits,
                                      .nr_rlimits = 1,
                                      .uid = 65534,
                                      .gid = 65534};
    struct sandbox_child c;
    int r = sandbox_launch(&spec, &c);
    if (r != 0)
        fail_msg("launch failed: %s: %s", sandbox_step_name(c.step), strerror(c.err));
    close(rep[1]);
    struct report rp;
    read_report(rep[0], &rp);
    int status = wait_exit(c.pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(c.pidfd);
    close(rep[0]);
    assert_int_equal(rp.nfds, 1);
    assert_int_equal(rp.fds[0], REPORT_FD);
    assert_int_equal(rp.nofile, 32);
    assert_int_equal(rp.uid, 65534);
    assert_true(rp.pid != 1);
    assert_no_privileges(&rp);
    assert_int_equal(rp.passwd_errno, 0); /* no new root: the host's files */
}

/* A caller without CAP_SYS_ADMIN: the launcher makes a user namespace first. */
static void test_unprivileged_launch(void **state)
{
    (void)state;
    int rep[2];
    assert_int_equal(pipe2(rep, O_CLOEXEC), 0);
    pid_t helper = fork();
    assert_true(helper >= 0);
    if (helper == 0) {
        /* Giving up root makes a process undumpable, so its /proc files stay root's and
         * the child could not write its id maps; a user who never was root is dumpable. */
        if (setresgid(65534, 65534, 65534) != 0 || setresuid(65534, 65534, 65534) != 0 ||
            prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0)
            _exit(10);
        const struct sandbox_fd fds[] = {{rep[1], REPORT_FD}};
        const struct sandbox_spec spec = {
            .program = "/proc/self/exe",
            .argv = child_argv,
            .fds = fds,
            .nr_fds = 1,
            .namespaces = SANDBOX_NS_MOUNT | SANDBOX_NS_PID | SANDBOX_NS_IPC | SANDBOX_NS_NET |
                          SANDBOX_NS_UTS,
            .new_root = true,
            .binds = lib_binds,
            .nr_binds = has_lib64() ? 3 : 2,
            .uid = -1,
            .gid = -1,
        };
        struct sandbox_child c;
        if (sandbox_launch(&spec, &c) != 0) {
            fprintf(stderr, "unprivileged launch: %s: %s\n", sandbox_step_name(c.step),
                    strerror(c.err));
            _exit(11);
        }
        int status;
        if (waitpid(c.pid, &status, 0) != c.pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            _exit(12);
        _exit(0);
    }
    close(rep[1]);
    struct report rp;
    read_report(rep[0], &rp);
    close(rep[0]);
    int status = wait_exit(helper);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(rp.nfds, 1);
    assert_int_equal(rp.uid, 65534); /* its own id, mapped to itself */
    assert_int_equal(rp.pid, 1);
    assert_no_privileges(&rp);
    assert_int_equal(rp.passwd_errno, ENOENT);
    assert_int_equal(rp.mkdir_errno, EROFS);
}

static void expect_failure(const struct sandbox_spec *spec, int err, enum sandbox_step step)
{
    struct sandbox_child c;
    int r = sandbox_launch(spec, &c);
    assert_int_equal(r, -err);
    assert_int_equal(c.err, err);
    assert_int_equal(c.step, step);
    assert_int_equal(c.pid, -1);
    assert_true(strlen(sandbox_step_name(c.step)) > 0);
}

static void test_failures_before_exec(void **state)
{
    (void)state;
    struct sandbox_spec spec = {.program = "/proc/self/exe",
                                .argv = child_argv,
                                .namespaces = SANDBOX_NS_MOUNT,
                                .new_root = true,
                                .uid = -1,
                                .gid = -1};
    /* In the child: a bind source that does not exist. */
    const struct sandbox_bind missing[] = {{"/nonexistent/sandbox-test", "/x", 0}};
    spec.binds = missing;
    spec.nr_binds = 1;
    expect_failure(&spec, ENOENT, SANDBOX_STEP_BIND);
    /* In the child: a program that cannot be executed. */
    char path[] = "/tmp/test_sandbox.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "not a program\n", 14), 14);
    close(fd);
    spec.binds = NULL;
    spec.nr_binds = 0;
    spec.program = path;
    expect_failure(&spec, EACCES, SANDBOX_STEP_EXEC);
    unlink(path);
    /* In the caller: no such program, two descriptors on one target, a bad path. */
    spec.program = "/nonexistent/program";
    expect_failure(&spec, ENOENT, SANDBOX_STEP_OPEN);
    spec.program = "/proc/self/exe";
    const struct sandbox_fd twice[] = {{0, 5}, {1, 5}};
    spec.fds = twice;
    spec.nr_fds = 2;
    expect_failure(&spec, EINVAL, SANDBOX_STEP_SPEC);
    spec.nr_fds = 0;
    const struct sandbox_bind escape[] = {{"/usr", "/usr/../etc", 0}};
    spec.binds = escape;
    spec.nr_binds = 1;
    expect_failure(&spec, EINVAL, SANDBOX_STEP_SPEC);
}

/* ---- host CPUs and cgroup ---- */

/* The cgroup v2 mount (the unified one on a hybrid host), or false. */
static bool cgroup2_mount(char *out, size_t len)
{
    FILE *f = fopen("/proc/self/mounts", "re");
    char dev[64], dir[256], type[32];
    bool found = false;
    while (f != NULL && !found && fscanf(f, "%63s %255s %31s %*[^\n]", dev, dir, type) == 3)
        found = strcmp(type, "cgroup2") == 0;
    if (f != NULL)
        fclose(f);
    if (found)
        snprintf(out, len, "%s", dir);
    return found;
}

/* Launch into cgroup @p cg (or none, -1) pinned to @p one (@p cpu); with @p no_clone3 from
 * a helper whose seccomp filter makes clone3 fail with ENOSYS, as on a kernel before 5.3:
 * the child is made by clone() and joins its cgroup by itself. */
static void launch_pinned(const cpu_set_t *one, int cpu, int cg, const char *rel, bool no_clone3)
{
    int rep[2];
    assert_int_equal(pipe2(rep, O_CLOEXEC), 0);
    const struct sandbox_fd fds[] = {{rep[1], REPORT_FD}};
    const struct sandbox_spec spec = {
        .program = "/proc/self/exe",
        .argv = child_argv,
        .fds = fds,
        .nr_fds = 1,
        .namespaces = SANDBOX_NS_MOUNT | SANDBOX_NS_PID | SANDBOX_NS_NET,
        .new_root = true,
        .binds = lib_binds,
        .nr_binds = has_lib64() ? 3 : 2,
        .mount_proc = true,
        .uid = -1,
        .gid = -1,
        .cpus = one,
        .cpus_size = sizeof(*one),
        .in_cgroup = cg >= 0,
        .cgroup_fd = cg,
    };
    pid_t helper = no_clone3 ? fork() : 0;
    assert_true(helper >= 0);
    if (helper == 0) {
        if (no_clone3) {
            scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
            if (ctx == NULL || seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0) ||
                seccomp_load(ctx) != 0)
                _exit(10);
        }
        struct sandbox_child c;
        int r = sandbox_launch(&spec, &c);
        if (r != 0 && !no_clone3)
            fail_msg("launch failed: %s: %s", sandbox_step_name(c.step), strerror(c.err));
        if (r != 0) {
            fprintf(stderr, "launch without clone3: %s: %s\n", sandbox_step_name(c.step),
                    strerror(c.err));
            _exit(11);
        }
        int status = 0;
        while (waitpid(c.pid, &status, 0) < 0 && errno == EINTR) {
        }
        if (!no_clone3) {
            assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
            assert_true(c.pidfd >= 0);
            close(c.pidfd);
        } else {
            _exit(WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 12);
        }
    }
    close(rep[1]);
    struct report rp;
    read_report(rep[0], &rp);
    close(rep[0]);
    if (no_clone3) {
        int status = wait_exit(helper);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    assert_int_equal(rp.pid, 1);
    assert_int_equal(rp.cpus, 1ull << cpu);
    if (cg >= 0)
        assert_string_equal(rp.cgroup, rel);
}

/* The full sandbox (namespaces, new root) pinned to one CPU and, where this host lets us
 * make a cgroup v2 directory, born in it: the child sees both from inside. */
static void test_cpus_and_cgroup(void **state)
{
    (void)state;
    /* The last CPU we may use: not what the child would have by default (with 2+ CPUs). */
    cpu_set_t mine;
    assert_int_equal(sched_getaffinity(0, sizeof(mine), &mine), 0);
    int cpu = -1;
    for (int i = 0; i < 64; i++)
        if (CPU_ISSET(i, &mine))
            cpu = i;
    assert_true(cpu >= 0);
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);

    char mnt[256], dir[320], rel[64];
    snprintf(rel, sizeof(rel), "/bulkhead-test-sandbox-%d", (int)getpid());
    int cg = -1;
    if (cgroup2_mount(mnt, sizeof(mnt))) {
        snprintf(dir, sizeof(dir), "%s%s", mnt, rel);
        if (mkdir(dir, 0755) == 0)
            cg = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    }
    if (cg < 0)
        fprintf(stderr, "note: no writable cgroup v2 here; placement is not checked, only "
                        "the refusal of a wrong cgroup descriptor\n");

    for (int no_clone3 = 0; no_clone3 < (cg >= 0 ? 2 : 1); no_clone3++)
        launch_pinned(&one, cpu, cg, rel, no_clone3);
    if (cg >= 0) {
        close(cg);
        /* Reaped: the cgroup is empty again and goes. */
        assert_int_equal(rmdir(dir), 0);
    }
}

static void test_cpus_and_cgroup_refused(void **state)
{
    (void)state;
    struct sandbox_spec spec = {
        .program = "/proc/self/exe", .argv = child_argv, .uid = -1, .gid = -1};
    /* A descriptor that is not a cgroup v2 directory: refused before any process exists. */
    int notcg = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    assert_true(notcg >= 0);
    spec.in_cgroup = true;
    spec.cgroup_fd = notcg;
    expect_failure(&spec, EBADF, SANDBOX_STEP_CGROUP);
    close(notcg);
    spec.cgroup_fd = -1;
    expect_failure(&spec, EINVAL, SANDBOX_STEP_SPEC);
    char mnt[256];
    if (cgroup2_mount(mnt, sizeof(mnt))) {
        /* A file of the cgroup file system, not a cgroup. */
        char path[300];
        snprintf(path, sizeof(path), "%s/cgroup.procs", mnt);
        spec.cgroup_fd = open(path, O_RDONLY | O_CLOEXEC);
        assert_true(spec.cgroup_fd >= 0);
        expect_failure(&spec, ENOTDIR, SANDBOX_STEP_CGROUP);
        close(spec.cgroup_fd);
    }
    spec.in_cgroup = false;
    /* Only CPUs that do not exist: the child cannot be pinned, and says so. */
    cpu_set_t *none = CPU_ALLOC(4096);
    size_t size = CPU_ALLOC_SIZE(4096);
    CPU_ZERO_S(size, none);
    CPU_SET_S(4095, size, none);
    spec.cpus = none;
    spec.cpus_size = size;
    expect_failure(&spec, EINVAL, SANDBOX_STEP_AFFINITY);
    CPU_FREE(none);
}

/* ---- seccomp: what every profile forbids ---- */

enum attack { OPEN_FILE, PTRACE, SOCKET_INET, EXEC, FORK, MMAP_EXEC, NR_ATTACKS };
static const char *const attack_names[NR_ATTACKS] = {"open",   "ptrace", "socket(AF_INET)",
                                                     "execve", "fork",   "mmap(PROT_EXEC)"};

/* Status of a forked child that applies profile @p p and then tries @p a: it exits 0
 * only if the call came back, or 100 + errno when applying failed. */
static int attempt(enum sandbox_profile p, enum attack a, enum sandbox_seccomp_mode mode, int errfd)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (errfd >= 0)
            dup2(errfd, STDERR_FILENO);
        int r = sandbox_seccomp_apply(p, mode);
        if (r != 0)
            _exit(100 + (-r & 0x7f));
        switch (a) {
        case OPEN_FILE:
            (void)open("/etc/passwd", O_RDONLY);
            break;
        case PTRACE:
            (void)ptrace(PTRACE_TRACEME, 0, NULL, NULL);
            break;
        case SOCKET_INET:
            (void)socket(AF_INET, SOCK_STREAM, 0);
            break;
        case EXEC: {
            char *argv[] = {"true", NULL};
            (void)execve("/bin/true", argv, argv + 1);
            break;
        }
        case FORK: {
            pid_t c = fork();
            if (c == 0)
                _exit(0);
            break;
        }
        default:
            (void)mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            break;
        }
        _exit(0);
    }
    return wait_exit(pid);
}

static void test_profiles_forbid(void **state)
{
    (void)state;
    for (int p = SANDBOX_PROFILE_VMM; p < SANDBOX_NR_PROFILES; p++) {
        for (int a = 0; a < NR_ATTACKS; a++) {
            int status = attempt((enum sandbox_profile)p, (enum attack)a, SANDBOX_SECCOMP_KILL, -1);
            if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGSYS)
                fail_msg("profile %s: %s did not die by SIGSYS (status 0x%x)",
                         sandbox_profile_name((enum sandbox_profile)p), attack_names[a], status);
        }
    }
}

/* Trap mode names the refused call and exits 159 instead. */
static void test_trap_mode_names_the_call(void **state)
{
    (void)state;
    int err[2];
    assert_int_equal(pipe2(err, O_CLOEXEC), 0);
    int status = attempt(SANDBOX_PROFILE_RNG, SOCKET_INET, SANDBOX_SECCOMP_TRAP, err[1]);
    close(err[1]);
    char buf[512] = {0};
    ssize_t n = read(err[0], buf, sizeof(buf) - 1);
    close(err[0]);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 128 + SIGSYS);
    assert_true(n > 0);
    if (strstr(buf, "seccomp: system call socket (41) is not allowed") == NULL)
        fail_msg("unexpected report: %s", buf);

    enum sandbox_seccomp_mode m;
    assert_int_equal(sandbox_seccomp_parse(NULL, &m), 0);
    assert_int_equal(m, SANDBOX_SECCOMP_KILL);
    assert_int_equal(sandbox_seccomp_parse("trap", &m), 0);
    assert_int_equal(m, SANDBOX_SECCOMP_TRAP);
    assert_int_equal(sandbox_seccomp_parse("log", &m), -EINVAL);
    assert_int_equal(sandbox_seccomp_apply(SANDBOX_PROFILE_NONE, SANDBOX_SECCOMP_KILL), -EINVAL);
}

/* ---- seccomp: the backends' serving code under their own profiles ---- */

static struct fg_ram gr;
static struct vhost_frontend fe;

/* Fork the backend: set up by @p setup (before the filter, as the program does), then
 * the filter in trap mode, then backend_serve_connection() until the frontend leaves.
 * Exit status 0: served and ended cleanly; 159: a call missing from the profile. */
static pid_t start_backend(enum sandbox_profile p, const struct vhost_be_device *dev,
                           const struct backend_hooks *hooks, int *sock)
{
    int sv[2];
    fg_socketpair(sv);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(sv[0]);
        if (sandbox_seccomp_apply(p, SANDBOX_SECCOMP_TRAP) != 0)
            _exit(2);
        enum backend_end end = backend_serve_connection(sv[1], dev, hooks, -1);
        _exit(end == BACKEND_END_CLOSED ? 0 : 3);
    }
    close(sv[1]);
    *sock = sv[0];
    return pid;
}

static void expect_clean_exit(pid_t pid)
{
    int status = wait_exit(pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("the sandboxed backend ended with status 0x%x (159: a refused call, see above)",
                 status);
}

/* Take one used entry of @p d, waiting as a driver does. */
static void reap_one(struct fg_ring *d, uint16_t head, uint32_t *len)
{
    for (;;) {
        uint16_t id;
        int r = vq_driver_get_used(&d->vq, &id, len);
        assert_true(r >= 0);
        if (r == 1) {
            assert_int_equal(id, head);
            return;
        }
        if (vq_driver_used_notify_enable(&d->vq) == 1)
            continue;
        assert_true(fg_wait_fd(d->call, 5000));
    }
}

static void test_rng_serves_under_its_profile(void **state)
{
    (void)state;
    static struct rng_device rd;
    assert_int_equal(rng_device_init(&rd, RNG_DEFAULT_MAX_REQUEST), 0);
    const struct backend_hooks hooks = {.opaque = &rd};
    int sock;
    pid_t pid = start_backend(SANDBOX_PROFILE_RNG, &rd.dev, &hooks, &sock);

    fg_ram_up(&gr, "sandbox-rng-ram", 1u << 20);
    fg_frontend_up(&fe, sock);
    uint64_t want = F(VIRTIO_F_VERSION_1) | F(VIRTIO_F_EVENT_IDX);
    assert_int_equal(vhost_fe_set_features(&fe, vhost_fe_offer(&fe, want)), 0);
    fg_set_mem_table(&fe, &gr);
    static struct fg_ring rq;
    fg_ring_up(&rq, &fe, &gr, 0, 32, F(VIRTIO_F_EVENT_IDX), 0x1000, 0x400);
    for (unsigned round = 0; round < 3; round++) {
        memset(gr.ram + 0x10000, 0, 8192);
        struct vq_seg segs[2] = {{0x10000, 4096}, {0x11000, 4096}};
        uint16_t head;
        assert_int_equal(vq_driver_add(&rq.vq, segs, 0, 2, &head), 0);
        fg_kick(&rq);
        uint32_t len;
        reap_one(&rq, head, &len);
        assert_int_equal(len, 8192);
        bool nonzero = false;
        for (unsigned i = 0; i < 8192 && !nonzero; i++)
            nonzero = gr.ram[0x10000 + i] != 0;
        assert_true(nonzero);
    }
    vhost_fe_close(&fe);
    expect_clean_exit(pid);
    fg_ring_close(&rq);
    fg_ram_down(&gr);
}

/* bulkhead-blk's hooks, as its main.c sets them. */
static void blk_attach(void *opaque, struct vhost_be *be)
{
    blk_device_attach(opaque, be);
}

static void blk_detach(void *opaque, struct vhost_be *be)
{
    (void)be;
    blk_device_detach(opaque);
}

static unsigned blk_pollfds(void *opaque, struct vhost_be *be, struct pollfd *pfd, unsigned max)
{
    unsigned n = vhost_be_pollfds(be, pfd, max);
    return n + blk_device_pollfds(opaque, pfd + n, max - n);
}

static int blk_dispatch(void *opaque, struct vhost_be *be, const struct pollfd *pfd, unsigned n)
{
    (void)be;
    return blk_device_dispatch(opaque, pfd, n);
}

/* One virtio-blk request in slot @p slot (header at 0x1000 + 32 slot, data at 0x10000 +
 * 4 KiB slot); returns its status byte. */
static uint8_t blk_request(struct fg_ring *d, unsigned slot, uint32_t type, uint64_t sector,
                           uint32_t len)
{
    uint64_t hdr = 0x1000 + 32ull * slot;
    uint32_t t = htole32(type);
    uint64_t s = htole64(sector);
    memset(gr.ram + hdr, 0, 16);
    memcpy(gr.ram + hdr, &t, 4);
    memcpy(gr.ram + hdr + 8, &s, 8);
    gr.ram[hdr + 16] = 0xee;
    struct vq_seg segs[3];
    unsigned nr = 0, nw = 0;
    segs[nr++] = (struct vq_seg){hdr, 16};
    if (len > 0 && type == VIRTIO_BLK_T_OUT)
        segs[nr++] = (struct vq_seg){0x10000 + 0x1000ull * slot, len};
    if (len > 0 && type == VIRTIO_BLK_T_IN)
        segs[nr + nw++] = (struct vq_seg){0x10000 + 0x1000ull * slot, len};
    segs[nr + nw++] = (struct vq_seg){hdr + 16, 1};
    uint16_t head;
    assert_int_equal(vq_driver_add(&d->vq, segs, nr, nw, &head), 0);
    fg_kick(d);
    uint32_t used;
    reap_one(d, head, &used);
    return gr.ram[hdr + 16];
}

static void test_blk_serves_under_its_profile(void **state)
{
    (void)state;
    char path[] = "/tmp/test_sandbox_blk.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 1 << 20), 0);
    close(fd);
    struct blk_image *img;
    struct blk_image_opts io = {.path = path, .serial = "sandbox", .seg_max = 8};
    assert_int_equal(blk_image_open(&img, &io), 0);
    static struct blk_device bd;
    struct blk_device_opts dopts = {.nr_queues = 1, .queue_size = 8};
    assert_int_equal(blk_device_init(&bd, img, &dopts), 0);
    const struct backend_hooks hooks = {.opaque = &bd,
                                        .attach = blk_attach,
                                        .detach = blk_detach,
                                        .pollfds = blk_pollfds,
                                        .dispatch = blk_dispatch,
                                        .with_library = true,
                                        .max_pollfds = VHOST_BE_MAX_POLLFDS + VHOST_BE_MAX_QUEUES};
    int sock;
    pid_t pid = start_backend(SANDBOX_PROFILE_BLK, &bd.dev, &hooks, &sock);

    fg_ram_up(&gr, "sandbox-blk-ram", 2u << 20);
    fg_frontend_up(&fe, sock);
    uint64_t want = F(VIRTIO_F_VERSION_1) | F(VIRTIO_F_EVENT_IDX) | F(VIRTIO_BLK_F_FLUSH) |
                    F(VIRTIO_BLK_F_SEG_MAX) | F(VIRTIO_BLK_F_BLK_SIZE);
    assert_int_equal(vhost_fe_set_features(&fe, vhost_fe_offer(&fe, want)), 0);
    fg_set_mem_table(&fe, &gr);
    static struct fg_ring q;
    fg_ring_up(&q, &fe, &gr, 0, 32, F(VIRTIO_F_EVENT_IDX), 0x100000, 0x2000);
    for (unsigned i = 0; i < 4096; i++)
        gr.ram[0x10000 + i] = (uint8_t)(i * 7 + 3);
    assert_int_equal(blk_request(&q, 0, VIRTIO_BLK_T_OUT, 8, 4096), VIRTIO_BLK_S_OK);
    assert_int_equal(blk_request(&q, 1, VIRTIO_BLK_T_FLUSH, 0, 0), VIRTIO_BLK_S_OK);
    assert_int_equal(blk_request(&q, 2, VIRTIO_BLK_T_IN, 8, 4096), VIRTIO_BLK_S_OK);
    assert_memory_equal(gr.ram + 0x10000, gr.ram + 0x12000, 4096);
    vhost_fe_close(&fe);
    expect_clean_exit(pid);
    fg_ring_close(&q);
    fg_ram_down(&gr);
    blk_image_close(img);
    /* What the sandboxed backend wrote is in the file. */
    uint8_t buf[4096];
    fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, buf, sizeof(buf), 8 * 512), (ssize_t)sizeof(buf));
    close(fd);
    for (unsigned i = 0; i < 4096; i++)
        assert_int_equal(buf[i], (uint8_t)(i * 7 + 3));
    unlink(path);
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], CHILD_ARG) == 0)
        return child_report();
    log_set_level(LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_sandbox),
        cmocka_unit_test(test_plain_launch_as_other_user),
        cmocka_unit_test(test_unprivileged_launch),
        cmocka_unit_test(test_failures_before_exec),
        cmocka_unit_test(test_cpus_and_cgroup),
        cmocka_unit_test(test_cpus_and_cgroup_refused),
        cmocka_unit_test(test_profiles_forbid),
        cmocka_unit_test(test_trap_mode_names_the_call),
        cmocka_unit_test(test_rng_serves_under_its_profile),
        cmocka_unit_test(test_blk_serves_under_its_profile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
