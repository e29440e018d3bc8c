/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file plan.h
 * @brief From a validated system description to the processes that run it: one command
 *        line per backend and per VM, the sockets that link them, and the order.
 *
 * Every link is a vhost-user unix socket in the system's run directory (RUN/BACKEND/...,
 * a directory per component), created by the
 * backend that serves it and connected to by the VM's bulkhead-vmm (`--disk socket=`,
 * `--net socket=`, `--fs socket=`). A backend that restarts listens on the same path
 * again and the VMM reconnects there on its own (its isolated mode resubmits what was in
 * flight), so the supervisor never has to hand a new descriptor to a running VMM. Each
 * component is later given only its own sockets (the sandbox's mount namespace shows it
 * nothing else of the run directory).
 *
 * Backends come first in the plan and a VM depends on every backend it links to; a
 * backend is ready when its socket exists. Devices whose program the VMM starts itself
 * (vsock, console, rng without backend:) are not components of the plan: they live and
 * die with their VMM, which restarts them.
 */
#ifndef BULKHEAD_SUPERVISOR_PLAN_H
#define BULKHEAD_SUPERVISOR_PLAN_H

#include "supervisor/desc.h"

#include <stdbool.h>
#include <stdint.h>

/** Most words of one component's command line. */
#define PLAN_MAX_ARGS 160
/** Longest socket path (struct sockaddr_un's sun_path, with its NUL). */
#define PLAN_PATH_MAX 108
/** Most components a VM waits for. */
#define PLAN_MAX_DEPS DESC_MAX_DEVICES
/** Most sockets a backend makes (a switch: a port per NIC). */
#define PLAN_MAX_SOCKETS DESC_MAX_SWITCH_PORTS

/** Most host paths one component's sandbox shows it. */
#define PLAN_MAX_BINDS 48

/** A host path a component's sandbox shows it, at the same path. */
struct plan_bind {
    char path[PLAN_PATH_MAX * 2]; /**< The file or directory. */
    bool rw;                      /**< Writable (else read-only). */
    bool dev;                     /**< A device node that must stay usable (/dev/kvm). */
};

/** One process of the system. */
struct plan_comp {
    char name[DESC_NAME_MAX + 1];  /**< The description's name: unique over VMs and backends. */
    bool is_vm;                    /**< A bulkhead-vmm; else a backend. */
    unsigned index;                /**< Index in desc::vms or desc::backends. */
    const char *type;              /**< "vm", "blk", "switch", "p2p" or "external". */
    char *argv[PLAN_MAX_ARGS + 1]; /**< The command line, NULL-terminated (owned). */
    unsigned argc;                 /**< Words in @c argv. */
    /** Backends: the sockets it listens on, all of which must exist before it is ready. */
    char sockets[PLAN_MAX_SOCKETS][PLAN_PATH_MAX];
    unsigned nr_sockets;                    /**< Entries of @c sockets. */
    char serial[PLAN_PATH_MAX];             /**< VMs: the serial console's socket. */
    char control[PLAN_PATH_MAX];            /**< VMs: bulkhead-vmm's control socket. */
    unsigned deps[PLAN_MAX_DEPS];           /**< Components that must be ready first. */
    unsigned nr_deps;                       /**< Entries of @c deps. */
    struct desc_restart restart;            /**< Restart policy. */
    unsigned stop_timeout;                  /**< Seconds from SIGTERM to SIGKILL. */
    bool takes_input;                       /**< VMs: the multiplexer may type into COM1. */
    char console_log[PLAN_PATH_MAX * 2];    /**< VMs: the description's extra log file, or "". */
    bool external;                          /**< Someone else's program (launch.h). */
    char image[PLAN_PATH_MAX * 2];          /**< blk: the image, made sparse when missing... */
    uint64_t create_bytes;                  /**< ... of this size, when not 0. */
    bool has_taps;                          /**< A switch or link with tap uplinks. */
    bool spawns;                            /**< A VM that starts device programs of its own
                                                 (vsock, console, rng): no seccomp list, which
                                                 forbids exec (launch.h). */
    char own_dir[PLAN_PATH_MAX];            /**< RUN/NAME: its sockets (created, writable). */
    struct plan_bind binds[PLAN_MAX_BINDS]; /**< What its sandbox shows of the host. */
    unsigned nr_binds;                      /**< Entries of @c binds. */
    /** VMs: the host CPUs it may run on (bit N = CPU N), when @c host_cpus_given. */
    uint64_t host_cpus[DESC_MAX_HOST_CPUS / 64];
    bool host_cpus_given;   /**< VMs: host-cpus was given; else any CPU (no affinity set). */
    unsigned cpu_max_milli; /**< VMs: its cgroup's budget, thousandths of a CPU; 0: none. */
    unsigned cpu_weight;    /**< Its cgroup's cpu.weight (backends: the default, 100). */
};

/** A serial link: the supervisor relays bytes between two sockets, each a VM's COM2
 * (bulkhead-vmm --serial2) or a virtio-console port (its bulkhead-console), both of which
 * listen. */
struct plan_link {
    char path[2][PLAN_PATH_MAX];       /**< The two ends' sockets. */
    char name[2 * DESC_NAME_MAX + 40]; /**< "vm1:com2-vm2:com2", for logs. */
};

/** The whole system's processes, backends first. */
struct plan {
    char run_dir[PLAN_PATH_MAX];                   /**< Sockets live here. */
    struct plan_comp *comps;                       /**< Components. */
    unsigned nr_comps;                             /**< Entries of @c comps. */
    struct plan_link links[DESC_MAX_SERIAL_LINKS]; /**< Serial links. */
    unsigned nr_links;                             /**< Entries of @c links. */
};

/**
 * Make the plan of a valid description.
 * @param d the description (desc_parse() returned 0).
 * @param run_dir the directory for sockets (need not exist yet); short enough that every
 *        socket path fits PLAN_PATH_MAX.
 * @param bin_dir where bulkhead-vmm and the backend programs are.
 * @param out receives the plan (plan_free() it, also on error).
 * @param err receives a one-line reason on error.
 * @param errlen room in @p err.
 * @return 0; -ENAMETOOLONG (a socket path would not fit), -E2BIG (a command line would
 *         be too long), -ENOMEM.
 */
int plan_build(const struct desc *d, const char *run_dir, const char *bin_dir, struct plan *out,
               char *err, size_t errlen);

/**
 * Free a plan's memory.
 * @param p the plan (an all-zero one is fine).
 */
void plan_free(struct plan *p);

/**
 * Find a component by name.
 * @param p the plan.
 * @param name the name.
 * @return its index, or -1.
 */
int plan_find(const struct plan *p, const char *name);

/**
 * Whether two components would run the same way: same command line, kind and policy.
 * `bulkhead ctl apply` restarts the ones that differ.
 * @param a one.
 * @param b the other.
 * @return true when nothing differs.
 */
bool plan_comp_same(const struct plan_comp *a, const struct plan_comp *b);

#endif
