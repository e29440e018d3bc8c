/* SPDX-License-Identifier: BSD-2-Clause */
#include "backends/console/con_host.h"

#include "backends/common/backend_prog.h"
#include "core/log.h"
#include "host/fd_nonblock.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static bool starts_with(const char *s, const char *prefix, const char **rest)
{
    size_t n = strlen(prefix);
    if (strncmp(s, prefix, n) != 0)
        return false;
    *rest = s + n;
    return true;
}

static int parse_fd(const char *s, int *fd)
{
    uint64_t v;
    if (backend_parse_u64(s, 0, INT_MAX, &v) < 0)
        return -EINVAL;
    *fd = (int)v;
    return 0;
}

/* "IN" or "IN,OUT". */
static int parse_fds(const char *s, struct con_host_spec *spec)
{
    char in[16];
    const char *comma = strchr(s, ',');
    if (comma == NULL)
        return parse_fd(s, &spec->in_fd) < 0 ? -EINVAL : parse_fd(s, &spec->out_fd);
    size_t n = (size_t)(comma - s);
    if (n == 0 || n >= sizeof(in))
        return -EINVAL;
    memcpy(in, s, n);
    in[n] = '\0';
    if (parse_fd(in, &spec->in_fd) < 0)
        return -EINVAL;
    return parse_fd(comma + 1, &spec->out_fd);
}

int con_host_parse(const char *text, bool console, struct con_host_spec *spec)
{
    const char *rest;
    *spec = (struct con_host_spec){.kind = CON_HOST_NONE, .in_fd = -1, .out_fd = -1};
    if (starts_with(text, "file:", &rest))
        spec->kind = CON_HOST_FILE;
    else if (starts_with(text, "unix:", &rest))
        spec->kind = CON_HOST_UNIX;
    else if (console && strcmp(text, "stdio") == 0)
        spec->kind = CON_HOST_STDIO;
    else if (console && starts_with(text, "fd:", &rest))
        return parse_fds(rest, spec) < 0 ? -EINVAL : (spec->kind = CON_HOST_FD, 0);
    else
        return -EINVAL;
    if (spec->kind == CON_HOST_STDIO)
        return 0;
    if (rest[0] == '\0')
        return -EINVAL;
    spec->path = rest;
    return 0;
}

/* Our own non-blocking file on the pipe, FIFO or terminal behind an inherited @p fd. */
static int reopen_for_reading(int fd)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    /* O_NOCTTY: reopening a terminal must not make it our controlling terminal. */
    int nfd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    return nfd < 0 ? -errno : nfd;
}

static int take_input(struct con_host *h, int fd)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    if (S_ISSOCK(st.st_mode)) {
        h->in_fd = fd;
        h->in_socket = true;
    } else if (S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode)) {
        int r = reopen_for_reading(fd);
        if (r < 0)
            return r;
        h->in_fd = r;
        h->in_own = true;
    } else if (S_ISREG(st.st_mode)) {
        h->in_fd = fd; /* a read from a file never waits */
    } else {
        return -EINVAL;
    }
    return 0;
}

static int take_output(struct con_host *h, int fd)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    if (S_ISSOCK(st.st_mode)) {
        h->out_fd = fd;
        h->out_socket = true;
        h->out_pollable = true;
    } else if (S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode)) {
        int r = fd_reopen_nonblocking(fd);
        if (r < 0)
            return r;
        h->out_fd = r;
        h->out_own = true;
        h->out_pollable = true;
    } else if (S_ISREG(st.st_mode)) {
        h->out_fd = fd;
    } else {
        return -EINVAL;
    }
    return 0;
}

/* Standard input may be closed (a daemon): then the port has no input, which is fine. */
static int take_stdio(struct con_host *h, int in, int out)
{
    int r = fcntl(in, F_GETFD) < 0 ? 0 : take_input(h, in);
    if (r == 0)
        r = take_output(h, out);
    return r;
}

static int open_file(struct con_host *h)
{
    /* Non-blocking: a FIFO without a reader fails now instead of stalling us later. */
    int fd = open(h->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, 0600);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    h->out_fd = fd;
    h->out_own = true;
    h->out_pollable = !S_ISREG(st.st_mode);
    h->out_socket = S_ISSOCK(st.st_mode);
    return 0;
}

int con_host_open(struct con_host *h, const struct con_host_spec *spec)
{
    *h = (struct con_host){
        .kind = spec->kind, .path = spec->path, .listen_fd = -1, .in_fd = -1, .out_fd = -1};
    int r = 0;
    switch (spec->kind) {
    case CON_HOST_NONE:
        break;
    case CON_HOST_STDIO:
        r = take_stdio(h, STDIN_FILENO, STDOUT_FILENO);
        break;
    case CON_HOST_FD:
        if (fcntl(spec->in_fd, F_GETFD) < 0 || fcntl(spec->out_fd, F_GETFD) < 0) {
            r = -EBADF;
            break;
        }
        /* Nothing we start should inherit them. */
        (void)fcntl(spec->in_fd, F_SETFD, FD_CLOEXEC);
        (void)fcntl(spec->out_fd, F_SETFD, FD_CLOEXEC);
        r = take_stdio(h, spec->in_fd, spec->out_fd);
        break;
    case CON_HOST_FILE:
        r = open_file(h);
        break;
    case CON_HOST_UNIX:
        r = backend_listen_unix(spec->path, &h->listen_fd);
        break;
    }
    if (r < 0)
        con_host_close(h); /* a unix end that failed has no socket file of ours to remove */
    return r;
}

static void close_client(struct con_host *h)
{
    if (h->in_fd >= 0)
        close(h->in_fd);
    h->in_fd = -1;
    h->out_fd = -1;
    h->hup = false;
}

void con_host_close(struct con_host *h)
{
    if (h->kind == CON_HOST_UNIX) {
        close_client(h);
        if (h->listen_fd >= 0) {
            close(h->listen_fd);
            if (h->path != NULL)
                (void)unlink(h->path);
        }
        h->listen_fd = -1;
        return;
    }
    if (h->in_own && h->in_fd >= 0)
        close(h->in_fd);
    if (h->out_own && h->out_fd >= 0)
        close(h->out_fd);
    h->in_fd = -1;
    h->out_fd = -1;
    h->in_own = false;
    h->out_own = false;
}

bool con_host_connected(const struct con_host *h)
{
    switch (h->kind) {
    case CON_HOST_NONE:
        return false;
    case CON_HOST_UNIX:
        return h->in_fd >= 0;
    default:
        return true;
    }
}

bool con_host_writable(const struct con_host *h)
{
    return h->out_fd >= 0 && !h->out_failed;
}

bool con_host_readable(const struct con_host *h)
{
    return h->in_fd >= 0 && !h->in_eof;
}

int con_host_accept(struct con_host *h)
{
    if (h->kind != CON_HOST_UNIX || h->listen_fd < 0 || h->in_fd >= 0)
        return 0;
    int c = accept4(h->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (c < 0)
        return errno == EAGAIN || errno == EINTR || errno == ECONNABORTED ? 0 : -errno;
    h->in_fd = c;
    h->out_fd = c;
    h->in_socket = true;
    h->out_socket = true;
    h->out_pollable = true;
    h->hup = false;
    return 1;
}

ssize_t con_host_read(struct con_host *h, void *buf, size_t len)
{
    ssize_t n;
    do {
        n = h->in_socket ? recv(h->in_fd, buf, len, MSG_DONTWAIT) : read(h->in_fd, buf, len);
    } while (n < 0 && errno == EINTR);
    if (n >= 0)
        return n;
    return errno == EWOULDBLOCK ? -EAGAIN : -errno;
}

ssize_t con_host_write(struct con_host *h, const struct iovec *iov, int n)
{
    ssize_t w;
    do {
        if (h->out_socket) {
            struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n};
            w = sendmsg(h->out_fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
        } else {
            w = writev(h->out_fd, iov, n);
        }
    } while (w < 0 && errno == EINTR);
    if (w >= 0)
        return w;
    return errno == EWOULDBLOCK ? -EAGAIN : -errno;
}

void con_host_input_ended(struct con_host *h)
{
    if (h->kind == CON_HOST_UNIX)
        close_client(h);
    else
        h->in_eof = true;
}

void con_host_output_failed(struct con_host *h)
{
    if (h->kind == CON_HOST_UNIX)
        close_client(h);
    else
        h->out_failed = true;
}

void con_host_hangup(struct con_host *h)
{
    int unread = 0;
    if (h->in_fd >= 0 && ioctl(h->in_fd, FIONREAD, &unread) == 0 && unread > 0)
        h->hup = true;
    else
        close_client(h);
}
