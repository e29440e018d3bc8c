/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file lock.h
 * @brief The locks of the portable code: the one place that names the host's thread API.
 *
 * Device models, the bus and the virtio transport are reached from several vCPU threads and
 * the event loop at once, so they need mutual exclusion; but they must build for seL4 or a
 * bare event loop unchanged. They therefore use only these types and calls. On Linux they
 * are POSIX threads; a port supplies its own branch here (on seL4, a notification-based
 * lock, or no-ops where a component is single-threaded).
 */
#ifndef BULKHEAD_CORE_LOCK_H
#define BULKHEAD_CORE_LOCK_H

#if defined(__linux__)
#include <pthread.h>

/** A mutual-exclusion lock; not recursive. */
typedef struct {
    pthread_mutex_t m; /**< The host's mutex. */
} os_mutex;

/** A lock with shared readers and one writer, for tables read on every exit. */
typedef struct {
    pthread_rwlock_t l; /**< The host's reader-writer lock. */
} os_rwlock;

/**
 * Initialise a mutex.
 * @param m the mutex.
 * @return 0 or a negative errno.
 */
static inline int os_mutex_init(os_mutex *m)
{
    return -pthread_mutex_init(&m->m, NULL);
}

/**
 * Free a mutex that nobody holds.
 * @param m the mutex.
 */
static inline void os_mutex_destroy(os_mutex *m)
{
    pthread_mutex_destroy(&m->m);
}

/**
 * Take a mutex, waiting for it.
 * @param m the mutex.
 */
static inline void os_mutex_lock(os_mutex *m)
{
    pthread_mutex_lock(&m->m);
}

/**
 * Release a mutex the caller holds.
 * @param m the mutex.
 */
static inline void os_mutex_unlock(os_mutex *m)
{
    pthread_mutex_unlock(&m->m);
}

/**
 * Initialise a reader-writer lock.
 * @param l the lock.
 * @return 0 or a negative errno.
 */
static inline int os_rwlock_init(os_rwlock *l)
{
    return -pthread_rwlock_init(&l->l, NULL);
}

/**
 * Free a reader-writer lock that nobody holds.
 * @param l the lock.
 */
static inline void os_rwlock_destroy(os_rwlock *l)
{
    pthread_rwlock_destroy(&l->l);
}

/**
 * Take a reader-writer lock shared.
 * @param l the lock.
 */
static inline void os_rwlock_rdlock(os_rwlock *l)
{
    pthread_rwlock_rdlock(&l->l);
}

/**
 * Take a reader-writer lock exclusively.
 * @param l the lock.
 */
static inline void os_rwlock_wrlock(os_rwlock *l)
{
    pthread_rwlock_wrlock(&l->l);
}

/**
 * Release a reader-writer lock, however it was taken.
 * @param l the lock.
 */
static inline void os_rwlock_unlock(os_rwlock *l)
{
    pthread_rwlock_unlock(&l->l);
}
#else
#error "core/lock.h: no lock implementation for this host"
#endif

#endif
