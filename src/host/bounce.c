/* SPDX-License-Identifier: BSD-2-Clause */
#include "host/bounce.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int bounce_create(struct bounce_region *b, uint64_t size)
{
    memset(b, 0, sizeof(*b));
    b->fd = -1;
    if (size == 0 || (size & 0xfff) != 0 || size > (1ull << 40))
        return -EINVAL;
    /* The name is what a backend's /proc/PID/maps shows: tests check it is the only memfd
     * of the VMM that an isolated backend maps. */
    int fd = memfd_create("bulkhead-bounce", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return -errno;
    int err;
    if (ftruncate(fd, (off_t)size) != 0 ||
        fcntl(fd, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) != 0)
        goto fail;
    void *base = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED)
        goto fail;
    /* The backend's bytes never belong in a core dump of the VMM. */
    (void)madvise(base, (size_t)size, MADV_DONTDUMP);
    b->fd = fd;
    b->base = base;
    b->size = size;
    return 0;
fail:
    err = errno;
    close(fd);
    return -err;
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
