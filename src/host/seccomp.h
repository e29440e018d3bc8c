/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file seccomp.h
 * @brief The system-call allowlist each bulkhead program applies to itself once its
 *        set-up is done (`--sandbox`), one profile per program.
 *
 * A filter cannot be installed by the launcher before execve(): the program's own
 * set-up (opening its image, listening, creating its VM) needs calls that its serving
 * loop never makes again. So each program sets itself up, then calls
 * sandbox_seccomp_apply() with its profile; from then on every call outside the list
 * ends the process. docs/security.md lists each profile and why each call is in it.
 *
 * The filter covers every thread of the process (it is synchronised to the threads
 * that already run, and inherited by those started later) and sets no_new_privs.
 */
#ifndef BULKHEAD_HOST_SECCOMP_H
#define BULKHEAD_HOST_SECCOMP_H

#include <stdbool.h>

/** Which program's allowlist: each lists what that program's serving loop calls. */
enum sandbox_profile {
    SANDBOX_PROFILE_NONE,    /**< No profile: a program description that leaves it unset. */
    SANDBOX_PROFILE_VMM,     /**< bulkhead-vmm once the VM is built (reboots included). */
    SANDBOX_PROFILE_BLK,     /**< bulkhead-blk: vhost-user, io_uring on the open image. */
    SANDBOX_PROFILE_NET,     /**< bulkhead-net: vhost-user ports and open taps. */
    SANDBOX_PROFILE_VSOCK,   /**< bulkhead-vsock: vhost-user and host unix sockets. */
    SANDBOX_PROFILE_CONSOLE, /**< bulkhead-console: vhost-user and the ports' host ends. */
    SANDBOX_PROFILE_RNG,     /**< bulkhead-rng: vhost-user and getrandom(). */
};

/** Number of values of enum sandbox_profile, NONE included; tests try 1 to this - 1. */
#define SANDBOX_NR_PROFILES 7

/** What a call outside the allowlist does. */
enum sandbox_seccomp_mode {
    SANDBOX_SECCOMP_OFF,  /**< No filter (no --sandbox). */
    SANDBOX_SECCOMP_KILL, /**< The whole process dies by SIGSYS at once (--sandbox). */
    /**
     * Debugging (--sandbox=trap): the call raises SIGSYS, whose handler writes one line
     * `PROG: error: seccomp: system call NAME (NR) is not allowed` on stderr and ends
     * the process with status 159 (128 + SIGSYS). KILL's death leaves no trace of which
     * call it was in a container (the audit log is the host's), this one does.
     */
    SANDBOX_SECCOMP_TRAP,
};

/**
 * Parse the argument of `--sandbox[=MODE]`.
 * @param arg NULL (a bare --sandbox: kill), "kill" or "trap".
 * @param out receives the mode.
 * @return 0; -EINVAL for any other text.
 */
int sandbox_seccomp_parse(const char *arg, enum sandbox_seccomp_mode *out);

/**
 * The profile's name as docs/security.md spells it ("vmm", "blk", ...).
 * @param p the profile.
 * @return a static string; "?" for a value outside the enum.
 */
const char *sandbox_profile_name(enum sandbox_profile p);

/**
 * Install the profile's filter on the whole process. Nothing is installed for
 * SANDBOX_SECCOMP_OFF. In trap mode the SIGSYS handler is installed first. Irrevocable:
 * a second call stacks a second filter (each call must pass both).
 * @param p the program's profile.
 * @param mode what a call outside the list does.
 * @return 0; -EINVAL for SANDBOX_PROFILE_NONE, an unknown profile or mode; a negative errno from
 * building or loading the filter (logged), e.g. -ENOSYS when the kernel lacks seccomp.
 */
int sandbox_seccomp_apply(enum sandbox_profile p, enum sandbox_seccomp_mode mode);

#endif
