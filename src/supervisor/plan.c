/* SPDX-License-Identifier: BSD-2-Clause */
#include "supervisor/plan.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* bulkhead-net queue pairs per port: as many as the busiest VM on it has vCPUs (each VM's
 * VMM asks for one pair per vCPU and takes what the port offers), at most this many. */
#define PLAN_MAX_NET_PAIRS 8
/* Seconds a backend gets between SIGTERM and SIGKILL. */
#define PLAN_BACKEND_STOP_TIMEOUT 5
/* A backend's cgroup cpu.weight: the kernel's default, the same as a VM without
 * cpu-weight. */
#define PLAN_DEFAULT_CPU_WEIGHT 100
/* A VM's grace beyond its own shutdown timeout: bulkhead-vmm stops itself hard at its
 * --shutdown-timeout, the supervisor kills it only if even that did not happen. */
#define PLAN_VM_STOP_GRACE 5

/** The build of one plan: the first error wins. */
struct builder {
    const struct desc *d; /**< The description. */
    struct plan *p;       /**< The plan being made. */
    const char *bin_dir;  /**< Where the programs are. */
    char *err;            /**< The first error's line. */
    size_t errlen;        /**< Room in @c err. */
    int r;                /**< The first error, or 0. */
};

static void bfail(struct builder *b, int r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void bfail(struct builder *b, int r, const char *fmt, ...)
{
    if (b->r != 0)
        return;
    b->r = r;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->err, b->errlen, fmt, ap);
    va_end(ap);
}

/* Append a formatted word to a component's command line. */
static void arg(struct builder *b, struct plan_comp *c, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void arg(struct builder *b, struct plan_comp *c, const char *fmt, ...)
{
    if (b->r != 0)
        return;
    if (c->argc >= PLAN_MAX_ARGS) {
        bfail(b, -E2BIG, "%s: the command line has more than %u words", c->name, PLAN_MAX_ARGS);
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&c->argv[c->argc], fmt, ap);
    va_end(ap);
    if (n < 0) {
        c->argv[c->argc] = NULL;
        bfail(b, -ENOMEM, "out of memory");
        return;
    }
    c->argc++;
}

/* A component's sockets live in a directory of its own, RUN/NAME/, so its sandbox can be
 * given that directory and the ones of the components it links to, and nothing else. */
static void path_of(struct builder *b, char *dst, const char *name, const char *file)
{
    int n = snprintf(dst, PLAN_PATH_MAX, "%s/%s/%s", b->p->run_dir, name, file);
    if (n < 0 || n >= PLAN_PATH_MAX)
        bfail(b, -ENAMETOOLONG, "the socket path %s/%s/%s is longer than %u bytes", b->p->run_dir,
              name, file, PLAN_PATH_MAX - 1);
}

/* Show @p path (or, with @p parent, the directory it is in) in the component's sandbox. */
static void bind(struct builder *b, struct plan_comp *c, const char *path, bool parent, bool rw,
                 bool dev)
{
    if (b->r != 0 || path == NULL)
        return;
    if (c->nr_binds >= PLAN_MAX_BINDS) {
        bfail(b, -E2BIG, "%s: more than %u host paths to show it", c->name, PLAN_MAX_BINDS);
        return;
    }
    struct plan_bind *pb = &c->binds[c->nr_binds];
    int n = snprintf(pb->path, sizeof(pb->path), "%s", path);
    if (n < 0 || n >= (int)sizeof(pb->path)) {
        bfail(b, -ENAMETOOLONG, "%s: the path %s is too long", c->name, path);
        return;
    }
    if (parent) {
        char *slash = strrchr(pb->path, '/');
        if (slash == NULL)
            snprintf(pb->path, sizeof(pb->path), ".");
        else if (slash == pb->path)
            slash[1] = '\0';
        else
            *slash = '\0';
    }
    for (unsigned i = 0; i < c->nr_binds; i++)
        if (strcmp(c->binds[i].path, pb->path) == 0) {
            c->binds[i].rw |= rw;
            c->binds[i].dev |= dev;
            return;
        }
    pb->rw = rw;
    pb->dev = dev;
    c->nr_binds++;
}

/* Every program of ours: its directory (the VMM starts its own backends from there) and
 * its own socket directory. */
static void own_binds(struct builder *b, struct plan_comp *c)
{
    int n = snprintf(c->own_dir, sizeof(c->own_dir), "%s/%s", b->p->run_dir, c->name);
    if (n < 0 || n >= (int)sizeof(c->own_dir))
        bfail(b, -ENAMETOOLONG, "%s: the run directory path is too long", c->name);
    bind(b, c, b->bin_dir, false, false, false);
    bind(b, c, c->own_dir, false, true, false);
}

/* A path of the description (relative ones are relative to the caller's directory, as
 * desc.c joined them), made absolute and clean by its text alone: "." and empty components
 * go, "x/.." takes x with it. Components run elsewhere, and the sandbox's mount points
 * must be clean absolute paths. Returns a string in @p buf, or NULL for NULL. */
static const char *abs_path(struct builder *b, const char *path, char *buf, size_t len)
{
    if (path == NULL)
        return NULL;
    char raw[PLAN_PATH_MAX * 4];
    char cwd[PLAN_PATH_MAX * 2] = "";
    if (path[0] != '/' && getcwd(cwd, sizeof(cwd)) == NULL)
        snprintf(cwd, sizeof(cwd), "/");
    int n = snprintf(raw, sizeof(raw), "%s/%s", cwd, path);
    if (n < 0 || (size_t)n >= sizeof(raw)) {
        bfail(b, -ENAMETOOLONG, "the path %s is too long", path);
        return NULL;
    }
    size_t o = 0;
    const char *in = raw;
    while (*in != '\0') {
        while (*in == '/')
            in++;
        size_t k = strcspn(in, "/");
        if (k == 0 || (k == 1 && in[0] == '.')) {
            /* nothing */
        } else if (k == 2 && in[0] == '.' && in[1] == '.') {
            while (o > 0 && buf[--o] != '/')
                ;
        } else {
            if (o + 1 + k >= len) {
                bfail(b, -ENAMETOOLONG, "the path %s is too long", path);
                return NULL;
            }
            buf[o++] = '/';
            memcpy(buf + o, in, k);
            o += k;
        }
        in += k;
    }
    if (o == 0)
        buf[o++] = '/';
    buf[o] = '\0';
    return buf;
}

static const char *mode_name(enum desc_mem_mode m)
{
    return m == DESC_MEM_SHARED ? "shared" : "isolated";
}

/* The NICs linked to backend @p bi, in port order: their VM and device. */
static unsigned nic_users(const struct desc *d, unsigned bi, unsigned vm_of[],
                          unsigned max_vcpus[1])
{
    unsigned n = 0;
    max_vcpus[0] = 1;
    for (unsigned port = 0; port < DESC_MAX_SWITCH_PORTS; port++) {
        bool found = false;
        for (unsigned v = 0; v < d->nr_vms && !found; v++) {
            for (unsigned i = 0; i < d->vms[v].nr_devices; i++) {
                const struct desc_device *dev = &d->vms[v].devices[i];
                if (dev->kind == DESC_DEV_NIC && dev->backend == (int)bi && dev->port == port) {
                    vm_of[n++] = v;
                    if (d->vms[v].vcpus > max_vcpus[0])
                        max_vcpus[0] = d->vms[v].vcpus;
                    found = true;
                    break;
                }
            }
        }
        if (!found)
            break;
    }
    return n;
}

static void plan_backend(struct builder *b, unsigned bi, struct plan_comp *c)
{
    const struct desc_backend *be = &b->d->backends[bi];
    snprintf(c->name, sizeof(c->name), "%s", be->name);
    c->index = bi;
    c->restart = be->restart;
    c->stop_timeout = PLAN_BACKEND_STOP_TIMEOUT;
    c->cpu_weight = PLAN_DEFAULT_CPU_WEIGHT;
    if (be->type != DESC_BACKEND_EXTERNAL)
        own_binds(b, c);
    switch (be->type) {
    case DESC_BACKEND_BLK: {
        c->type = "blk";
        char img[PLAN_PATH_MAX * 2];
        const char *image = abs_path(b, be->image, img, sizeof(img));
        if (image == NULL)
            return;
        snprintf(c->image, sizeof(c->image), "%s", image);
        c->create_bytes = be->create_bytes;
        bind(b, c, image, false, !be->readonly, false);
        c->nr_sockets = 1;
        path_of(b, c->sockets[0], be->name, "sock");
        arg(b, c, "%s/bulkhead-blk", b->bin_dir);
        arg(b, c, "--socket");
        arg(b, c, "%s", c->sockets[0]);
        arg(b, c, "--image");
        arg(b, c, "%s", image);
        arg(b, c, "--queues");
        arg(b, c, "%u", be->queues != 0 ? be->queues : 1);
        if (be->readonly)
            arg(b, c, "--readonly");
        break;
    }
    case DESC_BACKEND_SWITCH:
    case DESC_BACKEND_P2P: {
        c->type = be->type == DESC_BACKEND_P2P ? "p2p" : "switch";
        unsigned vm_of[DESC_MAX_SWITCH_PORTS], max_vcpus;
        unsigned n = nic_users(b->d, bi, vm_of, &max_vcpus);
        arg(b, c, "%s/bulkhead-net", b->bin_dir);
        arg(b, c, "--mode");
        arg(b, c, "%s", c->type);
        for (unsigned i = 0; i < n && b->r == 0; i++) {
            char suffix[24];
            snprintf(suffix, sizeof(suffix), "port%u.sock", i);
            path_of(b, c->sockets[i], be->name, suffix);
            arg(b, c, "--port");
            arg(b, c, "%s", c->sockets[i]);
        }
        c->nr_sockets = n;
        for (unsigned i = 0; i < be->nr_taps; i++) {
            arg(b, c, "--tap");
            arg(b, c, "%s", be->taps[i]);
        }
        c->has_taps = be->nr_taps > 0;
        if (c->has_taps)
            bind(b, c, "/dev/net/tun", false, true, true);
        arg(b, c, "--queue-pairs");
        arg(b, c, "%u", max_vcpus < PLAN_MAX_NET_PAIRS ? max_vcpus : PLAN_MAX_NET_PAIRS);
        break;
    }
    case DESC_BACKEND_EXTERNAL:
        c->type = "external";
        c->external = true;
        if (snprintf(c->own_dir, sizeof(c->own_dir), "%s/%s", b->p->run_dir, c->name) >=
            (int)sizeof(c->own_dir))
            bfail(b, -ENAMETOOLONG, "%s: the run directory path is too long", c->name);
        c->nr_sockets = 1;
        path_of(b, c->sockets[0], be->name, "sock");
        for (unsigned i = 0; i < be->argc && b->r == 0; i++) {
            /* Each "{socket}" in a word becomes the socket's path. */
            const char *w = be->argv[i];
            char out[4096];
            size_t o = 0;
            while (*w != '\0' && o < sizeof(out) - 1) {
                if (strncmp(w, "{socket}", 8) == 0) {
                    o += (size_t)snprintf(out + o, sizeof(out) - o, "%s", c->sockets[0]);
                    w += 8;
                } else {
                    out[o++] = *w++;
                }
            }
            if (o >= sizeof(out) - 1) {
                bfail(b, -E2BIG, "%s: a word of the command is too long", c->name);
                break;
            }
            out[o] = '\0';
            arg(b, c, "%s", out);
        }
        return; /* no log level of ours */
    }
    arg(b, c, "--log-level");
    arg(b, c, "info");
}

/* The socket a VM's device connects to: its backend's, or, for a NIC, its port's. */
static const char *device_socket(struct builder *b, const struct desc_device *dev)
{
    const struct plan_comp *bc = &b->p->comps[dev->backend];
    if (dev->kind == DESC_DEV_NIC)
        return dev->port < bc->nr_sockets ? bc->sockets[dev->port] : "";
    return bc->sockets[0];
}

static void add_dep(struct plan_comp *c, unsigned dep)
{
    for (unsigned i = 0; i < c->nr_deps; i++)
        if (c->deps[i] == dep)
            return;
    if (c->nr_deps < PLAN_MAX_DEPS)
        c->deps[c->nr_deps++] = dep;
}

static void plan_device(struct builder *b, struct plan_comp *c, const struct desc_vm *vm,
                        const struct desc_device *dev)
{
    static const char *const opt[] = {
        [DESC_DEV_DISK] = "--disk",       [DESC_DEV_NIC] = "--net", [DESC_DEV_VSOCK] = "--vsock",
        [DESC_DEV_CONSOLE] = "--console", [DESC_DEV_RNG] = "--rng", [DESC_DEV_FS] = "--fs",
    };
    /* A device on a supervised backend never gives up on it (restarts=0): the backend's
     * own restart policy decides whether it comes back, and the VMM reconnects when it
     * does. A device's own program (vsock, console, rng) keeps the VMM's default. */
    char common[80];
    snprintf(common, sizeof(common), "mode=%s,poll=%u%s", mode_name(dev->mode), dev->poll_us,
             dev->backend >= 0 ? ",restarts=0" : "");
    arg(b, c, "%s", opt[dev->kind]);
    if (dev->backend >= 0) {
        add_dep(c, (unsigned)dev->backend);
        const char *sock = device_socket(b, dev);
        bind(b, c, sock, true, false, false);
        switch (dev->kind) {
        case DESC_DEV_DISK:
            arg(b, c, "socket=%s,%s,timeout=%u", sock, common, dev->timeout);
            break;
        case DESC_DEV_NIC:
            if (dev->mac_given)
                arg(b, c, "socket=%s,%s,mac=%02x:%02x:%02x:%02x:%02x:%02x", sock, common,
                    dev->mac[0], dev->mac[1], dev->mac[2], dev->mac[3], dev->mac[4], dev->mac[5]);
            else
                arg(b, c, "socket=%s,%s", sock, common);
            break;
        case DESC_DEV_FS:
            arg(b, c, "socket=%s,%s,tag=%s", sock, common, dev->tag);
            break;
        default:
            arg(b, c, "socket=%s,%s", sock, common);
            break;
        }
        return;
    }
    /* The device's own program, which bulkhead-vmm starts. */
    c->spawns = true;
    switch (dev->kind) {
    case DESC_DEV_VSOCK: {
        char ub[PLAN_PATH_MAX * 2];
        const char *uds = abs_path(b, dev->uds, ub, sizeof(ub));
        if (uds == NULL)
            return;
        bind(b, c, uds, true, true, false);
        arg(b, c, "cid=%llu,uds=%s,%s", (unsigned long long)dev->cid, uds, common);
        break;
    }
    case DESC_DEV_RNG:
        arg(b, c, "getrandom,%s", common);
        break;
    case DESC_DEV_CONSOLE: {
        char out[PLAN_PATH_MAX + 16];
        char lb[PLAN_PATH_MAX * 2];
        const char *log = abs_path(b, dev->route.log, lb, sizeof(lb));
        if (log != NULL) {
            bind(b, c, log, true, true, false);
            snprintf(out, sizeof(out), "file:%s", log);
        } else {
            char p[PLAN_PATH_MAX];
            path_of(b, p, vm->name, "hvc0.sock");
            snprintf(out, sizeof(out), "unix:%s", p);
        }
        char ports[1024] = "";
        size_t used = 0;
        for (unsigned i = 0; i < dev->nr_ports; i++) {
            const struct desc_port *pt = &dev->ports[i];
            char where[PLAN_PATH_MAX + 8];
            char pb[PLAN_PATH_MAX * 2];
            const char *pp =
                pt->kind != DESC_PORT_LINK ? abs_path(b, pt->path, pb, sizeof(pb)) : NULL;
            if (pt->kind != DESC_PORT_LINK && pp == NULL)
                return;
            if (pt->kind == DESC_PORT_FILE) {
                bind(b, c, pp, true, true, false);
                snprintf(where, sizeof(where), "file:%s", pp);
            } else if (pt->kind == DESC_PORT_SOCKET) {
                bind(b, c, pp, true, true, false);
                snprintf(where, sizeof(where), "unix:%s", pp);
            } else {
                char suffix[DESC_NAME_MAX + 16];
                char p[PLAN_PATH_MAX];
                snprintf(suffix, sizeof(suffix), "port-%s.sock", pt->name);
                path_of(b, p, vm->name, suffix);
                snprintf(where, sizeof(where), "unix:%s", p);
            }
            int n = snprintf(ports + used, sizeof(ports) - used, ",port=%s=%s", pt->name, where);
            if (n < 0 || (size_t)n >= sizeof(ports) - used) {
                bfail(b, -E2BIG, "%s: the console's ports do not fit a command line", vm->name);
                return;
            }
            used += (size_t)n;
        }
        arg(b, c, "out=%s%s,%s", out, ports, common);
        break;
    }
    default:
        bfail(b, -EINVAL, "%s: a device of this kind needs a backend", vm->name);
        break;
    }
}

static void plan_vm(struct builder *b, unsigned vi, struct plan_comp *c)
{
    const struct desc_vm *vm = &b->d->vms[vi];
    snprintf(c->name, sizeof(c->name), "%s", vm->name);
    c->is_vm = true;
    c->index = vi;
    c->type = "vm";
    c->restart = vm->restart;
    c->stop_timeout = vm->shutdown_timeout + PLAN_VM_STOP_GRACE;
    c->takes_input = vm->serial.input;
    memcpy(c->host_cpus, vm->host_cpus, sizeof(c->host_cpus));
    c->host_cpus_given = vm->host_cpus_given;
    c->cpu_max_milli = vm->cpu_max_milli;
    c->cpu_weight = vm->cpu_weight;
    char sb[PLAN_PATH_MAX * 2], kb[PLAN_PATH_MAX * 2], ib[PLAN_PATH_MAX * 2];
    const char *serial_log = abs_path(b, vm->serial.log, sb, sizeof(sb));
    const char *kernel = abs_path(b, vm->kernel, kb, sizeof(kb));
    const char *initrd = abs_path(b, vm->initrd, ib, sizeof(ib));
    if (serial_log != NULL)
        snprintf(c->console_log, sizeof(c->console_log), "%s", serial_log);
    own_binds(b, c);
    bind(b, c, kernel, false, false, false);
    bind(b, c, initrd, false, false, false);
    bind(b, c, "/dev/kvm", false, true, true);
    path_of(b, c->serial, vm->name, "serial.sock");
    path_of(b, c->control, vm->name, "control.sock");
    arg(b, c, "%s/bulkhead-vmm", b->bin_dir);
    arg(b, c, "--name");
    arg(b, c, "%s", vm->name);
    arg(b, c, "--kernel");
    arg(b, c, "%s", kernel);
    if (initrd != NULL) {
        arg(b, c, "--initrd");
        arg(b, c, "%s", initrd);
    }
    if (vm->cmdline != NULL) {
        arg(b, c, "--cmdline");
        arg(b, c, "%s", vm->cmdline);
    }
    arg(b, c, "--mem");
    arg(b, c, "%lluK", (unsigned long long)(vm->mem_bytes >> 10));
    arg(b, c, "--cpus");
    arg(b, c, "%u", vm->vcpus);
    arg(b, c, "--serial");
    arg(b, c, "unix:%s", c->serial);
    arg(b, c, "--control");
    arg(b, c, "%s", c->control);
    if (vm->com2_link >= 0) {
        char com2[PLAN_PATH_MAX];
        path_of(b, com2, vm->name, "com2.sock");
        arg(b, c, "--serial2");
        arg(b, c, "unix:%s", com2);
    }
    arg(b, c, "--shutdown-timeout");
    arg(b, c, "%u", vm->shutdown_timeout);
    arg(b, c, "--log-level");
    arg(b, c, "info");
    for (unsigned i = 0; i < vm->nr_devices && b->r == 0; i++)
        plan_device(b, c, vm, &vm->devices[i]);
}

int plan_build(const struct desc *d, const char *run_dir, const char *bin_dir, struct plan *out,
               char *err, size_t errlen)
{
    *out = (struct plan){0};
    err[0] = '\0';
    struct builder b = {.d = d, .p = out, .bin_dir = bin_dir, .err = err, .errlen = errlen};
    if (snprintf(out->run_dir, sizeof(out->run_dir), "%s", run_dir) >= (int)sizeof(out->run_dir)) {
        bfail(&b, -ENAMETOOLONG, "the run directory %s is too long", run_dir);
        return b.r;
    }
    unsigned n = d->nr_backends + d->nr_vms;
    out->comps = calloc(n > 0 ? n : 1, sizeof(*out->comps));
    if (out->comps == NULL) {
        bfail(&b, -ENOMEM, "out of memory");
        return b.r;
    }
    out->nr_comps = n;
    /* Backends first, at the indices the description gives them: a device's backend
     * index is its component's index. */
    for (unsigned i = 0; i < d->nr_backends; i++)
        plan_backend(&b, i, &out->comps[i]);
    for (unsigned i = 0; i < d->nr_vms; i++)
        plan_vm(&b, i, &out->comps[d->nr_backends + i]);
    /* Serial links: the same socket paths the VMs' command lines name. */
    for (unsigned i = 0; i < d->nr_serial_links && b.r == 0; i++) {
        struct plan_link *l = &out->links[out->nr_links++];
        size_t used = 0;
        for (unsigned e = 0; e < 2; e++) {
            const struct desc_endpoint *ep = &d->serial_links[i].ends[e];
            const struct desc_vm *vm = &d->vms[ep->vm];
            char file[DESC_NAME_MAX + 16] = "com2.sock";
            const char *what = "com2";
            if (ep->device >= 0) {
                what = vm->devices[ep->device].ports[ep->port].name;
                snprintf(file, sizeof(file), "port-%s.sock", what);
            }
            path_of(&b, l->path[e], vm->name, file);
            int w = snprintf(l->name + used, sizeof(l->name) - used, "%s%s:%s", e ? "-" : "",
                             vm->name, what);
            used += w > 0 ? (size_t)w : 0;
            if (used >= sizeof(l->name))
                used = sizeof(l->name) - 1;
        }
    }
    return b.r;
}

void plan_free(struct plan *p)
{
    for (unsigned i = 0; p->comps != NULL && i < p->nr_comps; i++)
        for (unsigned a = 0; a < p->comps[i].argc; a++)
            free(p->comps[i].argv[a]);
    free(p->comps);
    *p = (struct plan){0};
}

int plan_find(const struct plan *p, const char *name)
{
    for (unsigned i = 0; i < p->nr_comps; i++)
        if (strcmp(p->comps[i].name, name) == 0)
            return (int)i;
    return -1;
}

bool plan_comp_same(const struct plan_comp *a, const struct plan_comp *b)
{
    if (a->is_vm != b->is_vm || a->argc != b->argc || strcmp(a->type, b->type) != 0 ||
        a->restart.policy != b->restart.policy || a->restart.limit != b->restart.limit ||
        a->restart.backoff_ms != b->restart.backoff_ms ||
        a->restart.backoff_max_ms != b->restart.backoff_max_ms ||
        a->host_cpus_given != b->host_cpus_given ||
        memcmp(a->host_cpus, b->host_cpus, sizeof(a->host_cpus)) != 0 ||
        a->cpu_max_milli != b->cpu_max_milli || a->cpu_weight != b->cpu_weight)
        return false;
    for (unsigned i = 0; i < a->argc; i++)
        if (strcmp(a->argv[i], b->argv[i]) != 0)
            return false;
    return true;
}
