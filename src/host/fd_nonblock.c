/* SPDX-License-Identifier: BSD-2-Clause */
#include "host/fd_nonblock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>

int fd_reopen_nonblocking(int fd)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -errno;
    if (!S_ISFIFO(st.st_mode) && !S_ISCHR(st.st_mode))
        return -ENOTSUP;
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    /* O_NOCTTY: reopening a terminal must not make it the controlling terminal. */
    int nfd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    return nfd < 0 ? -errno : nfd;
}
