/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file launch.h
 * @brief What each kind of component may see and do: the sandbox_spec (host/sandbox.h)
 *        the supervisor starts it with. docs/security.md explains each choice.
 *
 * Our own programs (bulkhead-vmm, bulkhead-blk, bulkhead-net) run in new mount, PID, IPC
 * and UTS namespaces, in an empty read-only root holding only their program directory,
 * the run directories of their own sockets and of the components they link to, and the
 * files their description names (kernel, initrd, image; /dev/kvm for a VMM, /dev/net/tun
 * for a switch with taps); with no capabilities (CAP_NET_ADMIN kept for taps), no new
 * privileges, rlimits, and `--sandbox` so that each applies its own seccomp allowlist
 * once set up (not a VMM that starts device programs of its own, vsock, console or rng
 * without backend:, since its list forbids exec: it keeps the namespaces and the empty
 * root). A network namespace of its own too, unless it has taps (which live in the
 * host's). External backends (qemu-storage-daemon, virtiofsd) are started by the same
 * launcher with IPC and UTS namespaces, rlimits, the parent-death signal and only their
 * log as descriptors, but their own file system view and privileges: they bring their own
 * sandboxes and need their libraries and shared directories.
 *
 * Every kind is started in its cgroup when the supervisor has one for it (cgroup.h), and a
 * VM with host-cpus pinned to those CPUs: both before the program's first instruction, so
 * every thread and device program it makes inherits them, sandboxed or not.
 */
#ifndef BULKHEAD_SUPERVISOR_LAUNCH_H
#define BULKHEAD_SUPERVISOR_LAUNCH_H

#include "supervisor/plan.h"

#include <stdbool.h>
#include <sys/types.h>

/** A started component, or why it did not start. */
struct launch_result {
    pid_t pid;     /**< Its pid. */
    int pidfd;     /**< A pidfd for it. */
    char why[384]; /**< On failure: one line, which step and why. */
};

/** Whether components are sandboxed at all (`bulkhead up --no-sandbox` turns it off, for
 * debugging a component that dies of its allowlist). */
extern bool launch_sandbox;

/**
 * Start a component with its sandbox; stdin is /dev/null, stdout and stderr @p log_fd.
 * @param pc what to start.
 * @param log_fd its log.
 * @param cgroup_fd the cgroup v2 directory to start it in (cgroup.h), or -1.
 * @param res receives the pid and pidfd, or the reason.
 * @return 0, or a negative errno.
 */
int launch_component(const struct plan_comp *pc, int log_fd, int cgroup_fd,
                     struct launch_result *res);

#endif
