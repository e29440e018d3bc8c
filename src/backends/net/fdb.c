/* SPDX-License-Identifier: BSD-2-Clause */
#include "backends/net/fdb.h"

#include <errno.h>
#include <string.h>

_Static_assert((FDB_SETS & (FDB_SETS - 1)) == 0, "FDB_SETS is a power of two");
_Static_assert(FDB_MAX_PORTS < FDB_NO_PORT, "port numbers fit beside the empty marker");

void fdb_init(struct fdb *t, uint64_t key, uint64_t age_ns)
{
    memset(t, 0, sizeof(*t));
    for (unsigned s = 0; s < FDB_SETS; s++) {
        for (unsigned w = 0; w < FDB_WAYS; w++)
            t->e[s][w].port = FDB_NO_PORT;
    }
    t->key = key;
    t->age_ns = age_ns != 0 ? age_ns : FDB_DEFAULT_AGE_NS;
}

/* A keyed mix (not a cryptographic MAC): enough that a guest cannot choose the set its
 * addresses land in without knowing the key. */
static unsigned set_of(const struct fdb *t, const uint8_t mac[6])
{
    uint64_t v = 0;
    for (unsigned i = 0; i < 6; i++)
        v = v << 8 | mac[i];
    v ^= t->key;
    v *= 0x9e3779b97f4a7c15ull;
    v ^= v >> 29;
    v *= 0xbf58476d1ce4e5b9ull;
    v ^= v >> 32;
    return (unsigned)(v & (FDB_SETS - 1u));
}

static bool expired(const struct fdb *t, const struct fdb_entry *e, uint64_t now_ns)
{
    return now_ns - e->seen_ns > t->age_ns;
}

static void clear(struct fdb *t, struct fdb_entry *e)
{
    if (e->port != FDB_NO_PORT && e->port < FDB_MAX_PORTS && t->per_port[e->port] > 0)
        t->per_port[e->port]--;
    e->port = FDB_NO_PORT;
}

static bool is_zero(const uint8_t mac[6])
{
    return (mac[0] | mac[1] | mac[2] | mac[3] | mac[4] | mac[5]) == 0;
}

static struct fdb_entry *find(struct fdb *t, const uint8_t mac[6])
{
    struct fdb_entry *set = t->e[set_of(t, mac)];
    for (unsigned w = 0; w < FDB_WAYS; w++) {
        if (set[w].port != FDB_NO_PORT && memcmp(set[w].mac, mac, 6) == 0)
            return &set[w];
    }
    return NULL;
}

/* Remove expired entries; at most once a second, so a port at its limit cannot make
 * every frame pay for a walk over the whole table. */
static void sweep(struct fdb *t, uint64_t now_ns)
{
    if (t->last_sweep_ns != 0 && now_ns - t->last_sweep_ns < 1000000000ull)
        return;
    t->last_sweep_ns = now_ns;
    for (unsigned s = 0; s < FDB_SETS; s++) {
        for (unsigned w = 0; w < FDB_WAYS; w++) {
            struct fdb_entry *e = &t->e[s][w];
            if (e->port != FDB_NO_PORT && expired(t, e, now_ns))
                clear(t, e);
        }
    }
}

int fdb_learn(struct fdb *t, const uint8_t mac[6], unsigned port, uint64_t now_ns)
{
    if (port >= FDB_MAX_PORTS || fdb_is_group(mac) || is_zero(mac))
        return -EINVAL;
    struct fdb_entry *e = find(t, mac);
    if (e != NULL) {
        bool moved = e->port != port || expired(t, e, now_ns);
        if (e->port != port) {
            if (t->per_port[port] >= FDB_PORT_LIMIT)
                sweep(t, now_ns);
            if (t->per_port[port] >= FDB_PORT_LIMIT) {
                clear(t, e); /* it is not where the entry says any more */
                return -ENOSPC;
            }
            clear(t, e);
            e->port = (uint16_t)port;
            memcpy(e->mac, mac, 6);
            t->per_port[port]++;
        }
        e->seen_ns = now_ns;
        return moved ? 1 : 0;
    }
    if (t->per_port[port] >= FDB_PORT_LIMIT)
        sweep(t, now_ns);
    if (t->per_port[port] >= FDB_PORT_LIMIT)
        return -ENOSPC;
    /* A free way, else an expired one, else the least recently seen. */
    struct fdb_entry *set = t->e[set_of(t, mac)];
    struct fdb_entry *victim = NULL;
    for (unsigned w = 0; w < FDB_WAYS && victim == NULL; w++) {
        if (set[w].port == FDB_NO_PORT)
            victim = &set[w];
    }
    for (unsigned w = 0; w < FDB_WAYS && victim == NULL; w++) {
        if (expired(t, &set[w], now_ns))
            victim = &set[w];
    }
    if (victim == NULL) {
        victim = &set[0];
        for (unsigned w = 1; w < FDB_WAYS; w++) {
            if (now_ns - set[w].seen_ns > now_ns - victim->seen_ns)
                victim = &set[w];
        }
    }
    clear(t, victim);
    memcpy(victim->mac, mac, 6);
    victim->port = (uint16_t)port;
    victim->seen_ns = now_ns;
    t->per_port[port]++;
    return 1;
}

int fdb_lookup(struct fdb *t, const uint8_t mac[6], uint64_t now_ns)
{
    struct fdb_entry *e = find(t, mac);
    if (e == NULL)
        return -ENOENT;
    if (expired(t, e, now_ns)) {
        clear(t, e);
        return -ENOENT;
    }
    return e->port;
}

void fdb_forget_port(struct fdb *t, unsigned port)
{
    for (unsigned s = 0; s < FDB_SETS; s++) {
        for (unsigned w = 0; w < FDB_WAYS; w++) {
            if (t->e[s][w].port == port)
                clear(t, &t->e[s][w]);
        }
    }
    if (port < FDB_MAX_PORTS)
        t->per_port[port] = 0;
}

unsigned fdb_count(const struct fdb *t, unsigned port)
{
    return port < FDB_MAX_PORTS ? t->per_port[port] : 0;
}

enum fdb_verdict fdb_forward(struct fdb *t, unsigned src, const uint8_t macs[12], uint64_t now_ns,
                             unsigned *dst)
{
    (void)fdb_learn(t, macs + 6, src, now_ns);
    if (fdb_is_group(macs))
        return FDB_FLOOD;
    int p = fdb_lookup(t, macs, now_ns);
    if (p < 0)
        return FDB_FLOOD;
    if ((unsigned)p == src)
        return FDB_LOCAL;
    *dst = (unsigned)p;
    return FDB_UNICAST;
}
