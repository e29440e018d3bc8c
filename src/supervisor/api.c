/* SPDX-License-Identifier: BSD-2-Clause */
#include "supervisor/api.h"

#include "core/log.h"
#include "host/unix_sock.h"
#include "supervisor/desc.h"
#include "supervisor/plan.h"

#include <errno.h>
#include <json-c/json.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* How long a VM's own control socket may take to give its counters: a VMM answers from
 * its event loop at once; one that does not is reported as not answering. */
#define COUNTERS_TIMEOUT_MS 500
/* Largest counters reply taken from a VMM. */
#define COUNTERS_MAX 16384

/** One connected client. */
struct api_client {
    struct api *a;           /**< Its API. */
    int fd;                  /**< The connection. */
    char buf[API_LINE_MAX];  /**< A request line being received. */
    size_t used;             /**< Bytes in @c buf. */
    struct sv_comp *console; /**< In console mode: the VM whose console this is. */
};

void api_default_run_dir(char *buf, size_t len)
{
    const char *env = getenv("BULKHEAD_RUN_DIR");
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    if (env != NULL && env[0] != '\0')
        snprintf(buf, len, "%s", env);
    else if (geteuid() == 0)
        snprintf(buf, len, "/run/bulkhead");
    else if (xdg != NULL && xdg[0] == '/')
        snprintf(buf, len, "%s/bulkhead", xdg);
    else
        snprintf(buf, len, "/tmp/bulkhead-%u", (unsigned)geteuid());
}

static void client_close(struct api_client *cl)
{
    struct api *a = cl->a;
    if (cl->console != NULL && cl->console->viewer_fd == cl->fd)
        cl->console->viewer_fd = -1;
    event_loop_remove(&a->s->loop, cl->fd);
    close(cl->fd);
    for (unsigned i = 0; i < API_MAX_CLIENTS; i++)
        if (a->clients[i] == cl)
            a->clients[i] = NULL;
    free(cl);
}

/* One reply line; a client that cannot take it at once is dropped (returns false). */
static bool reply(struct api_client *cl, json_object *o)
{
    const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
    size_t n = strlen(text);
    char *line = malloc(n + 1);
    bool ok = false;
    if (line != NULL) {
        memcpy(line, text, n + 1); /* its NUL becomes the newline */
        line[n] = '\n';
        ok = send(cl->fd, line, n + 1, MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)(n + 1);
        free(line);
    }
    json_object_put(o);
    if (!ok)
        client_close(cl);
    return ok;
}

static json_object *error_obj(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static json_object *error_obj(const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "ok", json_object_new_boolean(0));
    json_object_object_add(o, "error", json_object_new_string(msg));
    return o;
}

static json_object *ok_obj(void)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "ok", json_object_new_boolean(1));
    return o;
}

/* A VM's device counters, from its own control socket ("counters"), a string per line. */
static json_object *vm_counters(const struct sv_comp *c)
{
    json_object *arr = json_object_new_array();
    int fd = unix_connect(c->pc.control, 0);
    if (fd < 0)
        return arr;
    char *buf = malloc(COUNTERS_MAX);
    size_t used = 0;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (buf != NULL && send(fd, "counters\n", 9, MSG_NOSIGNAL) == 9) {
        for (;;) {
            struct timespec t;
            clock_gettime(CLOCK_MONOTONIC, &t);
            long spent = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
            struct pollfd p = {.fd = fd, .events = POLLIN};
            if (spent >= COUNTERS_TIMEOUT_MS ||
                poll(&p, 1, (int)(COUNTERS_TIMEOUT_MS - spent)) <= 0)
                break;
            ssize_t n = read(fd, buf + used, COUNTERS_MAX - 1 - used);
            if (n <= 0)
                break;
            used += (size_t)n;
            if (used >= COUNTERS_MAX - 1)
                break;
        }
    }
    close(fd);
    if (buf == NULL)
        return arr;
    buf[used] = '\0';
    /* The first line is "ok"; the rest are counters. */
    char *save = NULL;
    bool first = true;
    for (char *line = strtok_r(buf, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        if (first && strcmp(line, "ok") == 0) {
            first = false;
            continue;
        }
        first = false;
        json_object_array_add(arr, json_object_new_string(line));
    }
    free(buf);
    return arr;
}

/* host-cpus as the description writes it: "0-1,4". */
static void format_cpus(const uint64_t *set, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (unsigned cpu = 0; cpu < DESC_MAX_HOST_CPUS && used < len; cpu++) {
        if (!(set[cpu / 64] & (1ull << (cpu % 64))))
            continue;
        unsigned last = cpu;
        while (last + 1 < DESC_MAX_HOST_CPUS &&
               (set[(last + 1) / 64] & (1ull << ((last + 1) % 64))))
            last++;
        int n = last == cpu
                    ? snprintf(buf + used, len - used, "%s%u", used ? "," : "", cpu)
                    : snprintf(buf + used, len - used, "%s%u-%u", used ? "," : "", cpu, last);
        used += n > 0 ? (size_t)n : 0;
        cpu = last;
    }
}

/* The VM's CPU placement and budget, as asked for, and whether the budget holds. */
static void add_cpu_limits(json_object *o, const struct supervisor *s, const struct sv_comp *c)
{
    if (c->pc.host_cpus_given) {
        char cpus[256];
        format_cpus(c->pc.host_cpus, cpus, sizeof(cpus));
        json_object_object_add(o, "host_cpus", json_object_new_string(cpus));
    }
    bool asks = c->pc.cpu_max_milli != 0 || c->pc.cpu_weight != CG_DEFAULT_WEIGHT;
    if (c->pc.cpu_max_milli != 0)
        json_object_object_add(o, "cpu_max",
                               json_object_new_double((double)c->pc.cpu_max_milli / 1000.0));
    if (c->pc.cpu_weight != CG_DEFAULT_WEIGHT)
        json_object_object_add(o, "cpu_weight", json_object_new_int((int)c->pc.cpu_weight));
    if (asks && s->cg.tried && !s->cg.cpu)
        json_object_object_add(o, "cpu_limits_not_applied", json_object_new_string(s->cg.why));
}

static json_object *comp_obj(struct supervisor *s, const struct sv_comp *c, bool detail)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "name", json_object_new_string(c->pc.name));
    json_object_object_add(o, "kind", json_object_new_string(c->pc.is_vm ? "vm" : "backend"));
    json_object_object_add(o, "type", json_object_new_string(c->pc.type));
    json_object_object_add(o, "state", json_object_new_string(sv_state_name(c->state)));
    json_object_object_add(o, "pid", json_object_new_int(c->pid > 0 ? (int)c->pid : 0));
    double up = c->pid > 0 ? (double)(s->now_ns - c->started_ns) / 1e9 : 0;
    json_object_object_add(o, "uptime_s", json_object_new_double(up));
    json_object_object_add(o, "restarts", json_object_new_int64((int64_t)c->restarts));
    json_object_object_add(o, "cpu_s", json_object_new_double((double)sv_cpu_ns(c) / 1e9));
    add_cpu_limits(o, s, c);
    json_object_object_add(o, "last_exit", json_object_new_string(c->last_exit));
    if (detail && c->pc.is_vm && c->pid > 0)
        json_object_object_add(o, "counters", vm_counters(c));
    return o;
}

/* `apply FILE`: bring the running system to an edited description (api.h, docs/api.md). */
static json_object *apply(struct api *a, const char *file)
{
    struct supervisor *s = a->s;
    struct desc_host host;
    (void)desc_host_probe(&host);
    struct desc *d = NULL;
    int r = desc_load(file, &host, &d);
    if (r != 0) {
        json_object *o;
        if (d != NULL && d->nr_errors > 0) {
            char *text = NULL;
            size_t len = 0;
            FILE *f = open_memstream(&text, &len);
            if (f != NULL) {
                desc_print_errors(d, f);
                fclose(f);
            }
            o = error_obj("%s is not a valid description (nothing was changed)", file);
            json_object *errs = json_object_new_array();
            char *save = NULL;
            for (char *l = text != NULL ? strtok_r(text, "\n", &save) : NULL; l != NULL;
                 l = strtok_r(NULL, "\n", &save))
                json_object_array_add(errs, json_object_new_string(l));
            json_object_object_add(o, "errors", errs);
            free(text);
        } else {
            o = error_obj("%s: %s (nothing was changed)", file, strerror(-r));
        }
        json_object_object_add(o, "invalid", json_object_new_boolean(1));
        desc_free(d);
        return o;
    }
    struct plan p;
    char err[256];
    r = plan_build(d, s->run_dir, a->bin_dir, &p, err, sizeof(err));
    desc_free(d);
    if (r != 0) {
        plan_free(&p);
        json_object *o = error_obj("%s: %s (nothing was changed)", file, err);
        json_object_object_add(o, "invalid", json_object_new_boolean(1));
        return o;
    }
    json_object *added = json_object_new_array(), *removed = json_object_new_array();
    json_object *changed = json_object_new_array(), *same = json_object_new_array();
    /* Removed: in the system, not in the new plan. */
    for (unsigned i = 0; i < s->nr; i++) {
        struct sv_comp *c = s->c[i];
        if (c == NULL || c->removed || c->retiring || plan_find(&p, c->pc.name) >= 0)
            continue;
        c->retiring = true;
        (void)sv_stop(s, c, SV_AFTER_REMOVE);
        json_object_array_add(removed, json_object_new_string(c->pc.name));
    }
    for (unsigned i = 0; i < p.nr_comps; i++) {
        struct sv_comp *old = sv_find(s, p.comps[i].name);
        if (old != NULL && plan_comp_same(&old->pc, &p.comps[i])) {
            json_object_array_add(same, json_object_new_string(old->pc.name));
            continue;
        }
        unsigned old_uid = 0;
        if (old != NULL) {
            /* Changed: the old one stops, the new one starts once it has ended. */
            old->retiring = true;
            old_uid = old->uid;
            (void)sv_stop(s, old, SV_AFTER_REMOVE);
        }
        struct sv_comp *c = NULL;
        const char *name = p.comps[i].name;
        if ((r = sv_add(s, &p.comps[i], &c)) != 0) {
            log_error("apply: cannot add %s: %s", name, strerror(-r));
            continue;
        }
        c->replaces_uid = old_uid;
        c->state = SV_WAITING;
        sv_mux_add(s, c);
        json_object_array_add(old != NULL ? changed : added, json_object_new_string(c->pc.name));
    }
    /* Every component's dependencies now name the components of the new plan; the
     * serial links are the new plan's. */
    sv_resolve_deps(s, &p, 0, p.nr_comps);
    if (sv_set_links(s, &p) != 0)
        log_error("apply: out of memory for the serial links");
    plan_free(&p);
    json_object *o = ok_obj();
    json_object_object_add(o, "added", added);
    json_object_object_add(o, "removed", removed);
    json_object_object_add(o, "restarted", changed);
    json_object_object_add(o, "unchanged", same);
    log_info("apply %s: %zu added, %zu removed, %zu restarted, %zu unchanged", file,
             json_object_array_length(added), json_object_array_length(removed),
             json_object_array_length(changed), json_object_array_length(same));
    return o;
}

/* One request; false when the client is gone. */
static bool handle(struct api_client *cl, const char *line)
{
    struct api *a = cl->a;
    struct supervisor *s = a->s;
    json_object *req = json_tokener_parse(line);
    json_object *v;
    if (req == NULL || !json_object_is_type(req, json_type_object)) {
        json_object_put(req);
        return reply(cl, error_obj("a request is one JSON object per line"));
    }
    const char *cmd = json_object_object_get_ex(req, "cmd", &v) ? json_object_get_string(v) : NULL;
    const char *name =
        json_object_object_get_ex(req, "name", &v) ? json_object_get_string(v) : NULL;
    const char *file =
        json_object_object_get_ex(req, "file", &v) ? json_object_get_string(v) : NULL;
    json_object *out = NULL;
    struct sv_comp *c = name != NULL ? sv_find(s, name) : NULL;
    s->now_ns = 0;
    {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        s->now_ns = (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
    }
    bool needs_name = cmd != NULL && (strcmp(cmd, "start") == 0 || strcmp(cmd, "stop") == 0 ||
                                      strcmp(cmd, "restart") == 0 || strcmp(cmd, "kill") == 0 ||
                                      strcmp(cmd, "console") == 0);
    if (cmd == NULL) {
        out = error_obj("the request has no \"cmd\"");
    } else if ((needs_name || (strcmp(cmd, "status") == 0 && name != NULL)) && c == NULL) {
        out = error_obj("no component named '%s'", name != NULL ? name : "");
    } else if (strcmp(cmd, "list") == 0 || strcmp(cmd, "status") == 0) {
        out = ok_obj();
        json_object *arr = json_object_new_array();
        for (unsigned i = 0; i < s->nr; i++) {
            struct sv_comp *k = s->c[i];
            if (k == NULL || k->removed || (c != NULL && k != c))
                continue;
            json_object_array_add(arr, comp_obj(s, k, strcmp(cmd, "status") == 0 && c != NULL));
        }
        json_object_object_add(out, "components", arr);
        json_object_object_add(out, "stopping", json_object_new_boolean(s->down));
    } else if (strcmp(cmd, "start") == 0) {
        int r = sv_start(s, c);
        out = r == 0 ? ok_obj() : error_obj("%s is already running or about to", name);
    } else if (strcmp(cmd, "stop") == 0) {
        int r = sv_stop(s, c, SV_AFTER_NOTHING);
        out = r == 0 ? ok_obj() : error_obj("%s is not running", name);
    } else if (strcmp(cmd, "restart") == 0) {
        (void)sv_stop(s, c, SV_AFTER_START);
        out = ok_obj();
    } else if (strcmp(cmd, "kill") == 0) {
        int r = sv_kill(s, c);
        out = r == 0 ? ok_obj() : error_obj("%s is not running", name);
    } else if (strcmp(cmd, "down") == 0) {
        out = ok_obj();
        json_object_put(req);
        bool alive = reply(cl, out);
        sv_down(s);
        return alive;
    } else if (strcmp(cmd, "apply") == 0) {
        out = file != NULL ? apply(a, file) : error_obj("apply needs \"file\"");
    } else if (strcmp(cmd, "console") == 0) {
        if (!c->pc.is_vm) {
            out = error_obj("%s is not a VM", name);
        } else if (c->viewer_fd >= 0) {
            out = error_obj("%s's console is in use by another client", name);
        } else {
            cl->console = c;
            c->viewer_fd = cl->fd;
            out = ok_obj();
        }
    } else {
        out = error_obj("unknown command '%s'", cmd);
    }
    json_object_put(req);
    return reply(cl, out);
}

static void on_client(void *opaque, uint32_t events)
{
    struct api_client *cl = opaque;
    (void)events;
    if (cl->console != NULL) {
        uint8_t buf[1024];
        ssize_t n = read(cl->fd, buf, sizeof(buf));
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n <= 0) {
            client_close(cl);
            return;
        }
        (void)sv_console_write(cl->console, buf, (size_t)n);
        return;
    }
    ssize_t n = read(cl->fd, cl->buf + cl->used, sizeof(cl->buf) - 1 - cl->used);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        client_close(cl);
        return;
    }
    cl->used += (size_t)n;
    for (;;) {
        char *nl = memchr(cl->buf, '\n', cl->used);
        if (nl == NULL)
            break;
        *nl = '\0';
        size_t taken = (size_t)(nl - cl->buf) + 1;
        if (!handle(cl, cl->buf))
            return;
        memmove(cl->buf, cl->buf + taken, cl->used - taken);
        cl->used -= taken;
        if (cl->console != NULL) {
            /* Bytes after the console request are already typing. */
            if (cl->used > 0)
                (void)sv_console_write(cl->console, (const uint8_t *)cl->buf, cl->used);
            cl->used = 0;
            return;
        }
    }
    if (cl->used >= sizeof(cl->buf) - 1)
        client_close(cl);
}

static void on_accept(void *opaque, uint32_t events)
{
    struct api *a = opaque;
    (void)events;
    int fd = accept4(a->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0)
        return;
    unsigned slot = 0;
    while (slot < API_MAX_CLIENTS && a->clients[slot] != NULL)
        slot++;
    struct api_client *cl = slot < API_MAX_CLIENTS ? calloc(1, sizeof(*cl)) : NULL;
    if (cl == NULL) {
        close(fd);
        return;
    }
    cl->a = a;
    cl->fd = fd;
    if (event_loop_add(&a->s->loop, fd, EVENT_IN, on_client, cl) != 0) {
        close(fd);
        free(cl);
        return;
    }
    a->clients[slot] = cl;
}

int api_listen(struct api *a, struct supervisor *s, const char *bin_dir)
{
    memset(a, 0, sizeof(*a));
    a->s = s;
    a->listen_fd = -1;
    snprintf(a->bin_dir, sizeof(a->bin_dir), "%s", bin_dir);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    int n = snprintf(a->path, sizeof(a->path), "%s/control.sock", s->run_dir);
    if (n < 0 || (size_t)n >= sizeof(a->path) || (size_t)n >= sizeof(addr.sun_path))
        return -ENAMETOOLONG;
    memcpy(addr.sun_path, a->path, (size_t)n + 1);
    /* A socket someone answers on belongs to a running supervisor. */
    int probe = unix_connect(a->path, 0);
    if (probe >= 0) {
        close(probe);
        return -EADDRINUSE;
    }
    unlink(a->path);
    a->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (a->listen_fd < 0)
        return -errno;
    mode_t old = umask(0077);
    int r = bind(a->listen_fd, (struct sockaddr *)&addr, sizeof(addr));
    umask(old);
    if (r != 0 || listen(a->listen_fd, 8) != 0)
        return -errno;
    return event_loop_add(&s->loop, a->listen_fd, EVENT_IN, on_accept, a);
}

void api_close(struct api *a)
{
    for (unsigned i = 0; i < API_MAX_CLIENTS; i++)
        if (a->clients[i] != NULL)
            client_close(a->clients[i]);
    if (a->listen_fd >= 0) {
        event_loop_remove(&a->s->loop, a->listen_fd);
        close(a->listen_fd);
        unlink(a->path);
        a->listen_fd = -1;
    }
}
