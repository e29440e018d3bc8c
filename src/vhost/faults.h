/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file faults.h
 * @brief Fault injection for a TEST build of the backend library: a hostile vhost-user backend.
 *
 * bulkhead-vmm must survive a backend that breaks the protocol, and confine the damage to
 * that backend's device (docs/design.md, "Untrusted backends"). To test that, the Makefile
 * builds `bulkhead-blk-faulty`: bulkhead-blk from the same sources, compiled with
 * -DBULKHEAD_FAULTS, plus this module. Only that build calls these functions (every hook
 * site is inside `#ifdef BULKHEAD_FAULTS`, and faults.c is left out of libbulkhead.a), so
 * the production bulkhead-blk carries no fault code.
 *
 * `bulkhead-blk-faulty --fault KIND [--fault-after N]` misbehaves in one way, the same way
 * on every connection it serves (a frontend that reconnects, or a new process of it, meets
 * the same fault again). Faults on the data path wait for N good completions on the
 * connection first (default FAULTS_DEFAULT_AFTER; the requests that a new connection is
 * sent again count too), so the guest's driver probes the disk and reads its partition
 * table before anything goes wrong. The (N+1)-th completion is the *victim*:
 *
 *  - `bad-used-id`: the victim comes back with used id = Queue Size + its head, an index
 *    no descriptor has.
 *  - `used-twice`: the victim is held back (never returned) and the next completion of the
 *    same queue comes back twice, in one publish. With the victim still in flight the used
 *    index does not run ahead of what the frontend has in flight, so only the repeated id
 *    gives it away. (The guest must keep two or more requests in flight.)
 *  - `len-over`: the victim comes back with used len one more than the device wrote: for a
 *    read or write that succeeded, one byte over the writable space its chain offered.
 *  - `idx-jump`: the victim is published, then the used index moves a further Queue Size
 *    + 1 ahead.
 *  - `close-mid-request`: the victim is never returned; the connection is shut down (both
 *    directions) while the frontend waits for it.
 *  - `no-reply`: bulkhead-vmm sends no message while the rings run, so this one strikes at
 *    the device's start: from the connection's first SET_MEM_TABLE on, every message is
 *    read and dropped, neither applied nor answered.
 *  - `stall`: the victim and every later request are never returned, while the connection
 *    stays open and every message is answered: a backend that hangs on its I/O. Only a
 *    deadline on requests in flight (bulkhead-vmm's `--disk ...,timeout=`) sees it.
 *  - `bad-config-size`: every GET_CONFIG reply carries 4 bytes fewer than asked (4 more,
 *    zeros, when fewer than 5 were asked), its header's size consistent with that.
 *    bulkhead-vmm asks for the configuration only when it creates the device, so there
 *    this fault stops the VM from starting.
 *
 * After a data-path fault the connection's used rings are left alone: later completions
 * are dropped, so the broken state the frontend sees stays as it was until it hangs up.
 * Each injected fault is logged (warn) with the word "fault".
 *
 * All calls come from the backend's one thread.
 */
#ifndef BULKHEAD_VHOST_FAULTS_H
#define BULKHEAD_VHOST_FAULTS_H

#include "virtio/virtqueue.h"

#include <stdbool.h>
#include <stdint.h>

/** Good completions on a connection before a data-path fault, unless --fault-after says. */
#define FAULTS_DEFAULT_AFTER 32u

/** The KIND words --fault accepts, for the usage text and error messages. */
#define FAULTS_KINDS                                                                               \
    "bad-used-id, used-twice, len-over, idx-jump, no-reply, close-mid-request, bad-config-size, "  \
    "stall, forbidden-call"

/**
 * Choose the fault this process shows (command line).
 * @param kind one of FAULTS_KINDS.
 * @return 0; -EINVAL for an unknown @p kind.
 */
int faults_set(const char *kind);

/**
 * How long a data-path fault waits (command line): the guest's driver must get its disk
 * probed first, and a test may want the fault later.
 * @param after good completions per connection before it strikes.
 */
void faults_set_after(unsigned after);

/**
 * A new frontend connection begins: the fault is armed again for it, so every backend the
 * frontend reaches misbehaves alike.
 * @param sock the connection (shut down by close-mid-request, never closed here).
 */
void faults_connection(int sock);

/**
 * Stands in for vq_add_used() on the backend's completion path: passes the completion on,
 * or injects the data-path fault.
 * @param vq the device-side queue.
 * @param head the chain's head.
 * @param len bytes the device wrote.
 * @return as vq_add_used(); 0 for a completion the fault swallowed.
 */
int faults_add_used(struct vq *vq, uint16_t head, uint32_t len);

/**
 * Stands in for vq_publish_used(): publishes, or leaves the used ring as the fault made it.
 * @param vq the device-side queue.
 * @return as vq_publish_used().
 */
int faults_publish_used(struct vq *vq);

/**
 * Whether a message just read must be dropped unanswered and unapplied (no-reply).
 * @param request its request code.
 * @return true to drop it.
 */
bool faults_drop_message(uint32_t request);

/**
 * The size a GET_CONFIG reply claims and carries (bad-config-size changes it).
 * @param size the size asked for, 1 to VHOST_USER_CONFIG_MAX.
 * @return the size to reply with, at most VHOST_USER_CONFIG_MAX.
 */
uint32_t faults_config_size(uint32_t size);

#endif
