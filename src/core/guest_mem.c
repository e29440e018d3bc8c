/* SPDX-License-Identifier: BSD-2-Clause */
#include "core/guest_mem.h"

#include "core/checked.h"

#include <errno.h>
#include <string.h>

int guest_mem_add_region(struct guest_mem *mem, uint64_t gpa, uint64_t size, void *hva)
{
    uint64_t end;
    if (mem->nr_regions >= GUEST_MEM_MAX_REGIONS)
        return -ENOSPC;
    if (size == 0 || hva == NULL || checked_add_u64(gpa, size, &end))
        return -EINVAL;
    if (mem->nr_regions > 0) {
        const struct guest_region *last = &mem->regions[mem->nr_regions - 1];
        if (gpa < last->gpa + last->size)
            return -EINVAL;
    }
    mem->regions[mem->nr_regions++] = (struct guest_region){.gpa = gpa, .size = size, .hva = hva};
    return 0;
}

void *guest_mem_ptr(const struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
    if (len == 0)
        return NULL;
    for (unsigned i = 0; i < mem->nr_regions; i++) {
        const struct guest_region *r = &mem->regions[i];
        if (range_within(gpa, len, r->gpa, r->size))
            return r->hva + (gpa - r->gpa);
    }
    return NULL;
}

int guest_mem_read(const struct guest_mem *mem, uint64_t gpa, void *dst, size_t len)
{
    if (len == 0)
        return 0;
    const void *src = guest_mem_ptr(mem, gpa, len);
    if (src == NULL)
        return -EFAULT;
    memcpy(dst, src, len);
    return 0;
}

int guest_mem_write(const struct guest_mem *mem, uint64_t gpa, const void *src, size_t len)
{
    if (len == 0)
        return 0;
    void *dst = guest_mem_ptr(mem, gpa, len);
    if (dst == NULL)
        return -EFAULT;
    memcpy(dst, src, len);
    return 0;
}

int guest_mem_fill(const struct guest_mem *mem, uint64_t gpa, uint8_t byte, size_t len)
{
    if (len == 0)
        return 0;
    void *dst = guest_mem_ptr(mem, gpa, len);
    if (dst == NULL)
        return -EFAULT;
    memset(dst, byte, len);
    return 0;
}

uint64_t guest_mem_total(const struct guest_mem *mem)
{
    uint64_t total = 0;
    for (unsigned i = 0; i < mem->nr_regions; i++)
        total += mem->regions[i].size;
    return total;
}
