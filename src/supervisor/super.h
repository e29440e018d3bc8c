/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file super.h
 * @brief The supervisor's run time: the processes of a plan, started in dependency order,
 *        watched, restarted by their policies, stopped in reverse order.
 *
 * One thread runs everything on one event loop: a pidfd per running process says when it
 * ended, a 100 ms tick drives every deadline (readiness of a starting backend, back-off
 * before a restart, the kill after a stop's grace), the control socket (api.h) and the
 * VMs' serial consoles. Nothing ever waits on a component: a backend that never becomes
 * ready leaves its VMs waiting, not the supervisor.
 *
 * **States.** stopped (never started, or stopped by request) → waiting (its backends are
 * not ready yet) → starting (running, sockets not there yet) → running → stopping (SIGTERM
 * sent, SIGKILL at the deadline) → exited (ended, its policy says no more), failed (gave
 * up after the restart limit, or cannot be started), or backoff (ended, restarting after
 * the back-off). A component stopped by request stays stopped whatever its policy.
 *
 * **Restarts.** Back-off doubles from the policy's backoff_ms to backoff_max_ms; a run that
 * lasted backoff_max_ms counts as healthy and starts the count again; after `limit`
 * restarts in a row the component is failed. A backend restarted under a running VM is
 * found again by the VMM at the same socket, which resubmits what was in flight.
 */
#ifndef BULKHEAD_SUPERVISOR_SUPER_H
#define BULKHEAD_SUPERVISOR_SUPER_H

#include "host/event_loop.h"
#include "supervisor/cgroup.h"
#include "supervisor/plan.h"
#include "supervisor/relay.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct mux;

/** A component's life-cycle state (file comment). */
enum sv_state {
    SV_STOPPED,  /**< Not running, and not to be started. */
    SV_WAITING,  /**< To be started once its dependencies are ready. */
    SV_STARTING, /**< Running; its sockets are not all there yet. */
    SV_RUNNING,  /**< Running and ready. */
    SV_STOPPING, /**< Asked to stop; killed at the deadline. */
    SV_BACKOFF,  /**< Ended; starts again at the deadline. */
    SV_EXITED,   /**< Ended; its policy does not restart it. */
    SV_FAILED,   /**< Given up on. */
};

/** What to do once a stopping component has ended. */
enum sv_after {
    SV_AFTER_NOTHING, /**< Stay stopped. */
    SV_AFTER_START,   /**< Start again (restart, or apply of a changed component). */
    SV_AFTER_REMOVE,  /**< Drop it from the system (apply removed it). */
};

struct supervisor;

/** One component at run time. */
struct sv_comp {
    struct supervisor *sv;        /**< Its supervisor, for the loop's callbacks. */
    struct plan_comp pc;          /**< What to run (owned: argv freed with the component). */
    unsigned deps[PLAN_MAX_DEPS]; /**< Slots (supervisor::c) that must be running first. */
    unsigned nr_deps;             /**< Entries of @c deps. */
    bool ready_warned;            /**< The slow-start warning was logged for this run. */
    bool killed_at_deadline;      /**< SIGKILL was sent at the stop deadline. */
    enum sv_state state;          /**< Where it is. */
    enum sv_after after;          /**< What follows its end when it is stopping. */
    bool removed;                 /**< Gone from the system; the slot is free. */
    pid_t pid;                    /**< While running, else 0. */
    int pidfd;                    /**< While running, else -1. */
    uint64_t started_ns;          /**< When the current (or last) run began. */
    uint64_t deadline_ns;         /**< Back-off end, or kill time while stopping. */
    unsigned in_row;              /**< Restarts in a row without a healthy run. */
    uint64_t restarts;            /**< Restarts by policy or request since `up`. */
    char last_exit[448];          /**< How the last run ended, for status. */
    uint64_t cpu_ns_done;         /**< CPU time of its ended runs (but those counted by
                                       its cgroup while it still has one). */
    int cg_fd;                    /**< Its cgroup (cgroup.h), kept across restarts, or -1. */
    int log_fd;                   /**< Its stdout and stderr go here (append). */
    off_t log_start;              /**< Size of the log when the current run began: what
                                       that run wrote starts here. */
    int console_fd;               /**< VMs: the serial console connection, or -1. */
    int console_log_fd;           /**< VMs: raw console bytes, or -1. */
    int console_extra_fd;         /**< VMs: the description's own console log, or -1. */
    bool retiring;                /**< Replaced by a newer one (apply): name lookups skip it. */
    unsigned replaces_uid;        /**< The older component this one waits to end, or 0. */
    int mux_id;                   /**< VMs: its id in the multiplexer, or -1. */
    int viewer_fd;                /**< A `ctl console` client attached to it, or -1. */
    unsigned uid;                 /**< Stable number (the multiplexer's order). */
};

/** Longest log directory path. */
#define SV_LOG_DIR_MAX 256

/** Most components at once (with apply, old and new may overlap briefly). */
#define SV_MAX_COMPS (DESC_MAX_VMS + DESC_MAX_BACKENDS)

/** The supervisor. */
struct supervisor {
    struct event_loop loop;          /**< Everything's. */
    char run_dir[PLAN_PATH_MAX];     /**< Sockets. */
    char log_dir[SV_LOG_DIR_MAX];    /**< Per-component logs. */
    struct sv_comp *c[SV_MAX_COMPS]; /**< Components; NULL slots are free. */
    unsigned nr;                     /**< Slots in use or used (c[0..nr)). */
    unsigned next_uid;               /**< For sv_comp::uid. */
    int tick_fd;                     /**< The 100 ms timerfd. */
    int signal_fd;                   /**< SIGTERM, SIGINT, SIGHUP (`up` sets it), or -1. */
    bool down;                       /**< Everything is being stopped; exit when done. */
    bool quit;                       /**< The loop should end. */
    struct mux *mux;                 /**< The foreground multiplexer, or NULL. */
    int tty_in;                      /**< The terminal's keys for the multiplexer, or -1. */
    bool mux_dirty;                  /**< Console output reached the multiplexer since the
                                          last mux_flush(). */
    uint64_t last_output_ns;         /**< When it last did. */
    uint64_t now_ns;                 /**< Time of the current step. */
    struct cg_sys cg;                /**< The components' cgroups, set up at the first start. */
    struct relay *relays;            /**< Serial links (an array), or NULL. */
    unsigned nr_relays;              /**< Entries of @c relays. */
};

/**
 * Set up an empty supervisor with its loop and tick.
 * @param s the supervisor.
 * @param run_dir where sockets live (created, mode 0700).
 * @param log_dir where logs go (created).
 * @return 0 or a negative errno.
 */
int sv_init(struct supervisor *s, const char *run_dir, const char *log_dir);

/**
 * Add one component, stopped (its argv moves to the supervisor; the plan component's
 * own pointers are cleared). Its log files are opened in the log directory.
 * @param s the supervisor.
 * @param pc what to run.
 * @param out receives the component.
 * @return 0, -ENOSPC, -ENOMEM, or the errno of opening its log.
 */
int sv_add(struct supervisor *s, struct plan_comp *pc, struct sv_comp **out);

/**
 * Point the dependencies of the components made from plan components
 * [first, first + n) at the supervisor's components of the same names.
 * @param s the supervisor.
 * @param p the plan the components came from (names and dependency indices still there).
 * @param first the first plan component.
 * @param n how many.
 */
void sv_resolve_deps(struct supervisor *s, const struct plan *p, unsigned first, unsigned n);

/**
 * Type into a VM's serial console (dropped when the VM is not taking it now).
 * @param c the VM.
 * @param buf the bytes.
 * @param len their count.
 * @return 0, -ENOTCONN, or the errno of the write.
 */
int sv_console_write(struct sv_comp *c, const uint8_t *buf, size_t len);

/**
 * Give a VM its place in the multiplexer, when there is one.
 * @param s the supervisor.
 * @param c the VM.
 */
void sv_mux_add(struct supervisor *s, struct sv_comp *c);

/**
 * Close a component's descriptors and free it (it must have ended).
 * @param s the supervisor.
 * @param c the component.
 */
void sv_comp_free(struct supervisor *s, struct sv_comp *c);

/**
 * Take every component of a plan (its argv moves to the supervisor; the plan's own
 * pointers are cleared) and mark all of them to be started.
 * @param s the supervisor.
 * @param p the plan.
 * @return 0, -ENOSPC.
 */
int sv_adopt(struct supervisor *s, struct plan *p);

/**
 * Take a plan's serial links, replacing the ones there were (their connections close;
 * the new ones connect once both ends listen).
 * @param s the supervisor.
 * @param p the plan.
 * @return 0, -ENOMEM.
 */
int sv_set_links(struct supervisor *s, const struct plan *p);

/**
 * Run the loop until everything has stopped after sv_down() (or a fatal error).
 * @param s the supervisor.
 * @return 0, or a negative errno.
 */
int sv_run(struct supervisor *s);

/**
 * Find a component by name.
 * @param s the supervisor.
 * @param name its name.
 * @return the component, or NULL.
 */
struct sv_comp *sv_find(struct supervisor *s, const char *name);

/**
 * Start a stopped, exited or failed component (and, first, nothing else: its
 * dependencies must be up or it waits for them).
 * @param s the supervisor.
 * @param c the component.
 * @return 0, -EALREADY when it is running or about to.
 */
int sv_start(struct supervisor *s, struct sv_comp *c);

/**
 * Stop a component: SIGTERM (a VM's power button), SIGKILL after its stop timeout.
 * @param s the supervisor.
 * @param c the component.
 * @param after what follows its end.
 * @return 0, -EALREADY when it is not running.
 */
int sv_stop(struct supervisor *s, struct sv_comp *c, enum sv_after after);

/**
 * Kill a component at once with SIGKILL; its restart policy applies as to any other end.
 * @param s the supervisor.
 * @param c the component.
 * @return 0, -ESRCH when it is not running.
 */
int sv_kill(struct supervisor *s, struct sv_comp *c);

/**
 * Stop everything, VMs before backends, then end sv_run().
 * @param s the supervisor.
 */
void sv_down(struct supervisor *s);

/**
 * The name of a state, for status output.
 * @param st the state.
 * @return a static string.
 */
const char *sv_state_name(enum sv_state st);

/**
 * CPU time of a component: from its cgroup's cpu.stat when it has one (every process it
 * ever ran there, device programs included), else its ended runs plus the running process
 * (user + system, from /proc/PID/stat).
 * @param c the component.
 * @return nanoseconds.
 */
uint64_t sv_cpu_ns(const struct sv_comp *c);

/**
 * Put a VM's console into the foreground multiplexer, reading the terminal's keys.
 * @param s the supervisor.
 * @param m the multiplexer (mux.h), set up by the caller.
 * @param tty_in the terminal's input (raw mode set by the caller).
 * @return 0 or a negative errno.
 */
int sv_attach_mux(struct supervisor *s, struct mux *m, int tty_in);

/**
 * Free everything (the components must have ended).
 * @param s the supervisor.
 */
void sv_destroy(struct supervisor *s);

#endif
