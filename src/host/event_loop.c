/* SPDX-License-Identifier: BSD-2-Clause */
#include "host/event_loop.h"

#include <errno.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <unistd.h>

static uint32_t to_epoll(uint32_t events)
{
    return ((events & EVENT_IN) ? EPOLLIN : 0u) | ((events & EVENT_OUT) ? EPOLLOUT : 0u);
}

int event_loop_init(struct event_loop *loop)
{
    for (size_t i = 0; i < EVENT_LOOP_MAX; i++)
        loop->sources[i].fd = -1;
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    return loop->epfd < 0 ? -errno : 0;
}

void event_loop_destroy(struct event_loop *loop)
{
    if (loop->epfd >= 0)
        close(loop->epfd);
    loop->epfd = -1;
}

static struct event_source *find(struct event_loop *loop, int fd)
{
    for (size_t i = 0; i < EVENT_LOOP_MAX; i++) {
        if (loop->sources[i].fd == fd)
            return &loop->sources[i];
    }
    return NULL;
}

int event_loop_add(struct event_loop *loop, int fd, uint32_t events, event_cb cb, void *opaque)
{
    if (fd < 0 || find(loop, fd) != NULL)
        return -EINVAL;
    struct event_source *src = find(loop, -1);
    if (src == NULL)
        return -ENOSPC;
    struct epoll_event ev = {.events = to_epoll(events), .data.ptr = src};
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
        return -errno;
    *src = (struct event_source){.fd = fd, .cb = cb, .opaque = opaque};
    return 0;
}

int event_loop_modify(struct event_loop *loop, int fd, uint32_t events)
{
    struct event_source *src = find(loop, fd);
    if (src == NULL || fd < 0)
        return -ENOENT;
    struct epoll_event ev = {.events = to_epoll(events), .data.ptr = src};
    return epoll_ctl(loop->epfd, EPOLL_CTL_MOD, fd, &ev) != 0 ? -errno : 0;
}

int event_loop_remove(struct event_loop *loop, int fd)
{
    struct event_source *src = find(loop, fd);
    if (src == NULL || fd < 0)
        return -ENOENT;
    (void)epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL);
    src->fd = -1;
    return 0;
}

int event_loop_run_once(struct event_loop *loop, int timeout_ms)
{
    struct epoll_event evs[16];
    int n = epoll_wait(loop->epfd, evs, 16, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    for (int i = 0; i < n; i++) {
        struct event_source *src = evs[i].data.ptr;
        /* A callback earlier in this batch may have removed this source. */
        if (src->fd < 0)
            continue;
        uint32_t bits = ((evs[i].events & EPOLLIN) ? EVENT_IN : 0u) |
                        ((evs[i].events & EPOLLOUT) ? EVENT_OUT : 0u) |
                        ((evs[i].events & (EPOLLERR | EPOLLHUP)) ? EVENT_ERR : 0u);
        src->cb(src->opaque, bits);
    }
    return n;
}
