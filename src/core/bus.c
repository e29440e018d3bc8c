/* SPDX-License-Identifier: BSD-2-Clause */
#include "core/bus.h"

#include "core/checked.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int bus_init(struct bus *bus, const char *name)
{
    memset(bus, 0, sizeof(*bus));
    bus->name = name;
    return os_rwlock_init(&bus->lock);
}

void bus_destroy(struct bus *bus)
{
    free(bus->ranges);
    bus->ranges = NULL;
    bus->nr_ranges = bus->cap = 0;
    os_rwlock_destroy(&bus->lock);
}

int bus_register(struct bus *bus, uint64_t base, uint64_t len, const struct bus_ops *ops,
                 void *opaque, const char *name)
{
    uint64_t end;
    if (len == 0 || checked_add_u64(base, len - 1, &end))
        return -EINVAL;

    int ret = 0;
    os_rwlock_wrlock(&bus->lock);
    size_t pos = 0;
    while (pos < bus->nr_ranges && bus->ranges[pos].base < base)
        pos++;
    /* The neighbours on either side are the only ranges that can overlap. */
    if (pos > 0) {
        const struct bus_range *prev = &bus->ranges[pos - 1];
        if (prev->base + (prev->len - 1) >= base)
            ret = -EEXIST;
    }
    if (pos < bus->nr_ranges && bus->ranges[pos].base <= end)
        ret = -EEXIST;
    if (ret == 0 && bus->nr_ranges == bus->cap) {
        size_t cap = bus->cap ? bus->cap * 2 : 16;
        struct bus_range *r = realloc(bus->ranges, cap * sizeof(*r));
        if (r == NULL) {
            ret = -ENOMEM;
        } else {
            bus->ranges = r;
            bus->cap = cap;
        }
    }
    if (ret == 0) {
        memmove(&bus->ranges[pos + 1], &bus->ranges[pos],
                (bus->nr_ranges - pos) * sizeof(bus->ranges[0]));
        bus->ranges[pos] = (struct bus_range){
            .base = base, .len = len, .ops = ops, .opaque = opaque, .name = name};
        bus->nr_ranges++;
    }
    os_rwlock_unlock(&bus->lock);
    return ret;
}

int bus_unregister(struct bus *bus, uint64_t base, void *opaque)
{
    int ret = -ENOENT;
    os_rwlock_wrlock(&bus->lock);
    for (size_t i = 0; i < bus->nr_ranges; i++) {
        if (bus->ranges[i].base == base && bus->ranges[i].opaque == opaque) {
            memmove(&bus->ranges[i], &bus->ranges[i + 1],
                    (bus->nr_ranges - i - 1) * sizeof(bus->ranges[0]));
            bus->nr_ranges--;
            ret = 0;
            break;
        }
    }
    os_rwlock_unlock(&bus->lock);
    return ret;
}

/* Binary search for the range containing [addr, addr + size); caller holds the lock. */
static const struct bus_range *find_range(const struct bus *bus, uint64_t addr, unsigned size)
{
    size_t lo = 0, hi = bus->nr_ranges;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct bus_range *r = &bus->ranges[mid];
        if (addr < r->base) {
            hi = mid;
        } else if (addr - r->base >= r->len) {
            lo = mid + 1;
        } else {
            return range_within(addr, size, r->base, r->len) ? r : NULL;
        }
    }
    return NULL;
}

static bool valid_size(unsigned size)
{
    return size == 1 || size == 2 || size == 4 || size == 8;
}

int bus_read(struct bus *bus, uint64_t addr, unsigned size, uint64_t *value)
{
    *value = size >= 8 ? ~0ULL : (1ULL << (size * 8)) - 1;
    os_rwlock_rdlock(&bus->lock);
    const struct bus_range *r = valid_size(size) ? find_range(bus, addr, size) : NULL;
    if (r != NULL)
        *value = r->ops->read(r->opaque, addr - r->base, size);
    os_rwlock_unlock(&bus->lock);
    if (r == NULL) {
        __atomic_add_fetch(&bus->unhandled, 1, __ATOMIC_RELAXED);
        return -ENOENT;
    }
    return 0;
}

int bus_write(struct bus *bus, uint64_t addr, unsigned size, uint64_t value)
{
    os_rwlock_rdlock(&bus->lock);
    const struct bus_range *r = valid_size(size) ? find_range(bus, addr, size) : NULL;
    if (r != NULL)
        r->ops->write(r->opaque, addr - r->base, size, value);
    os_rwlock_unlock(&bus->lock);
    if (r == NULL) {
        __atomic_add_fetch(&bus->unhandled, 1, __ATOMIC_RELAXED);
        return -ENOENT;
    }
    return 0;
}
