/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file cgroup.h
 * @brief CPU budgets, weights and accounting of a system's components through cgroup v2.
 *
 * The system gets one directory, MOUNT/bulkhead-HASH (HASH: of its run directory, so a
 * supervisor started again after a crash finds and reuses what the last one left), and
 * each component a leaf of it named after the component, in which the launcher starts it
 * (CLONE_INTO_CGROUP, host/sandbox.h): the VMM's own device programs and every thread
 * are in it from their first instruction. The cpu controller is enabled in the mount's
 * root and in the system's directory, never in a leaf (cgroup v2's "no internal
 * processes" rule: a cgroup whose children get controllers holds no process), and the
 * supervisor itself stays where it was started, outside the tree.
 *
 * A leaf's cpu.max ("QUOTA 100000": QUOTA microseconds of CPU per 100 ms) is the VM's
 * cpu-max, its cpu.weight the VM's cpu-weight; its cpu.stat usage_usec counts every
 * process that ever ran in it, so status can report a VM's CPU time including its device
 * programs. The leaf lives as long as the component may run again (restarts reuse it)
 * and is removed once it has ended for good.
 *
 * Where cgroup v2 is not mounted, cannot be written, or has no cpu controller (a host
 * that keeps it in cgroup v1), components run without budgets and weights: the first
 * component that asks for one gets a warning in the supervisor's log, and cg_sys::why
 * says why for status. Host CPU affinity does not depend on any of this.
 */
#ifndef BULKHEAD_SUPERVISOR_CGROUP_H
#define BULKHEAD_SUPERVISOR_CGROUP_H

#include <stdbool.h>
#include <stdint.h>

/** The scheduling period of every cpu.max written, in microseconds (the kernel's default). */
#define CG_PERIOD_US 100000u
/** cpu.weight when the description gives none: the kernel's default. */
#define CG_DEFAULT_WEIGHT 100u

/** A system's cgroup subtree. All zero is "not set up yet"; cg_sys_open() sets it up. */
struct cg_sys {
    bool tried;     /**< cg_sys_open() ran: its outcome stands, it is not tried again. */
    int sys_fd;     /**< The system's directory (O_PATH), or -1: no cgroups at all. */
    bool cpu;       /**< The cpu controller is on for the leaves: budgets are applied. */
    bool warned;    /**< The budgets-not-applied warning is in the log already. */
    char path[320]; /**< The system's directory, for log lines and rmdir. */
    char why[600];  /**< When budgets are not applied: why, in words; else "". */
};

/**
 * Find the cgroup v2 mount and make the system's directory with the cpu controller on
 * for its leaves. Never fatal: what does not work is in @c g->why (and logged once).
 * @param g the subtree (all zero before).
 * @param mount the cgroup v2 mount to use; NULL: the first in /proc/self/mounts.
 * @param run_dir the system's run directory: names the system's directory.
 * @return 0 with the cpu controller; -ENOTSUP without it (accounting still works when
 *         @c g->sys_fd >= 0); another negative errno when there are no cgroups.
 */
int cg_sys_open(struct cg_sys *g, const char *mount, const char *run_dir);

/**
 * Make (or reuse) a component's leaf and write its budget and weight into it.
 * @param g the subtree (cg_sys_open() done).
 * @param name the component's name.
 * @param cpu_max_milli its budget in thousandths of a CPU; 0: none ("max").
 * @param weight its cpu.weight (1 to 10000).
 * @param fd receives the leaf (O_PATH, close-on-exec) for the launcher; -1 when there
 *        are no cgroups.
 * @return 0 (also without the cpu controller: then a budget asked for is warned about);
 *         -ENOENT when there are no cgroups; the errno of a failed mkdir or write.
 */
int cg_comp_open(struct cg_sys *g, const char *name, unsigned cpu_max_milli, unsigned weight,
                 int *fd);

/**
 * The CPU time of everything that ever ran in a leaf (cpu.stat usage_usec).
 * @param fd the leaf.
 * @param ns receives nanoseconds.
 * @return 0, or a negative errno.
 */
int cg_usage_ns(int fd, uint64_t *ns);

/**
 * Remove a component's leaf once nothing runs in it (its process was reaped).
 * @param g the subtree.
 * @param name the component's name.
 * @param fd its leaf, closed here in any case.
 * @return 0; -EBUSY when something still runs in it (a process that outlived the
 *         component); another negative errno.
 */
int cg_comp_remove(struct cg_sys *g, const char *name, int fd);

/**
 * Remove the leaves that are empty and the system's directory, when it is empty then.
 * @param g the subtree (zero, or opened).
 */
void cg_sys_close(struct cg_sys *g);

#endif
