/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The launcher. The child made by clone3() is a copy of one thread of a process that
 * may have others (a supervisor's), so it must not take a lock another thread might
 * hold: from clone3() to execveat() it makes system calls only, through their glibc
 * wrappers, and no allocation or stdio. Everything it needs formatted (uid maps, the
 * /proc path) is prepared by the parent beforehand.
 */
#include "host/sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/magic.h>
#include <linux/sched.h>
#include <linux/securebits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* Most descriptors and bind mounts one launch takes: the child keeps its working state
 * on its stack, in arrays of these sizes. */
#define MAX_FDS   64u
#define MAX_BINDS 64u

/** What the child reports through the pipe before it dies. */
struct failure {
    int step; /**< enum sandbox_step that failed. */
    int err;  /**< Its errno. */
};

/** The parent's preparation for the child: all formatting and checks are done here. */
struct prep {
    const struct sandbox_spec *spec; /**< What to start. */
    bool userns;                     /**< Make a user namespace first. */
    int exec_fd;                     /**< The program, O_PATH. */
    int err_fd;                      /**< Write end of the error pipe. */
    int high;                        /**< Every descriptor of ours goes at or above this. */
    char uid_map[64];                /**< "U U 1\n" */
    char gid_map[64];                /**< "G G 1\n" */
    char proc_path[256];             /**< SCRATCH/proc */
    const char *scratch;             /**< Where the new root's tmpfs is mounted first. */
    int procs_fd;                    /**< The cgroup's cgroup.procs, for writing, or -1. */
    bool join_cgroup;                /**< The child was made outside its cgroup: join it. */
};

const char *sandbox_step_name(enum sandbox_step step)
{
    switch (step) {
    case SANDBOX_STEP_NONE:
        return "no step";
    case SANDBOX_STEP_SPEC:
        return "checking the launch description";
    case SANDBOX_STEP_OPEN:
        return "opening the program";
    case SANDBOX_STEP_PIPE:
        return "creating the error pipe";
    case SANDBOX_STEP_CLONE:
        return "creating the process (clone3)";
    case SANDBOX_STEP_CGROUP:
        return "placing the process in its cgroup";
    case SANDBOX_STEP_AFFINITY:
        return "setting the host CPUs it may run on";
    case SANDBOX_STEP_USERNS:
        return "writing the user namespace's id maps";
    case SANDBOX_STEP_BIND:
        return "taking a bind mount's source";
    case SANDBOX_STEP_TMPFS:
        return "mounting the new root's tmpfs";
    case SANDBOX_STEP_MOUNTDIR:
        return "placing a bind mount in the new root";
    case SANDBOX_STEP_PROC:
        return "mounting /proc";
    case SANDBOX_STEP_PIVOT:
        return "pivot_root into the new root";
    case SANDBOX_STEP_RLIMIT:
        return "setting a resource limit";
    case SANDBOX_STEP_IDS:
        return "switching uid and gid";
    case SANDBOX_STEP_CAPS:
        return "dropping capabilities";
    case SANDBOX_STEP_PRCTL:
        return "setting no_new_privs and the parent-death signal";
    case SANDBOX_STEP_FDS:
        return "passing the descriptors";
    case SANDBOX_STEP_EXEC:
        return "executing the program";
    }
    return "unknown step";
}

/* --- the child: system calls only -------------------------------------------------- */

static _Noreturn void fail(const struct prep *p, enum sandbox_step step, int err)
{
    struct failure f = {.step = (int)step, .err = err != 0 ? err : EIO};
    (void)!write(p->err_fd, &f, sizeof(f));
    _exit(127);
}

/* Whether capability @p cap is in our effective set (in our user namespace). */
static bool has_cap(unsigned cap)
{
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
    struct __user_cap_data_struct data[2];
    if (syscall(SYS_capget, &hdr, data) != 0)
        return false;
    return (data[CAP_TO_INDEX(cap)].effective & CAP_TO_MASK(cap)) != 0;
}

static int write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t len = (ssize_t)strlen(text);
    int r = write(fd, text, (size_t)len) == len ? 0 : -errno;
    close(fd);
    return r;
}

/* Our own uid and gid only: all an unprivileged process may map, and all it needs. */
static void map_ids(const struct prep *p)
{
    int r = write_file("/proc/self/setgroups", "deny");
    if (r == 0)
        r = write_file("/proc/self/uid_map", p->uid_map);
    if (r == 0)
        r = write_file("/proc/self/gid_map", p->gid_map);
    if (r != 0)
        fail(p, SANDBOX_STEP_USERNS, -r);
}

/* Create the parents of @p rel (relative to @p dirfd), then the mount point itself: a
 * directory for a directory, an empty file for anything else. */
static int make_mount_point(int dirfd, const char *rel, bool dir)
{
    char path[PATH_MAX];
    size_t len = strlen(rel);
    if (len == 0 || len >= sizeof(path))
        return -ENAMETOOLONG;
    memcpy(path, rel, len + 1);
    for (size_t i = 1; i < len; i++) {
        if (path[i] != '/')
            continue;
        path[i] = '\0';
        if (mkdirat(dirfd, path, 0755) != 0 && errno != EEXIST)
            return -errno;
        path[i] = '/';
    }
    if (dir)
        return mkdirat(dirfd, path, 0755) == 0 || errno == EEXIST ? 0 : -errno;
    /* Read-only: a file that is already there (under an earlier, read-only bind of its
     * directory) only needs to exist, and opening it for writing would fail with EROFS. */
    int fd = openat(dirfd, path, O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
        return -errno;
    close(fd);
    return 0;
}

/* pivot_root(".", "."): the old root ends up stacked on the new one and is detached;
 * a root that cannot be pivoted (the initramfs rootfs) is left by moving the new root
 * over it and chroot()ing, as switch_root does. */
static int enter_root(int rootfd)
{
    if (fchdir(rootfd) != 0)
        return -errno;
    if (syscall(SYS_pivot_root, ".", ".") == 0) {
        if (umount2(".", MNT_DETACH) != 0)
            return -errno;
    } else if (errno == EINVAL) {
        if (mount(".", "/", NULL, MS_MOVE, NULL) != 0 || chroot(".") != 0)
            return -errno;
    } else {
        return -errno;
    }
    return chdir("/") == 0 ? 0 : -errno;
}

static void build_root(const struct prep *p)
{
    const struct sandbox_spec *s = p->spec;
    /* Nothing we mount may propagate back to the host's namespace. */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
        fail(p, SANDBOX_STEP_TMPFS, errno);
    /* Detached copies of every source first, so the tmpfs cannot hide one. */
    int bfd[MAX_BINDS];
    bool bdir[MAX_BINDS];
    for (unsigned i = 0; i < s->nr_binds; i++) {
        const struct sandbox_bind *b = &s->binds[i];
        bfd[i] = open_tree(AT_FDCWD, b->src, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
        if (bfd[i] < 0)
            fail(p, SANDBOX_STEP_BIND, errno);
        struct mount_attr attr = {.attr_set = MOUNT_ATTR_NOSUID};
        if (!(b->flags & SANDBOX_BIND_RW))
            attr.attr_set |= MOUNT_ATTR_RDONLY;
        if (!(b->flags & SANDBOX_BIND_DEV))
            attr.attr_set |= MOUNT_ATTR_NODEV;
        struct stat st;
        if (mount_setattr(bfd[i], "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof(attr)) != 0 ||
            fstat(bfd[i], &st) != 0)
            fail(p, SANDBOX_STEP_BIND, errno);
        bdir[i] = S_ISDIR(st.st_mode);
    }
    if (mount("tmpfs", p->scratch, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
              "size=1m,nr_inodes=4096,mode=0755") != 0)
        fail(p, SANDBOX_STEP_TMPFS, errno);
    int rootfd = open(p->scratch, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        fail(p, SANDBOX_STEP_TMPFS, errno);
    for (unsigned i = 0; i < s->nr_binds; i++) {
        const char *rel = s->binds[i].dst + 1; /* checked absolute by the parent */
        int r = make_mount_point(rootfd, rel, bdir[i]);
        if (r != 0)
            fail(p, SANDBOX_STEP_MOUNTDIR, -r);
        if (move_mount(bfd[i], "", rootfd, rel, MOVE_MOUNT_F_EMPTY_PATH) != 0)
            fail(p, SANDBOX_STEP_MOUNTDIR, errno);
        close(bfd[i]);
    }
    if (s->mount_proc) {
        if (mkdirat(rootfd, "proc", 0555) != 0)
            fail(p, SANDBOX_STEP_PROC, errno);
        /* subset=pid (Linux 5.8): only the processes, none of the host's /proc files. */
        const unsigned long fl = MS_NOSUID | MS_NODEV | MS_NOEXEC;
        if (mount("proc", p->proc_path, "proc", fl, "subset=pid") != 0 &&
            (errno != EINVAL || mount("proc", p->proc_path, "proc", fl, NULL) != 0))
            fail(p, SANDBOX_STEP_PROC, errno);
    }
    struct mount_attr ro = {.attr_set = MOUNT_ATTR_RDONLY};
    if (mount_setattr(rootfd, "", AT_EMPTY_PATH, &ro, sizeof(ro)) != 0)
        fail(p, SANDBOX_STEP_TMPFS, errno);
    int r = enter_root(rootfd);
    if (r != 0)
        fail(p, SANDBOX_STEP_PIVOT, -r);
    close(rootfd);
}

static void set_limits(const struct prep *p)
{
    const struct sandbox_spec *s = p->spec;
    struct rlimit zero = {0, 0};
    if (setrlimit(RLIMIT_CORE, &zero) != 0)
        fail(p, SANDBOX_STEP_RLIMIT, errno);
    for (unsigned i = 0; i < s->nr_rlimits; i++) {
        struct rlimit rl = {(rlim_t)s->rlimits[i].value, (rlim_t)s->rlimits[i].value};
        if (setrlimit((__rlimit_resource_t)s->rlimits[i].resource, &rl) != 0)
            fail(p, SANDBOX_STEP_RLIMIT, errno);
    }
}

/*
 * The order matters: the securebits keep the capabilities through the uid switch
 * (NO_SETUID_FIXUP) and make uid 0 gain none at exec (NOROOT), all locked; the bounding
 * set is emptied while we still hold CAP_SETPCAP; capset() then empties the rest.
 */
static void drop_privileges(const struct prep *p)
{
    const struct sandbox_spec *s = p->spec;
    unsigned long bits = SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP |
                         SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED;
    if (s->keep_caps == 0)
        bits |= SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
    /* Without CAP_SETPCAP (unprivileged, no namespaces) there is nothing to lock or drop
     * but the empty sets themselves; no_new_privs keeps exec from adding any. */
    bool setpcap = has_cap(CAP_SETPCAP);
    if (setpcap && prctl(PR_SET_SECUREBITS, bits, 0, 0, 0) != 0)
        fail(p, SANDBOX_STEP_CAPS, errno);
    if (s->gid >= 0) {
        if ((!p->userns && setgroups(0, NULL) != 0) ||
            setresgid((gid_t)s->gid, (gid_t)s->gid, (gid_t)s->gid) != 0)
            fail(p, SANDBOX_STEP_IDS, errno);
    }
    if (s->uid >= 0 && setresuid((uid_t)s->uid, (uid_t)s->uid, (uid_t)s->uid) != 0)
        fail(p, SANDBOX_STEP_IDS, errno);
    for (unsigned long cap = 0; setpcap && cap < 64; cap++) {
        if (s->keep_caps & (1ull << cap))
            continue;
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) {
            if (errno == EINVAL)
                break; /* past the kernel's last capability */
            fail(p, SANDBOX_STEP_CAPS, errno);
        }
    }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL)
        fail(p, SANDBOX_STEP_CAPS, errno);
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof(data));
    for (unsigned i = 0; i < 2; i++) {
        uint32_t keep = (uint32_t)(s->keep_caps >> (32 * i));
        data[i].effective = data[i].permitted = data[i].inheritable = keep;
    }
    if (syscall(SYS_capset, &hdr, data) != 0)
        fail(p, SANDBOX_STEP_CAPS, errno);
    for (unsigned long cap = 0; cap < 64; cap++) {
        if ((s->keep_caps & (1ull << cap)) &&
            prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) != 0)
            fail(p, SANDBOX_STEP_CAPS, errno);
    }
}

/* Each passed descriptor is first copied above every number in play, so that moving
 * one to its target cannot overwrite another that is still to be moved. */
static void pass_fds(const struct prep *p)
{
    const struct sandbox_spec *s = p->spec;
    int tmp[MAX_FDS];
    for (unsigned i = 0; i < s->nr_fds; i++) {
        tmp[i] = fcntl(s->fds[i].fd, F_DUPFD_CLOEXEC, p->high);
        if (tmp[i] < 0)
            fail(p, SANDBOX_STEP_FDS, errno);
    }
    /* Everything is closed at exec but what dup2() below makes (without CLOEXEC). */
    if (close_range(0, ~0u, CLOSE_RANGE_CLOEXEC) != 0)
        fail(p, SANDBOX_STEP_FDS, errno);
    for (unsigned i = 0; i < s->nr_fds; i++) {
        if (dup2(tmp[i], s->fds[i].target) < 0)
            fail(p, SANDBOX_STEP_FDS, errno);
        close(tmp[i]);
    }
}

static _Noreturn void child_main(struct prep *p)
{
    const struct sandbox_spec *s = p->spec;
    /* Our own descriptors above the targets, where no dup2() will land. */
    int e = fcntl(p->err_fd, F_DUPFD_CLOEXEC, p->high);
    if (e < 0)
        _exit(127);
    p->err_fd = e;
    int x = fcntl(p->exec_fd, F_DUPFD_CLOEXEC, p->high);
    if (x < 0)
        fail(p, SANDBOX_STEP_FDS, errno);
    p->exec_fd = x;

    /* "0" is the writer itself. First thing: with its capabilities dropped the child
     * might no longer be allowed to move itself, and nothing of the program may run
     * outside its budget. */
    if (p->join_cgroup && write(p->procs_fd, "0", 1) != 1)
        fail(p, SANDBOX_STEP_CGROUP, errno);
    if (s->cpus != NULL && sched_setaffinity(0, s->cpus_size, s->cpus) != 0)
        fail(p, SANDBOX_STEP_AFFINITY, errno);

    /* A parent that died before this prctl() is seen as a reader-less pipe. */
    if (prctl(PR_SET_PDEATHSIG, s->pdeathsig != 0 ? s->pdeathsig : SIGKILL, 0, 0, 0) != 0)
        fail(p, SANDBOX_STEP_PRCTL, errno);
    struct pollfd pfd = {.fd = p->err_fd, .events = 0};
    if (poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLERR))
        _exit(127);

    if (p->userns)
        map_ids(p);
    if (s->new_root)
        build_root(p);
    set_limits(p);
    drop_privileges(p);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        fail(p, SANDBOX_STEP_PRCTL, errno);
    /* Not in the supervisor's session: its terminal's Ctrl-C is not ours. */
    (void)setsid();
    /* Ignored signals and the mask survive exec; the program starts from defaults. */
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    for (int sig = 1; sig < NSIG; sig++)
        (void)sigaction(sig, &dfl, NULL);
    sigset_t none;
    sigemptyset(&none);
    (void)sigprocmask(SIG_SETMASK, &none, NULL);
    pass_fds(p);

    static char *const empty_env[] = {NULL};
    execveat(p->exec_fd, "", s->argv, s->envp != NULL ? s->envp : empty_env, AT_EMPTY_PATH);
    fail(p, SANDBOX_STEP_EXEC, errno);
}

/* --- the parent -------------------------------------------------------------------- */

/* An absolute path of plain components: no "", "." or ".." to escape the new root. */
static bool clean_path(const char *path)
{
    if (path == NULL || path[0] != '/' || path[1] == '\0' || strlen(path) >= PATH_MAX)
        return false;
    for (const char *c = path + 1; *c != '\0';) {
        const char *end = strchrnul(c, '/');
        size_t n = (size_t)(end - c);
        if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
            return false;
        c = *end == '/' ? end + 1 : end;
        if (*end == '/' && *c == '\0')
            return false; /* a trailing slash */
    }
    return true;
}

static int check_spec(const struct sandbox_spec *s)
{
    if (s->program == NULL || s->argv == NULL || s->argv[0] == NULL || s->nr_fds > MAX_FDS ||
        s->nr_binds > MAX_BINDS || (s->nr_fds > 0 && s->fds == NULL) ||
        (s->nr_binds > 0 && s->binds == NULL) || (s->nr_rlimits > 0 && s->rlimits == NULL))
        return -EINVAL;
    if (s->new_root && !(s->namespaces & SANDBOX_NS_MOUNT))
        return -EINVAL;
    if (s->nr_binds > 0 && !s->new_root)
        return -EINVAL;
    if (s->mount_proc && (!s->new_root || !(s->namespaces & SANDBOX_NS_PID)))
        return -EINVAL;
    if ((s->cpus != NULL && s->cpus_size == 0) || (s->in_cgroup && s->cgroup_fd < 0))
        return -EINVAL;
    for (unsigned i = 0; i < s->nr_fds; i++) {
        if (s->fds[i].fd < 0 || s->fds[i].target < 0)
            return -EBADF;
        for (unsigned k = 0; k < i; k++) {
            if (s->fds[k].target == s->fds[i].target)
                return -EINVAL;
        }
    }
    for (unsigned i = 0; i < s->nr_binds; i++) {
        if (s->binds[i].src == NULL || !clean_path(s->binds[i].dst))
            return -EINVAL;
    }
    return 0;
}

static unsigned long clone_flags(unsigned ns)
{
    unsigned long f = 0;
    if (ns & SANDBOX_NS_MOUNT)
        f |= CLONE_NEWNS;
    if (ns & SANDBOX_NS_PID)
        f |= CLONE_NEWPID;
    if (ns & SANDBOX_NS_IPC)
        f |= CLONE_NEWIPC;
    if (ns & SANDBOX_NS_NET)
        f |= CLONE_NEWNET;
    if (ns & SANDBOX_NS_UTS)
        f |= CLONE_NEWUTS;
    return f;
}

/* fork()-like clone3 (no new stack): returns in both processes, 0 in the child. Born in
 * the cgroup when one is asked for; else (file comment) p->join_cgroup tells the child
 * to move itself there. */
static pid_t clone_child(struct prep *p, unsigned long flags, int *pidfd)
{
    const struct sandbox_spec *s = p->spec;
    struct clone_args args = {
        .flags = flags | CLONE_PIDFD, .pidfd = (uint64_t)(uintptr_t)pidfd, .exit_signal = SIGCHLD};
    long r;
    if (s->in_cgroup) {
        struct clone_args into = args;
        into.flags |= CLONE_INTO_CGROUP;
        into.cgroup = (uint64_t)s->cgroup_fd;
        r = syscall(SYS_clone3, &into, sizeof(into));
        if (r >= 0)
            return (pid_t)r;
        /* Set before the next clone, so the child has it in its copy. */
        p->join_cgroup = true;
        if (errno != ENOSYS)
            r = syscall(SYS_clone3, &args, sizeof(args));
    } else {
        r = syscall(SYS_clone3, &args, sizeof(args));
    }
    if (r < 0 && errno == ENOSYS) /* before Linux 5.3, or a filter that refuses it */
        r = syscall(SYS_clone, flags | CLONE_PIDFD | SIGCHLD, 0, pidfd, NULL, 0);
    return (pid_t)r;
}

/* The cgroup must be a directory of a cgroup v2 file system: a wrong descriptor is told
 * apart here rather than as a failed clone3(). cgroup.procs is opened now, for a child
 * that has to join by itself: a cgroup we may not write to fails before any process
 * exists, and since Linux 5.16 the kernel checks the opener's credentials at the write,
 * which are the caller's whatever the child has become. */
static int open_cgroup(const struct sandbox_spec *s, struct prep *p)
{
    struct statfs sfs;
    struct stat st;
    if (fstatfs(s->cgroup_fd, &sfs) != 0 || fstat(s->cgroup_fd, &st) != 0)
        return -errno;
    if (sfs.f_type != CGROUP2_SUPER_MAGIC)
        return -EBADF;
    if (!S_ISDIR(st.st_mode))
        return -ENOTDIR;
    p->procs_fd = openat(s->cgroup_fd, "cgroup.procs", O_WRONLY | O_CLOEXEC);
    return p->procs_fd >= 0 ? 0 : -errno;
}

static int prepare(const struct sandbox_spec *s, struct prep *p)
{
    memset(p, 0, sizeof(*p));
    p->spec = s;
    p->procs_fd = -1;
    p->scratch = s->scratch != NULL ? s->scratch : "/tmp";
    /* CAP_SYS_ADMIN in our user namespace: namespaces can be made without a new one. */
    p->userns = s->namespaces != 0 && !has_cap(CAP_SYS_ADMIN);
    int high = 3;
    for (unsigned i = 0; i < s->nr_fds; i++) {
        if (s->fds[i].fd >= high)
            high = s->fds[i].fd + 1;
        if (s->fds[i].target >= high)
            high = s->fds[i].target + 1;
    }
    p->high = high;
    if (p->userns) {
        /* Only our own ids can be mapped, so only they can be asked for. */
        if ((s->uid >= 0 && (uid_t)s->uid != getuid()) ||
            (s->gid >= 0 && (gid_t)s->gid != getgid()))
            return -EPERM;
        snprintf(p->uid_map, sizeof(p->uid_map), "%u %u 1\n", getuid(), getuid());
        snprintf(p->gid_map, sizeof(p->gid_map), "%u %u 1\n", getgid(), getgid());
    }
    if ((size_t)snprintf(p->proc_path, sizeof(p->proc_path), "%s/proc", p->scratch) >=
        sizeof(p->proc_path))
        return -ENAMETOOLONG;
    return 0;
}

int sandbox_launch(const struct sandbox_spec *spec, struct sandbox_child *child)
{
    *child = (struct sandbox_child){.pid = -1, .pidfd = -1};
    struct prep p;
    int r = check_spec(spec);
    if (r == 0)
        r = prepare(spec, &p);
    if (r != 0) {
        child->step = SANDBOX_STEP_SPEC;
        child->err = -r;
        return r;
    }
    if (spec->in_cgroup && (r = open_cgroup(spec, &p)) != 0) {
        child->step = SANDBOX_STEP_CGROUP;
        child->err = -r;
        return r;
    }
    p.exec_fd = open(spec->program, O_PATH | O_CLOEXEC);
    if (p.exec_fd < 0) {
        child->step = SANDBOX_STEP_OPEN;
        child->err = errno;
        if (p.procs_fd >= 0)
            close(p.procs_fd);
        return -child->err;
    }
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0) {
        child->step = SANDBOX_STEP_PIPE;
        child->err = errno;
        close(p.exec_fd);
        if (p.procs_fd >= 0)
            close(p.procs_fd);
        return -child->err;
    }
    p.err_fd = pipefd[1];
    unsigned long flags = clone_flags(spec->namespaces) | (p.userns ? CLONE_NEWUSER : 0);
    int pidfd = -1;
    pid_t pid = clone_child(&p, flags, &pidfd);
    if (pid == 0)
        child_main(&p);
    int clone_err = errno;
    close(pipefd[1]);
    close(p.exec_fd);
    if (p.procs_fd >= 0)
        close(p.procs_fd);
    if (pid < 0) {
        close(pipefd[0]);
        child->step = SANDBOX_STEP_CLONE;
        child->err = clone_err;
        return -clone_err;
    }
    /* EOF: the pipe was closed by a successful exec. Anything else is a failure. */
    struct failure f;
    ssize_t n;
    do {
        n = read(pipefd[0], &f, sizeof(f));
    } while (n < 0 && errno == EINTR);
    close(pipefd[0]);
    if (n == 0) {
        child->pid = pid;
        child->pidfd = pidfd;
        return 0;
    }
    if (n != (ssize_t)sizeof(f))
        f = (struct failure){.step = SANDBOX_STEP_EXEC, .err = EIO};
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
    }
    if (pidfd >= 0)
        close(pidfd);
    child->step = (enum sandbox_step)f.step;
    child->err = f.err;
    return -f.err;
}
