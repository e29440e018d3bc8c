/* SPDX-License-Identifier: BSD-2-Clause */
#include "host/console.h"

#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define CTRL_A 0x01

int console_open(struct console *c, enum serial_kind kind, const char *path)
{
    memset(c, 0, sizeof(*c));
    c->kind = kind;
    c->in_fd = c->out_fd = c->listen_fd = -1;
    pthread_mutex_init(&c->out_lock, NULL);
    c->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (c->wake_fd < 0)
        return -errno;
    switch (kind) {
    case SERIAL_STDIO:
        c->in_fd = STDIN_FILENO;
        c->out_fd = STDOUT_FILENO;
        if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &c->saved_tty) == 0) {
            struct termios raw = c->saved_tty;
            cfmakeraw(&raw);
            raw.c_oflag |= OPOST | ONLCR; /* keep our own log lines readable */
            if (tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0)
                c->tty = true;
        }
        break;
    case SERIAL_FILE:
        c->out_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (c->out_fd < 0) {
            int err = errno;
            log_error("--serial file:%s: %s", path, strerror(err));
            return -err;
        }
        break;
    case SERIAL_UNIX: {
        struct sockaddr_un addr = {.sun_family = AF_UNIX};
        if (strlen(path) >= sizeof(addr.sun_path)) {
            log_error("--serial unix:%s: path too long", path);
            return -ENAMETOOLONG;
        }
        memcpy(addr.sun_path, path, strlen(path) + 1);
        c->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (c->listen_fd < 0)
            return -errno;
        unlink(path);
        if (bind(c->listen_fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 ||
            listen(c->listen_fd, 1) != 0) {
            int err = errno;
            log_error("--serial unix:%s: %s", path, strerror(err));
            return -err;
        }
        c->path = strdup(path);
        break;
    }
    }
    return 0;
}

static void pump_input(struct console *c);

static void on_input(void *opaque, uint32_t events)
{
    struct console *c = opaque;
    if (c->pending_off < c->pending_len)
        return; /* still waiting for the UART to drain */
    ssize_t n = read(c->in_fd, c->pending, sizeof(c->pending));
    if (n <= 0 && !(n < 0 && (errno == EAGAIN || errno == EINTR))) {
        /* End of input: the guest keeps running without a keyboard. */
        event_loop_remove(c->loop, c->in_fd);
        if (c->kind == SERIAL_UNIX) {
            pthread_mutex_lock(&c->out_lock);
            close(c->in_fd);
            c->in_fd = c->out_fd = -1;
            pthread_mutex_unlock(&c->out_lock);
        }
        return;
    }
    (void)events;
    if (n < 0)
        return;
    /* On a terminal, Ctrl-A x quits and Ctrl-A Ctrl-A sends one Ctrl-A. */
    size_t out = 0;
    for (ssize_t i = 0; i < n; i++) {
        uint8_t b = c->pending[i];
        if (c->tty && c->escape) {
            c->escape = false;
            if (b == 'x' || b == 'X') {
                if (c->quit != NULL)
                    c->quit(c->ctx);
                continue;
            }
            if (b != CTRL_A)
                continue;
        } else if (c->tty && b == CTRL_A) {
            c->escape = true;
            continue;
        }
        c->pending[out++] = b;
    }
    c->pending_off = 0;
    c->pending_len = out;
    pump_input(c);
}

static void pump_input(struct console *c)
{
    if (c->pending_off < c->pending_len && c->deliver != NULL) {
        c->pending_off +=
            c->deliver(c->ctx, c->pending + c->pending_off, c->pending_len - c->pending_off);
    }
    if (c->in_fd >= 0 && c->loop != NULL)
        event_loop_modify(c->loop, c->in_fd, c->pending_off < c->pending_len ? 0 : EVENT_IN);
}

static void on_wake(void *opaque, uint32_t events)
{
    struct console *c = opaque;
    uint64_t v;
    (void)events;
    if (read(c->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        log_debug("console wake: %s", strerror(errno));
    pump_input(c);
}

static void on_accept(void *opaque, uint32_t events)
{
    struct console *c = opaque;
    (void)events;
    int fd = accept4(c->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0)
        return;
    if (c->in_fd >= 0) {
        close(fd); /* one client at a time */
        return;
    }
    pthread_mutex_lock(&c->out_lock);
    c->in_fd = c->out_fd = fd;
    pthread_mutex_unlock(&c->out_lock);
    if (event_loop_add(c->loop, fd, EVENT_IN, on_input, c) != 0)
        log_warn("console: cannot watch the socket client");
}

int console_attach(struct console *c, struct event_loop *loop, console_deliver_fn deliver,
                   console_quit_fn quit, void *ctx)
{
    c->loop = loop;
    c->deliver = deliver;
    c->quit = quit;
    c->ctx = ctx;
    c->pending_off = c->pending_len = 0;
    int r = event_loop_add(loop, c->wake_fd, EVENT_IN, on_wake, c);
    if (r == 0 && c->listen_fd >= 0)
        r = event_loop_add(loop, c->listen_fd, EVENT_IN, on_accept, c);
    if (r == 0 && c->in_fd >= 0) {
        r = event_loop_add(loop, c->in_fd, EVENT_IN, on_input, c);
        if (r == -EPERM) /* stdin is a regular file or /dev/null: epoll refuses it */
            r = 0;
    }
    return r;
}

void console_detach(struct console *c)
{
    if (c->loop == NULL)
        return;
    event_loop_remove(c->loop, c->wake_fd);
    if (c->listen_fd >= 0)
        event_loop_remove(c->loop, c->listen_fd);
    if (c->in_fd >= 0)
        event_loop_remove(c->loop, c->in_fd);
    c->loop = NULL;
    c->deliver = NULL;
}

void console_write(struct console *c, uint8_t byte)
{
    pthread_mutex_lock(&c->out_lock);
    if (c->out_fd >= 0) {
        ssize_t n;
        do {
            n = c->kind == SERIAL_UNIX ? send(c->out_fd, &byte, 1, MSG_DONTWAIT | MSG_NOSIGNAL)
                                       : write(c->out_fd, &byte, 1);
        } while (n < 0 && errno == EINTR);
        /* A full socket drops output rather than stall the vCPU. */
    }
    pthread_mutex_unlock(&c->out_lock);
}

void console_rx_ready(struct console *c)
{
    uint64_t one = 1;
    if (write(c->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        log_debug("console wake: %s", strerror(errno));
}

void console_close(struct console *c)
{
    console_detach(c);
    if (c->tty)
        tcsetattr(STDIN_FILENO, TCSANOW, &c->saved_tty);
    if (c->kind != SERIAL_STDIO && c->out_fd >= 0)
        close(c->out_fd);
    if (c->listen_fd >= 0)
        close(c->listen_fd);
    if (c->path != NULL) {
        unlink(c->path);
        free(c->path);
    }
    if (c->wake_fd >= 0)
        close(c->wake_fd);
    pthread_mutex_destroy(&c->out_lock);
}
