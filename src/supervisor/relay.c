/* SPDX-License-Identifier: BSD-2-Clause */
#include "supervisor/relay.h"

#include "core/log.h"
#include "host/unix_sock.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

void relay_init(struct relay *r, const struct plan_link *link, struct event_loop *loop)
{
    memset(r, 0, sizeof(*r));
    r->link = *link;
    r->loop = loop;
    for (unsigned i = 0; i < 2; i++) {
        r->end[i].fd = -1;
        r->cb[i] = (struct relay_cb){.r = r, .side = i};
    }
}

void relay_close(struct relay *r)
{
    for (unsigned i = 0; i < 2; i++) {
        struct relay_end *e = &r->end[i];
        if (e->fd >= 0) {
            event_loop_remove(r->loop, e->fd);
            close(e->fd);
        }
        e->fd = -1;
        e->len = e->off = 0;
    }
    if (r->connected)
        log_info("serial link %s: down (%llu and %llu bytes relayed)", r->link.name,
                 (unsigned long long)r->end[0].bytes, (unsigned long long)r->end[1].bytes);
    r->connected = false;
}

/* The events each end waits for: readable while its own buffer is empty, writable while
 * the other end's buffer holds bytes for it. */
static void update(struct relay *r)
{
    for (unsigned i = 0; i < 2; i++) {
        uint32_t ev = 0;
        if (r->end[i].len == 0)
            ev |= EVENT_IN;
        if (r->end[1 - i].len > r->end[1 - i].off)
            ev |= EVENT_OUT;
        (void)event_loop_modify(r->loop, r->end[i].fd, ev);
    }
}

/* Deliver what end @p from holds to the other end; false when the link broke. */
static bool flush(struct relay *r, unsigned from)
{
    struct relay_end *src = &r->end[from];
    int dst = r->end[1 - from].fd;
    while (src->off < src->len) {
        ssize_t n =
            send(dst, src->buf + src->off, src->len - src->off, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return true;
        if (n <= 0)
            return false;
        src->off += (size_t)n;
        src->bytes += (uint64_t)n;
    }
    src->len = src->off = 0;
    return true;
}

static void on_end(void *opaque, uint32_t events)
{
    struct relay_cb *cb = opaque;
    struct relay *r = cb->r;
    unsigned side = cb->side;
    struct relay_end *e = &r->end[side];
    bool ok = true;
    if ((events & EVENT_OUT) != 0)
        ok = flush(r, 1 - side);
    if (ok && (events & (EVENT_IN | EVENT_ERR)) != 0 && e->len == 0) {
        ssize_t n = recv(e->fd, e->buf, sizeof(e->buf), MSG_DONTWAIT);
        if (n > 0) {
            e->len = (size_t)n;
            e->off = 0;
            ok = flush(r, side);
        } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
            ok = false;
        }
    }
    if (!ok) {
        relay_close(r);
        return;
    }
    update(r);
}

void relay_tick(struct relay *r)
{
    if (r->connected)
        return;
    struct stat st;
    for (unsigned i = 0; i < 2; i++)
        if (stat(r->link.path[i], &st) != 0 || !S_ISSOCK(st.st_mode))
            return;
    for (unsigned i = 0; i < 2; i++) {
        int fd = unix_connect(r->link.path[i], 1);
        if (fd < 0 || event_loop_add(r->loop, fd, EVENT_IN, on_end, &r->cb[i]) != 0) {
            if (fd >= 0)
                close(fd);
            relay_close(r);
            return;
        }
        r->end[i].fd = fd;
    }
    r->connected = true;
    log_info("serial link %s: up", r->link.name);
}
