/* SPDX-License-Identifier: BSD-2-Clause */
#include "host/boot_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

/* One pread() at most this long: Linux transfers at most about 2 GiB per call anyway. */
#define READ_CHUNK (1u << 30)

int boot_file_open(struct boot_file *f, const char *path)
{
    f->size = 0;
    f->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (f->fd < 0)
        return -errno;
    struct stat st;
    int rc = 0;
    if (fstat(f->fd, &st) != 0)
        rc = -errno;
    else if (!S_ISREG(st.st_mode))
        rc = -EINVAL;
    else if (st.st_size == 0)
        rc = -ENODATA;
    else {
        f->size = (uint64_t)st.st_size;
        return 0;
    }
    boot_file_close(f);
    return rc;
}

int boot_file_refresh(struct boot_file *f)
{
    struct stat st;
    if (fstat(f->fd, &st) != 0)
        return -errno;
    if (st.st_size < 0)
        return -EFBIG;
    f->size = (uint64_t)st.st_size;
    return 0;
}

int boot_file_read(const void *ctx, uint64_t offset, void *dst, size_t len)
{
    const struct boot_file *f = ctx;
    uint8_t *out = dst;

    while (len > 0) {
        /* off_t is signed: an offset past its range cannot be in any file. */
        if (offset > (uint64_t)INT64_MAX)
            return -EINVAL;
        size_t want = len < READ_CHUNK ? len : READ_CHUNK;
        ssize_t n = pread(f->fd, out, want, (off_t)offset);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -ENODATA;
        out += n;
        offset += (uint64_t)n;
        len -= (size_t)n;
    }
    return 0;
}

void boot_file_close(struct boot_file *f)
{
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
}
