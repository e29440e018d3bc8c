/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file sandbox.h
 * @brief The one launcher that starts a bulkhead component (the VMM, a backend, or an
 *        external backend such as qemu-storage-daemon) in its sandbox.
 *
 * sandbox_launch() creates the child with clone3() in the namespaces asked for (and, when
 * asked, directly in a cgroup: CLONE_INTO_CGROUP), and the child, before it executes the
 * program:
 *  1. when a cgroup was asked for and the kernel could not create the child in it (clone3
 *     without CLONE_INTO_CGROUP, before Linux 5.7, or no clone3 at all), moves itself
 *     there; then pins itself to the host CPUs asked for, so that every thread the program
 *     ever makes inherits both and none runs a single instruction elsewhere;
 *  2. when it is not privileged (no CAP_SYS_ADMIN), is in a new user namespace that
 *     maps its own uid and gid only, so that the other namespaces can be made;
 *  3. when a root is given, pivots into an empty tmpfs holding only the bind mounts
 *     asked for (read-only unless said otherwise, never set-uid, devices only where
 *     asked), with a fresh /proc that shows only its own PID namespace when asked;
 *     the tmpfs itself is then made read-only;
 *  4. sets the resource limits (RLIMIT_CORE is always 0);
 *  5. switches to the uid/gid asked for, drops every capability from the bounding,
 *     ambient, inheritable, permitted and effective sets (but those kept on purpose),
 *     and locks the securebits so that uid 0 gains nothing at exec;
 *  6. sets no_new_privs and the parent-death signal, starts a new session, resets
 *     signal dispositions and the signal mask;
 *  7. keeps exactly the listed descriptors at their target numbers (everything else is
 *     closed at exec) and executes the program from a descriptor opened beforehand.
 *
 * A failure in any step is sent to the parent through a close-on-exec pipe as (step,
 * errno); sandbox_launch() then reaps the child and returns the error, and
 * sandbox_step_name() names the step for the caller's one error line. The seccomp
 * allowlist is not the launcher's: the program applies its own once set up
 * (host/seccomp.h, `--sandbox`).
 *
 * **Cgroup.** When clone3() refuses CLONE_INTO_CGROUP for whatever reason (an older
 * kernel: E2BIG or EINVAL; a cgroup that takes no processes: EBUSY, EOPNOTSUPP), the
 * child is made without it and writes itself into the cgroup's cgroup.procs, through a
 * descriptor the parent opened, before anything else: an older kernel still gets the
 * program born in its cgroup as far as the program can tell, and a real refusal is
 * reported as SANDBOX_STEP_CGROUP with the kernel's errno, not as a failed clone.
 *
 * **PID namespace.** With SANDBOX_NS_PID the program itself is PID 1 of the new
 * namespace: there is no separate init. Our programs start no processes (their seccomp
 * lists forbid fork and exec) so nothing needs reaping, and they take SIGTERM through
 * a signalfd with the signal blocked, which the kernel delivers to a namespace's init
 * (only unhandled, unblocked signals are dropped for it). When it exits the kernel
 * kills whatever else is left in the namespace, and the parent reaps it as usual.
 *
 * The parent-death signal is sent when the *thread* that called sandbox_launch() ends:
 * call it from a thread that lives as long as the supervisor.
 */
#ifndef BULKHEAD_HOST_SANDBOX_H
#define BULKHEAD_HOST_SANDBOX_H

#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/** New mount namespace: required for a new root. */
#define SANDBOX_NS_MOUNT 0x1u
/** New PID namespace: the program is its PID 1 (see the file comment). */
#define SANDBOX_NS_PID 0x2u
/** New IPC namespace: no System V IPC or POSIX queues shared with the host. */
#define SANDBOX_NS_IPC 0x4u
/** New network namespace: only a loopback that is down; unix sockets still work. */
#define SANDBOX_NS_NET 0x8u
/** New UTS namespace: a host name of its own. */
#define SANDBOX_NS_UTS 0x10u

/** One descriptor to pass: @c fd in the caller becomes @c target in the program. */
struct sandbox_fd {
    int fd;     /**< The caller's descriptor; it is not closed in the caller. */
    int target; /**< Its number in the program, without close-on-exec. */
};

/** A bind mount of a host file or directory is read-only unless this is set. */
#define SANDBOX_BIND_RW 0x1u
/** A bind mount keeps device nodes usable (/dev/kvm, /dev/net/tun); nodev otherwise. */
#define SANDBOX_BIND_DEV 0x2u

/** One bind mount into the new root. */
struct sandbox_bind {
    const char *src; /**< The host path, resolved in the caller's mount namespace. */
    const char *dst; /**< The absolute path inside the new root; parents are created. */
    unsigned flags;  /**< SANDBOX_BIND_* flags. */
};

/** One resource limit: soft and hard limit alike. */
struct sandbox_rlimit {
    int resource;   /**< RLIMIT_NOFILE, RLIMIT_NPROC, RLIMIT_MEMLOCK, RLIMIT_AS, ... */
    uint64_t value; /**< The limit; RLIM_INFINITY for none. */
};

/** What to start and how. Every pointer member may be NULL when its count is 0. */
struct sandbox_spec {
    /** The program, opened by the caller before the child exists (so it need not be
     * in the new root). A dynamically linked program needs its loader and libraries
     * bound at their usual paths. */
    const char *program;
    char *const *argv; /**< argv of the program, NULL-terminated. */
    char *const *envp; /**< The whole environment, NULL-terminated; NULL: empty. */

    const struct sandbox_fd *fds; /**< Descriptors to pass; all others are closed. */
    unsigned nr_fds;              /**< Entries of @c fds. */

    unsigned namespaces; /**< SANDBOX_NS_* flags. */

    /** Pivot into an empty tmpfs with only @c binds in it (needs SANDBOX_NS_MOUNT). */
    bool new_root;
    const struct sandbox_bind *binds; /**< Bind mounts into the new root. */
    unsigned nr_binds;                /**< Entries of @c binds. */
    /** Mount a proc file system at /proc in the new root (needs SANDBOX_NS_PID): some
     * programs reopen their own descriptors through /proc/self/fd. */
    bool mount_proc;
    /** Where the tmpfs is mounted before the pivot; NULL: "/tmp". Anything there is
     * only hidden, in the child's mount namespace; bind sources are taken before. */
    const char *scratch;

    const struct sandbox_rlimit *rlimits; /**< Limits to set besides RLIMIT_CORE = 0. */
    unsigned nr_rlimits;                  /**< Entries of @c rlimits. */

    /** Run as this uid and gid (supplementary groups dropped); -1: keep the caller's. */
    int uid;
    int gid; /**< See @c uid. */
    /** Capabilities (bit N = capability N) the program keeps through exec as ambient
     * capabilities, e.g. CAP_NET_ADMIN for a tap; 0 for none, the normal case. */
    uint64_t keep_caps;
    /** Signal the program gets when the launching thread dies; 0: SIGKILL. */
    int pdeathsig;

    /** Host CPUs the program and all its threads may run on; NULL: the caller's. A set
     * with no usable CPU in it fails the launch (SANDBOX_STEP_AFFINITY). */
    const cpu_set_t *cpus;
    size_t cpus_size; /**< Bytes at @c cpus (CPU_ALLOC_SIZE() of its CPU count). */
    /** Start the program in the cgroup v2 directory @c cgroup_fd (its budget and its CPU
     * accounting then cover it from its first instruction). */
    bool in_cgroup;
    /** With @c in_cgroup: the directory, opened O_PATH or O_RDONLY by the caller. The
     * cgroup must be one a process may join: no controllers enabled for children. */
    int cgroup_fd;
};

/** The step of the child's set-up that failed. */
enum sandbox_step {
    SANDBOX_STEP_NONE,     /**< Nothing failed. */
    SANDBOX_STEP_SPEC,     /**< The spec is inconsistent (caller side). */
    SANDBOX_STEP_OPEN,     /**< Opening the program (caller side). */
    SANDBOX_STEP_PIPE,     /**< Creating the error pipe (caller side). */
    SANDBOX_STEP_CLONE,    /**< clone3() (caller side). */
    SANDBOX_STEP_CGROUP,   /**< Checking the cgroup, or joining it from the child. */
    SANDBOX_STEP_AFFINITY, /**< sched_setaffinity(). */
    SANDBOX_STEP_USERNS,   /**< Writing the user namespace's uid/gid maps. */
    SANDBOX_STEP_BIND,     /**< Taking a bind source (open_tree, mount_setattr). */
    SANDBOX_STEP_TMPFS,    /**< Making the tmpfs of the new root. */
    SANDBOX_STEP_MOUNTDIR, /**< Creating a mount point in the new root. */
    SANDBOX_STEP_PROC,     /**< Mounting /proc. */
    SANDBOX_STEP_PIVOT,    /**< pivot_root() and detaching the old root. */
    SANDBOX_STEP_RLIMIT,   /**< setrlimit(). */
    SANDBOX_STEP_IDS,      /**< setgroups(), setresgid(), setresuid(). */
    SANDBOX_STEP_CAPS,     /**< Securebits, bounding set, capset(), ambient set. */
    SANDBOX_STEP_PRCTL,    /**< no_new_privs, parent-death signal. */
    SANDBOX_STEP_FDS,      /**< Moving the descriptors to their targets. */
    SANDBOX_STEP_EXEC,     /**< execveat() of the program. */
};

/** The started program, or why it could not be started. */
struct sandbox_child {
    pid_t pid;              /**< Its pid in the caller's PID namespace; -1 on failure. */
    int pidfd;              /**< A pidfd for it (close-on-exec), or -1. */
    enum sandbox_step step; /**< On failure: the step that failed. */
    int err;                /**< On failure: the errno of that step. */
};

/**
 * Start the program in its sandbox. Returns once it executes or has failed to: the
 * caller learns about a failure of the child's set-up at once, not from its exit.
 * @param spec what to start.
 * @param child receives the pid and pidfd, or the failing step and errno.
 * @return 0 when the program runs; the negative errno of the failing step otherwise
 *         (the child, if one was made, is reaped).
 */
int sandbox_launch(const struct sandbox_spec *spec, struct sandbox_child *child);

/**
 * The failing step as words for an error line, e.g. "pivot_root into the new root".
 * @param step the step.
 * @return a static string.
 */
const char *sandbox_step_name(enum sandbox_step step);

#endif
