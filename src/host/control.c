/* SPDX-License-Identifier: BSD-2-Clause */
#include "host/control.h"

#include "core/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

void control_printf(struct control_reply *r, const char *fmt, ...)
{
    if (r->used >= sizeof(r->buf) - 1)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(r->buf + r->used, sizeof(r->buf) - r->used, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(r->buf) - r->used) {
        /* Cut: say so at the end rather than ending mid-line without a sign. */
        r->used = sizeof(r->buf) - 1;
        memcpy(r->buf + r->used - 4, "...\n", 4);
        return;
    }
    r->used += (size_t)n;
}

static void drop_client(struct control *c, struct control_client *cl)
{
    event_loop_remove(c->loop, cl->fd);
    close(cl->fd);
    cl->fd = -1;
    cl->used = 0;
}

/* The command without its newline and surrounding blanks. */
static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

static void on_client(void *opaque, uint32_t events)
{
    struct control_client *cl = opaque;
    struct control *c = cl->owner;
    (void)events;
    ssize_t n = read(cl->fd, cl->line + cl->used, sizeof(cl->line) - 1 - cl->used);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        drop_client(c, cl);
        return;
    }
    cl->used += (size_t)n;
    cl->line[cl->used] = '\0';
    char *nl = memchr(cl->line, '\n', cl->used);
    if (nl == NULL) {
        if (cl->used >= sizeof(cl->line) - 1) {
            log_warn("control: a command line longer than %d bytes; connection dropped",
                     CONTROL_LINE_MAX - 1);
            drop_client(c, cl);
        }
        return;
    }
    *nl = '\0';
    c->reply.used = 0;
    c->handler(c->ctx, trim(cl->line), &c->reply);
    /* One write, never a wait: a reply fits a unix socket's buffer many times over. */
    ssize_t w = send(cl->fd, c->reply.buf, c->reply.used, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (w != (ssize_t)c->reply.used)
        log_debug("control: reply not taken whole (%zd of %zu bytes)", w, c->reply.used);
    drop_client(c, cl);
}

static void on_listen(void *opaque, uint32_t events)
{
    struct control *c = opaque;
    (void)events;
    int fd = accept4(c->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0)
        return;
    for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++) {
        struct control_client *cl = &c->clients[i];
        if (cl->fd >= 0)
            continue;
        cl->fd = fd;
        cl->used = 0;
        if (event_loop_add(c->loop, fd, EVENT_IN, on_client, cl) != 0) {
            close(fd);
            cl->fd = -1;
        }
        return;
    }
    static const char busy[] = "error: busy\n";
    (void)!send(fd, busy, sizeof(busy) - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
    close(fd);
}

int control_open(struct control *c, const char *path, struct event_loop *loop,
                 control_handler handler, void *ctx)
{
    memset(c, 0, sizeof(*c));
    c->fd = -1;
    for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++)
        c->clients[i] = (struct control_client){.owner = c, .fd = -1};
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof(addr.sun_path) || len >= sizeof(c->path))
        return -ENAMETOOLONG;
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            log_error("--control: '%s' exists and is not a socket", path);
            return -EEXIST;
        }
        unlink(path);
    }
    memcpy(addr.sun_path, path, len + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    /* Only the VMM's user may control it. */
    mode_t old = umask(0077);
    int r = bind(fd, (struct sockaddr *)&addr, sizeof(addr));
    umask(old);
    if (r != 0 || listen(fd, 8) != 0) {
        int e = errno;
        log_error("--control: cannot listen on '%s': %s", path, strerror(e));
        close(fd);
        return -e;
    }
    c->fd = fd;
    memcpy(c->path, path, len + 1);
    c->loop = loop;
    c->handler = handler;
    c->ctx = ctx;
    if ((r = event_loop_add(loop, fd, EVENT_IN, on_listen, c)) != 0)
        control_close(c);
    return r;
}

void control_close(struct control *c)
{
    if (c->fd < 0)
        return;
    for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++) {
        if (c->clients[i].fd >= 0)
            drop_client(c, &c->clients[i]);
    }
    event_loop_remove(c->loop, c->fd);
    close(c->fd);
    c->fd = -1;
    unlink(c->path);
}
