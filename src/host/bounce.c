/* SPDX-License-Identifier: BSD-2-Clause */
#include "host/bounce.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* A new sealed memfd of @p size mapped at @p at (NULL: anywhere; else replacing what is
 * mapped there). */
static int map_new(uint64_t size, void *at, int *fd_out, uint8_t **base_out)
{
    /* The name is what a backend's /proc/PID/maps shows: tests check it is the only memfd
     * of the VMM that an isolated backend maps. */
    int fd = memfd_create("bulkhead-bounce", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return errno != 0 ? -errno : -EIO;
    int err;
    if (ftruncate(fd, (off_t)size) != 0 ||
        fcntl(fd, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) != 0)
        goto fail;
    void *base = mmap(at, (size_t)size, PROT_READ | PROT_WRITE,
                      MAP_SHARED | (at != NULL ? MAP_FIXED : 0), fd, 0);
    if (base == MAP_FAILED)
        goto fail;
    /* The backend's bytes never belong in a core dump of the VMM. */
    (void)madvise(base, (size_t)size, MADV_DONTDUMP);
    *fd_out = fd;
    *base_out = base;
    return 0;
fail:
    err = errno != 0 ? errno : EIO;
    close(fd);
    return -err;
}

int bounce_create(struct bounce_region *b, uint64_t size)
{
    memset(b, 0, sizeof(*b));
    b->fd = -1;
    if (size == 0 || (size & 0xfff) != 0 || size > (1ull << 40))
        return -EINVAL;
    int r = map_new(size, NULL, &b->fd, &b->base);
    if (r == 0)
        b->size = size;
    return r;
}

int bounce_renew(struct bounce_region *b)
{
    if (b->fd < 0)
        return -EINVAL;
    int fd = -1;
    uint8_t *base = NULL;
    /* MAP_FIXED swaps the pages in one step: there is no moment at which the range is
     * unmapped and another mapping of this process could take it. */
    int r = map_new(b->size, b->base, &fd, &base);
    if (r != 0)
        return r;
    close(b->fd);
    b->fd = fd;
    return 0;
}

void bounce_destroy(struct bounce_region *b)
{
    if (b->fd < 0)
        return;
    munmap(b->base, (size_t)b->size);
    close(b->fd);
    b->fd = -1;
    b->base = NULL;
}
