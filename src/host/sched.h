/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file sched.h
 * @brief The CPU scheduling class every bulkhead program puts its threads in (--sched).
 *
 * A VM's I/O is a relay of wake-ups: a vCPU rings a doorbell, a device thread wakes,
 * a backend wakes, an interrupt wakes the vCPU again. Where these threads share a CPU
 * with each other (or with other VMs), the kernel's default class lets each woken
 * thread preempt the one running, so every packet or request is carried alone through
 * the whole relay, with a context switch at every step. In SCHED_BATCH a woken thread
 * waits for the running one to block or to use up its time slice: the vCPU queues
 * more work before the device thread takes it, and the device completes more before
 * the guest takes an interrupt. Threads on otherwise idle CPUs run at once as before;
 * only preemption on wake-up changes, and the tick still shares a busy CPU fairly.
 */
#ifndef BULKHEAD_HOST_SCHED_H
#define BULKHEAD_HOST_SCHED_H

/** The --sched choices. */
enum host_sched {
    HOST_SCHED_BATCH = 0, /**< SCHED_BATCH (the default): no preemption on wake-up. */
    HOST_SCHED_NORMAL,    /**< SCHED_OTHER, the kernel's default for every process. */
};

/**
 * Parse a --sched argument.
 * @param arg "batch" or "normal".
 * @param out the choice.
 * @return 0, or -EINVAL for anything else (out untouched).
 */
int host_sched_parse(const char *arg, enum host_sched *out);

/**
 * Put the calling thread in the class. Threads it creates afterwards and programs it
 * starts inherit the class, so a program calls this first, before any thread or child
 * exists; that is also before its seccomp filter, which does not allow the call.
 * @param s the choice.
 * @return 0, or a negative errno from the kernel (the thread keeps its class; callers
 *         warn and go on, as the class changes speed, never behaviour).
 */
int host_sched_apply(enum host_sched s);

/**
 * The class the calling thread is in now, for the --sched of a program it starts (which
 * would otherwise apply its own default over the inherited class).
 * @return HOST_SCHED_BATCH for SCHED_BATCH, else HOST_SCHED_NORMAL.
 */
enum host_sched host_sched_current(void);

/**
 * The --sched word of a class.
 * @param s the class.
 * @return "batch" or "normal".
 */
const char *host_sched_name(enum host_sched s);

/** The --sched line of the programs' --help texts. */
#define HOST_SCHED_HELP                                                                            \
    "  --sched batch|normal  CPU scheduling class of its threads (docs/design.md,\n"               \
    "                  \"Scheduling\"): batch (default) lets a woken thread wait for the\n"        \
    "                  running one instead of preempting it; normal is the kernel's\n"             \
    "                  default\n"

#endif
