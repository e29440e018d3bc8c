/* SPDX-License-Identifier: BSD-2-Clause */
#include "host/guest_ram.h"

#include "core/log.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Guards this large catch a stray index far past either end, and keep 2 MiB alignment. */
#define GUARD_SIZE (2u << 20)
#define HUGE_ALIGN (2u << 20)

/* memfd RAM only gets transparent huge pages when the host lets shmem use them; say so once,
 * because without them a boot under nested paging takes about twice as long. */
static void check_shmem_huge_pages(void)
{
    static bool checked;
    if (checked)
        return;
    checked = true;
    char buf[128] = {0};
    int fd = open("/sys/kernel/mm/transparent_hugepage/shmem_enabled", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n > 0 && (strstr(buf, "[never]") != NULL || strstr(buf, "[deny]") != NULL))
        log_info("guest RAM uses 4 KiB pages: /sys/kernel/mm/transparent_hugepage/shmem_enabled "
                 "is never; 'advise' gives it huge pages");
}

int guest_ram_create(struct guest_ram *ram, uint64_t size)
{
    memset(ram, 0, sizeof(*ram));
    ram->fd = -1;
    if (size == 0 || (size & 0xfff) != 0 || size > (1ull << 46))
        return -EINVAL;

    int fd = memfd_create("bulkhead-guest-ram", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return -errno;
    if (ftruncate(fd, (off_t)size) != 0)
        goto fail_fd;
    /* The size is final: a backend or a bug cannot grow or shrink it under the VMM. */
    (void)fcntl(fd, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL);

    /* Reserve guard + RAM + guard, plus slack to align the RAM to 2 MiB. */
    size_t len = (size_t)size + 2 * GUARD_SIZE + HUGE_ALIGN;
    uint8_t *res = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (res == MAP_FAILED)
        goto fail_fd;
    uintptr_t first = (uintptr_t)res + GUARD_SIZE;
    size_t pad = (HUGE_ALIGN - (first & (HUGE_ALIGN - 1))) & (HUGE_ALIGN - 1);
    void *base = mmap(res + GUARD_SIZE + pad, (size_t)size, PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_FIXED, fd, 0);
    if (base == MAP_FAILED) {
        int err = errno;
        munmap(res, len);
        close(fd);
        return -err;
    }
    check_shmem_huge_pages();
    if (madvise(base, (size_t)size, MADV_HUGEPAGE) != 0)
        log_debug("guest RAM: MADV_HUGEPAGE refused: %s", strerror(errno));
    /* Guest RAM never belongs in a core dump of the VMM. */
    (void)madvise(base, (size_t)size, MADV_DONTDUMP);

    ram->fd = fd;
    ram->base = base;
    ram->size = size;
    ram->reserved = res;
    ram->reserved_len = len;
    return 0;
fail_fd:;
    int err = errno;
    close(fd);
    return -err;
}

void guest_ram_destroy(struct guest_ram *ram)
{
    if (ram->fd < 0)
        return;
    munmap(ram->reserved, ram->reserved_len);
    close(ram->fd);
    ram->fd = -1;
    ram->base = NULL;
}
