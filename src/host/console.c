/* SPDX-License-Identifier: BSD-2-Clause */
#include "host/console.h"

#include "core/log.h"
#include "host/fd_nonblock.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define CTRL_A 0x01

/* Once a refused byte has been seen, the UART is woken when the buffer has drained to
 * this level, so that it can send a burst rather than one byte per wake-up. */
#define OUT_RESUME_LEVEL (CONSOLE_OUT_BUF_SIZE / 2)

static bool is_socket(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

static bool is_regular(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
}

/* The descriptor behind stdout, made safe to write from a vCPU thread: a private
 * non-blocking reopening for pipes and terminals, stdout itself for files and sockets. */
static void open_stdout(struct console *c)
{
    int fd = fd_reopen_nonblocking(STDOUT_FILENO);
    if (fd >= 0) {
        c->out_fd = fd;
        c->out_own = true;
        c->out_pollable = true;
        return;
    }
    c->out_fd = STDOUT_FILENO;
    c->out_pollable = !is_regular(STDOUT_FILENO);
    /* A pipe whose reader has gone cannot be reopened (ENXIO); writes to it fail with
     * EPIPE at once, which never blocks either. Anything else that cannot be made
     * non-blocking is used as it is, with a note. */
    if (fd != -ENOTSUP && fd != -ENXIO)
        log_warn("console: cannot reopen stdout without blocking (%s); a stalled reader may "
                 "stall the guest's output",
                 strerror(-fd));
}

int console_open(struct console *c, enum serial_kind kind, const char *path)
{
    memset(c, 0, sizeof(*c));
    c->kind = kind;
    c->in_fd = c->out_fd = c->listen_fd = -1;
    pthread_mutex_init(&c->out_lock, NULL);
    c->out_buf = malloc(CONSOLE_OUT_BUF_SIZE);
    c->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (c->wake_fd < 0 || c->out_buf == NULL)
        return c->out_buf == NULL ? -ENOMEM : -errno;
    switch (kind) {
    case SERIAL_STDIO:
        c->in_fd = STDIN_FILENO;
        open_stdout(c);
        if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &c->saved_tty) == 0) {
            struct termios raw = c->saved_tty;
            cfmakeraw(&raw);
            raw.c_oflag |= OPOST | ONLCR; /* keep our own log lines readable */
            if (tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0)
                c->tty = true;
        }
        break;
    case SERIAL_STDOUT:
        open_stdout(c);
        break;
    case SERIAL_FILE:
        /* O_NONBLOCK: the path may name a FIFO or a device; this open file is ours alone. */
        c->out_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NONBLOCK, 0644);
        if (c->out_fd < 0) {
            int err = errno;
            log_error("--serial file:%s: %s", path, strerror(err));
            return -err;
        }
        c->out_own = true;
        c->out_pollable = !is_regular(c->out_fd);
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
    c->out_socket = c->out_fd >= 0 && is_socket(c->out_fd);
    return 0;
}

/* One non-blocking write attempt; out_lock held. */
static ssize_t out_write(const struct console *c, const uint8_t *buf, size_t len)
{
    ssize_t n;
    do {
        n = c->out_socket ? send(c->out_fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL)
                          : write(c->out_fd, buf, len);
    } while (n < 0 && errno == EINTR);
    return n;
}

/* The host end failed for good (reader gone, I/O error): the guest's output is dropped from
 * now on rather than stalling it. out_lock held. */
static void out_fail(struct console *c, int err)
{
    if (!c->out_failed)
        log_info("console: output stopped: %s", strerror(err));
    c->out_failed = true;
    c->out_dropped += c->out_len;
    c->out_head = c->out_len = 0;
}

/* Write as much of the buffer as the host end takes now. out_lock held. Returns whether
 * the sink is owed a tx-ready call (and clears that debt). */
static bool out_drain(struct console *c)
{
    while (c->out_len > 0 && !c->out_failed) {
        size_t chunk = CONSOLE_OUT_BUF_SIZE - c->out_head;
        if (chunk > c->out_len)
            chunk = c->out_len;
        ssize_t n = out_write(c, c->out_buf + c->out_head, chunk);
        if (n < 0) {
            if (errno != EAGAIN)
                out_fail(c, errno);
            break;
        }
        c->out_head = (c->out_head + (size_t)n) % CONSOLE_OUT_BUF_SIZE;
        c->out_len -= (size_t)n;
    }
    if (c->out_len == 0)
        c->out_head = 0;
    if (c->out_blocked && c->out_len <= OUT_RESUME_LEVEL) {
        c->out_blocked = false;
        return true;
    }
    return false;
}

static void wake_loop(struct console *c)
{
    uint64_t one = 1;
    if (write(c->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        log_debug("console wake: %s", strerror(errno));
}

bool console_write(struct console *c, uint8_t byte)
{
    bool taken = true, wake = false;
    pthread_mutex_lock(&c->out_lock);
    if (c->out_fd < 0 || c->out_failed || (c->out_lossy && c->out_len == CONSOLE_OUT_BUF_SIZE)) {
        c->out_dropped++;
    } else if (c->out_len == 0 && !c->out_blocked) {
        /* The common case: nothing queued, so the byte may go straight out. */
        ssize_t n = out_write(c, &byte, 1);
        if (n < 0 && errno != EAGAIN) {
            out_fail(c, errno);
        } else if (n != 1) {
            c->out_buf[0] = byte;
            c->out_head = 0;
            c->out_len = 1;
            wake = true;
        }
    } else if (c->out_len < CONSOLE_OUT_BUF_SIZE) {
        c->out_buf[(c->out_head + c->out_len) % CONSOLE_OUT_BUF_SIZE] = byte;
        c->out_len++;
    } else {
        if (!c->out_blocked)
            log_guest(LOG_INFO,
                      "console: %u bytes of guest output wait for the host end; the "
                      "guest's serial driver waits too",
                      CONSOLE_OUT_BUF_SIZE);
        c->out_blocked = true;
        taken = false;
    }
    pthread_mutex_unlock(&c->out_lock);
    /* The loop thread watches the descriptor for room; vCPU threads never touch the loop. */
    if (wake)
        wake_loop(c);
    return taken;
}

static bool in_wanted(const struct console *c)
{
    return c->in_fd >= 0 && c->pending_off >= c->pending_len;
}

/* Bring the loop's interest in line with the state: input while there is room for it,
 * output while bytes wait. Loop thread only. */
static void watch(struct console *c)
{
    if (c->loop == NULL)
        return;
    pthread_mutex_lock(&c->out_lock);
    bool out_pending = c->out_len > 0 && !c->out_failed && c->out_pollable;
    pthread_mutex_unlock(&c->out_lock);
    uint32_t in_ev = in_wanted(c) ? EVENT_IN : 0;
    uint32_t out_ev = out_pending ? EVENT_OUT : 0;
    if (c->in_fd >= 0 && c->in_fd == c->out_fd) {
        event_loop_modify(c->loop, c->in_fd, in_ev | out_ev);
        return;
    }
    if (c->in_watched)
        event_loop_modify(c->loop, c->in_fd, in_ev);
    if (c->out_watched)
        event_loop_modify(c->loop, c->out_fd, out_ev);
}

static void flush_output(struct console *c)
{
    pthread_mutex_lock(&c->out_lock);
    bool owed = c->out_fd >= 0 && out_drain(c);
    pthread_mutex_unlock(&c->out_lock);
    if (owed && c->sink.tx_ready != NULL)
        c->sink.tx_ready(c->sink.ctx);
}

static void pump_input(struct console *c)
{
    if (c->pending_off < c->pending_len && c->sink.deliver != NULL) {
        c->pending_off += c->sink.deliver(c->sink.ctx, c->pending + c->pending_off,
                                          c->pending_len - c->pending_off);
    }
}

/* The socket client went away: forget it and the output meant for it. */
static void drop_client(struct console *c)
{
    event_loop_remove(c->loop, c->in_fd);
    pthread_mutex_lock(&c->out_lock);
    close(c->in_fd);
    c->in_fd = c->out_fd = -1;
    c->out_dropped += c->out_len;
    c->out_head = c->out_len = 0;
    c->out_failed = false;
    bool owed = c->out_blocked;
    c->out_blocked = false;
    pthread_mutex_unlock(&c->out_lock);
    if (owed && c->sink.tx_ready != NULL)
        c->sink.tx_ready(c->sink.ctx);
}

static void read_input(struct console *c)
{
    if (c->pending_off < c->pending_len)
        return; /* still waiting for the UART to drain */
    ssize_t n = read(c->in_fd, c->pending, sizeof(c->pending));
    if (n <= 0 && !(n < 0 && (errno == EAGAIN || errno == EINTR))) {
        /* End of input: the guest keeps running without a keyboard. */
        if (c->kind == SERIAL_UNIX) {
            drop_client(c);
        } else {
            event_loop_remove(c->loop, c->in_fd);
            c->in_watched = false;
            c->in_fd = -1;
        }
        return;
    }
    if (n < 0)
        return;
    /* On a terminal, Ctrl-A x quits and Ctrl-A Ctrl-A sends one Ctrl-A. */
    size_t out = 0;
    for (ssize_t i = 0; i < n; i++) {
        uint8_t b = c->pending[i];
        if (c->tty && c->escape) {
            c->escape = false;
            if (b == 'x' || b == 'X') {
                if (c->sink.quit != NULL)
                    c->sink.quit(c->sink.ctx);
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

/* Input descriptor (stdin, or the socket client, which also carries output). */
static void on_input(void *opaque, uint32_t events)
{
    struct console *c = opaque;
    if ((events & EVENT_OUT) || ((events & EVENT_ERR) && c->in_fd == c->out_fd)) {
        flush_output(c);
        pthread_mutex_lock(&c->out_lock);
        bool failed = c->out_failed;
        pthread_mutex_unlock(&c->out_lock);
        if (failed && c->kind == SERIAL_UNIX) {
            drop_client(c);
            return;
        }
    }
    if (c->in_fd >= 0 && (events & (EVENT_IN | EVENT_ERR)))
        read_input(c);
    watch(c);
}

/* Output descriptor watched on its own (stdout, or a FIFO given as --serial file:). */
static void on_output(void *opaque, uint32_t events)
{
    struct console *c = opaque;
    (void)events;
    flush_output(c);
    pthread_mutex_lock(&c->out_lock);
    bool failed = c->out_failed;
    pthread_mutex_unlock(&c->out_lock);
    if (failed && c->out_watched) {
        /* A pipe without a reader reports an error for ever: stop listening to it. */
        event_loop_remove(c->loop, c->out_fd);
        c->out_watched = false;
    }
    watch(c);
}

/* The wake eventfd: the UART has room for input, or a vCPU queued output. */
static void on_wake(void *opaque, uint32_t events)
{
    struct console *c = opaque;
    uint64_t v;
    (void)events;
    if (read(c->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        log_debug("console wake: %s", strerror(errno));
    pump_input(c);
    flush_output(c);
    watch(c);
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
    c->out_socket = true;
    c->out_pollable = true;
    pthread_mutex_unlock(&c->out_lock);
    if (event_loop_add(c->loop, fd, EVENT_IN, on_input, c) != 0)
        log_warn("console: cannot watch the socket client");
}

int console_attach(struct console *c, struct event_loop *loop, const struct console_sink *sink)
{
    c->loop = loop;
    c->sink = *sink;
    c->pending_off = c->pending_len = 0;
    int r = event_loop_add(loop, c->wake_fd, EVENT_IN, on_wake, c);
    if (r == 0 && c->listen_fd >= 0)
        r = event_loop_add(loop, c->listen_fd, EVENT_IN, on_accept, c);
    if (r == 0 && c->in_fd >= 0) {
        r = event_loop_add(loop, c->in_fd, EVENT_IN, on_input, c);
        c->in_watched = r == 0;
        if (r == -EPERM) /* stdin is a regular file or /dev/null: epoll refuses it */
            r = 0;
    }
    if (r == 0 && c->out_fd >= 0 && c->out_fd != c->in_fd && c->out_pollable && !c->out_failed) {
        r = event_loop_add(loop, c->out_fd, 0, on_output, c);
        c->out_watched = r == 0;
        if (r == -EPERM)
            r = 0;
    }
    if (r == 0)
        watch(c); /* output left over from before a reset */
    return r;
}

void console_detach(struct console *c)
{
    if (c->loop == NULL)
        return;
    event_loop_remove(c->loop, c->wake_fd);
    if (c->listen_fd >= 0)
        event_loop_remove(c->loop, c->listen_fd);
    if (c->in_watched || (c->kind == SERIAL_UNIX && c->in_fd >= 0))
        event_loop_remove(c->loop, c->in_fd);
    if (c->out_watched)
        event_loop_remove(c->loop, c->out_fd);
    c->in_watched = c->out_watched = false;
    c->loop = NULL;
    c->sink = (struct console_sink){0};
}

void console_set_lossy(struct console *c)
{
    pthread_mutex_lock(&c->out_lock);
    c->out_lossy = true;
    bool owed = c->out_blocked;
    c->out_blocked = false;
    pthread_mutex_unlock(&c->out_lock);
    if (owed && c->sink.tx_ready != NULL)
        c->sink.tx_ready(c->sink.ctx);
}

void console_rx_ready(struct console *c)
{
    wake_loop(c);
}

void console_flush(struct console *c, int stall_ms)
{
    for (;;) {
        pthread_mutex_lock(&c->out_lock);
        size_t before = c->out_len;
        if (c->out_fd >= 0)
            out_drain(c);
        size_t left = c->out_fd >= 0 && !c->out_failed ? c->out_len : 0;
        int fd = c->out_fd;
        pthread_mutex_unlock(&c->out_lock);
        if (left == 0)
            return;
        if (left < before)
            continue;
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int n = poll(&p, 1, stall_ms);
        if (n == 0 || (n < 0 && errno != EINTR)) {
            log_info("console: %zu bytes of guest output not written: the reader does not "
                     "take them",
                     left);
            return;
        }
    }
}

void console_close(struct console *c)
{
    console_detach(c);
    console_flush(c, 500);
    if (c->tty)
        tcsetattr(STDIN_FILENO, TCSANOW, &c->saved_tty);
    if (c->out_own || (c->kind == SERIAL_UNIX && c->out_fd >= 0))
        close(c->out_fd);
    if (c->listen_fd >= 0)
        close(c->listen_fd);
    if (c->path != NULL) {
        unlink(c->path);
        free(c->path);
    }
    if (c->wake_fd >= 0)
        close(c->wake_fd);
    free(c->out_buf);
    pthread_mutex_destroy(&c->out_lock);
}
