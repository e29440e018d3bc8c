/* SPDX-License-Identifier: BSD-2-Clause */
#include "supervisor/super.h"

#include "core/log.h"
#include "host/unix_sock.h"
#include "supervisor/launch.h"
#include "supervisor/mux.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The tick that drives every deadline and readiness check. */
#define TICK_MS 100
/* A component still not ready after this long gets a warning in the log (once). */
#define READY_WARN_NS (30ull * 1000000000ull)

static uint64_t mono_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static int mkdir_p(const char *path, mode_t mode)
{
    char buf[SV_LOG_DIR_MAX];
    if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
        return -ENAMETOOLONG;
    for (char *p = buf + 1; *p != '\0'; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, mode) != 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(buf, mode) != 0 && errno != EEXIST)
        return -errno;
    return 0;
}

const char *sv_state_name(enum sv_state st)
{
    static const char *const names[] = {
        [SV_STOPPED] = "stopped", [SV_WAITING] = "waiting",   [SV_STARTING] = "starting",
        [SV_RUNNING] = "running", [SV_STOPPING] = "stopping", [SV_BACKOFF] = "backoff",
        [SV_EXITED] = "exited",   [SV_FAILED] = "failed",
    };
    return (unsigned)st < sizeof(names) / sizeof(names[0]) ? names[st] : "?";
}

static bool is_up(const struct sv_comp *c)
{
    return c->pid > 0;
}

struct sv_comp *sv_find(struct supervisor *s, const char *name)
{
    for (unsigned i = 0; i < s->nr; i++)
        if (s->c[i] != NULL && !s->c[i]->removed && !s->c[i]->retiring &&
            strcmp(s->c[i]->pc.name, name) == 0)
            return s->c[i];
    return NULL;
}

uint64_t sv_cpu_ns(const struct sv_comp *c)
{
    uint64_t ns = c->cpu_ns_done, cg_ns;
    if (c->cg_fd >= 0 && cg_usage_ns(c->cg_fd, &cg_ns) == 0)
        return ns + cg_ns;
    if (c->pid <= 0)
        return ns;
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)c->pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ns;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return ns;
    buf[n] = '\0';
    /* Fields after the command name (which may hold spaces): utime is the 14th field,
     * stime the 15th, counted from the pid; after ")" they are the 12th and 13th. */
    const char *p = strrchr(buf, ')');
    unsigned long long ut = 0, st = 0;
    if (p == NULL ||
        sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return ns;
    long hz = sysconf(_SC_CLK_TCK);
    if (hz <= 0)
        hz = 100;
    return ns + (ut + st) * (1000000000ull / (uint64_t)hz);
}

/* --- consoles -------------------------------------------------------------------------- */

static void close_console(struct supervisor *s, struct sv_comp *c)
{
    if (c->console_fd >= 0) {
        event_loop_remove(&s->loop, c->console_fd);
        close(c->console_fd);
        c->console_fd = -1;
    }
}

static void on_console(void *opaque, uint32_t events)
{
    struct sv_comp *c = opaque;
    struct supervisor *s = c->sv;
    (void)events;
    uint8_t buf[4096];
    ssize_t n = read(c->console_fd, buf, sizeof(buf));
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        close_console(s, c);
        return;
    }
    if (c->console_log_fd >= 0 && write(c->console_log_fd, buf, (size_t)n) < 0)
        log_debug("%s: console log: %s", c->pc.name, strerror(errno));
    if (c->console_extra_fd >= 0 && write(c->console_extra_fd, buf, (size_t)n) < 0)
        log_debug("%s: console log %s: %s", c->pc.name, c->pc.console_log, strerror(errno));
    if (s->mux != NULL && c->mux_id >= 0) {
        mux_output(s->mux, (unsigned)c->mux_id, buf, (size_t)n);
        s->mux_dirty = true;
        s->last_output_ns = mono_ns();
    }
    if (c->viewer_fd >= 0 && send(c->viewer_fd, buf, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0 &&
        errno != EAGAIN)
        log_debug("%s: console viewer: %s", c->pc.name, strerror(errno));
}

/* A running VM's serial console: connect once its socket is there. */
static void open_console(struct supervisor *s, struct sv_comp *c)
{
    if (!c->pc.is_vm || c->console_fd >= 0 || !is_up(c))
        return;
    int fd = unix_connect(c->pc.serial, 1);
    if (fd < 0)
        return;
    if (event_loop_add(&s->loop, fd, EVENT_IN, on_console, c) != 0) {
        close(fd);
        return;
    }
    c->console_fd = fd;
}

int sv_console_write(struct sv_comp *c, const uint8_t *buf, size_t len)
{
    if (c->console_fd < 0)
        return -ENOTCONN;
    /* Typed input is small; a VM whose socket is full loses keys rather than stall us. */
    ssize_t n = send(c->console_fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    return n < 0 ? -errno : 0;
}

/* --- processes ------------------------------------------------------------------------- */

static void on_exit_fd(void *opaque, uint32_t events);

static bool sockets_ready(const struct sv_comp *c)
{
    struct stat st;
    if (c->pc.is_vm)
        return stat(c->pc.serial, &st) == 0 && stat(c->pc.control, &st) == 0;
    for (unsigned i = 0; i < c->pc.nr_sockets; i++)
        if (stat(c->pc.sockets[i], &st) != 0 || !S_ISSOCK(st.st_mode))
            return false;
    return true;
}

static bool deps_ready(struct supervisor *s, const struct sv_comp *c)
{
    for (unsigned i = 0; i < c->nr_deps; i++) {
        const struct sv_comp *d = s->c[c->deps[i]];
        if (d == NULL || d->removed || d->state != SV_RUNNING)
            return false;
    }
    return true;
}

/* A component that replaces an older one of the same name (apply) waits for it to end:
 * they share their sockets. */
static bool replacing(struct supervisor *s, const struct sv_comp *c)
{
    if (c->replaces_uid == 0)
        return false;
    for (unsigned i = 0; i < s->nr; i++)
        if (s->c[i] != NULL && s->c[i]->uid == c->replaces_uid)
            return true;
    return false;
}

static void set_state(struct supervisor *s, struct sv_comp *c, enum sv_state st)
{
    if (c->state == st)
        return;
    log_info("%s: %s -> %s", c->pc.name, sv_state_name(c->state), sv_state_name(st));
    c->state = st;
    if (s->mux != NULL && c->mux_id >= 0)
        mux_set_state(s->mux, (unsigned)c->mux_id, sv_state_name(st));
}

/* Cgroups (cgroup.h): a component's leaf lives from its first start to its end for good. */

/* The leaf to start @p c in (made at the first start of anything, reused by restarts);
 * without cgroups it starts without one. Fails only when a budget could not be written. */
static int comp_cgroup_open(struct supervisor *s, struct sv_comp *c, struct launch_result *lr)
{
    if (!s->cg.tried)
        (void)cg_sys_open(&s->cg, NULL, s->run_dir);
    if (c->cg_fd >= 0)
        return 0;
    int r = cg_comp_open(&s->cg, c->pc.name, c->pc.cpu_max_milli, c->pc.cpu_weight, &c->cg_fd);
    if (r == 0 || r == -ENOENT)
        return 0;
    snprintf(lr->why, sizeof(lr->why), "cannot set up its cgroup %s/%s: %s", s->cg.path, c->pc.name,
             strerror(-r));
    return r;
}

/* Its CPU time moves from the leaf to cpu_ns_done, and the leaf goes. */
static void comp_cgroup_close(struct supervisor *s, struct sv_comp *c)
{
    if (c->cg_fd < 0)
        return;
    uint64_t ns;
    if (cg_usage_ns(c->cg_fd, &ns) == 0)
        c->cpu_ns_done += ns;
    int r = cg_comp_remove(&s->cg, c->pc.name, c->cg_fd);
    c->cg_fd = -1;
    if (r != 0)
        log_warn("%s: cannot remove its cgroup %s/%s: %s", c->pc.name, s->cg.path, c->pc.name,
                 strerror(-r));
}

/* After a run ended: the leaf stays for a restart, and goes when none follows. */
static void comp_cgroup_after_end(struct supervisor *s, struct sv_comp *c)
{
    if (c->state != SV_WAITING && c->state != SV_BACKOFF)
        comp_cgroup_close(s, c);
}

static void spawn(struct supervisor *s, struct sv_comp *c)
{
    /* A socket left by the previous run would look ready before the new one listens. */
    for (unsigned i = 0; i < c->pc.nr_sockets; i++)
        unlink(c->pc.sockets[i]);
    if (c->pc.is_vm) {
        unlink(c->pc.serial);
        unlink(c->pc.control);
    }
    struct stat st;
    c->log_start = fstat(c->log_fd, &st) == 0 ? st.st_size : 0;
    struct launch_result lr;
    int r = comp_cgroup_open(s, c, &lr);
    if (r == 0)
        r = launch_component(&c->pc, c->log_fd, c->cg_fd, &lr);
    if (r != 0) {
        comp_cgroup_close(s, c);
        snprintf(c->last_exit, sizeof(c->last_exit), "cannot start: %s", lr.why);
        log_error("%s: cannot start: %s", c->pc.name, lr.why);
        set_state(s, c, SV_FAILED);
        return;
    }
    c->pid = lr.pid;
    c->pidfd = lr.pidfd;
    c->started_ns = s->now_ns;
    c->ready_warned = false;
    c->killed_at_deadline = false;
    if ((r = event_loop_add(&s->loop, c->pidfd, EVENT_IN, on_exit_fd, c)) != 0) {
        log_error("%s: cannot watch process %d: %s; killing it", c->pc.name, (int)c->pid,
                  strerror(-r));
        kill(c->pid, SIGKILL);
    }
    log_info("%s: started, pid %d", c->pc.name, (int)c->pid);
    set_state(s, c, SV_STARTING);
}

/* The rest of the last line of a component's log (its stderr) that contains KEY, from the
 * last 4 KiB of what its current run wrote; false if none. Our programs say why they fail
 * in such lines: the --sandbox=trap handler writes "seccomp: system call NAME (NR) is not
 * allowed" before it exits with 128 + SIGSYS, and every fatal error is "PROG: error: ...". */
static bool log_tail_find(const struct supervisor *s, const struct sv_comp *c, const char *key,
                          char *out, size_t len)
{
    char path[SV_LOG_DIR_MAX + DESC_NAME_MAX + 32], buf[4096 + 1];
    snprintf(path, sizeof(path), "%s/%s.log", s->log_dir, c->pc.name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    struct stat st;
    ssize_t n = -1;
    if (fstat(fd, &st) == 0) {
        /* Only this run's lines: an older run's error is not this end's cause. */
        off_t from = st.st_size > 4096 ? st.st_size - 4096 : 0;
        if (from < c->log_start)
            from = c->log_start;
        n = pread(fd, buf, sizeof(buf) - 1, from);
    }
    close(fd);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    const char *hit = NULL;
    for (const char *p = buf; (p = strstr(p, key)) != NULL; p++)
        hit = p + strlen(key);
    if (hit == NULL)
        return false;
    size_t k = strcspn(hit, "\n");
    snprintf(out, len, "%.*s", (int)k, hit);
    return true;
}

/* How a process ended, in words; a failure names its cause when the log has it. */
static void describe_exit(const struct supervisor *s, const struct sv_comp *c, const siginfo_t *si,
                          char *buf, size_t len)
{
    char why[320];
    if (si->si_code == CLD_EXITED && si->si_status == 128 + SIGSYS &&
        log_tail_find(s, c, "seccomp: system call ", why, sizeof(why)))
        snprintf(buf, len, "stopped by its seccomp allowlist: system call %s", why);
    else if (si->si_code == CLD_EXITED && si->si_status != 0 &&
             log_tail_find(s, c, ": error: ", why, sizeof(why)))
        snprintf(buf, len, "exited with status %d (%s)", si->si_status, why);
    else if (si->si_code == CLD_EXITED)
        snprintf(buf, len, "exited with status %d", si->si_status);
    else
        snprintf(buf, len, "killed by signal %d (%s)%s", si->si_status, strsignal(si->si_status),
                 si->si_status == SIGSYS ? ": a system call outside its seccomp allowlist" : "");
}

static void ended(struct supervisor *s, struct sv_comp *c, const siginfo_t *si)
{
    bool clean = si->si_code == CLD_EXITED && si->si_status == 0;
    describe_exit(s, c, si, c->last_exit, sizeof(c->last_exit));
    uint64_t ran = s->now_ns - c->started_ns;
    /* An end nobody asked for is worth a warning: the log is where its cause is sought. */
    log_msg(clean || c->state == SV_STOPPING || s->down ? LOG_INFO : LOG_WARN,
            "%s: pid %d %s after %.1f s", c->pc.name, (int)c->pid, c->last_exit, (double)ran / 1e9);
    event_loop_remove(&s->loop, c->pidfd);
    close(c->pidfd);
    c->pidfd = -1;
    c->pid = 0;
    close_console(s, c);

    if (c->state == SV_STOPPING || s->down) {
        enum sv_after after = s->down ? SV_AFTER_NOTHING : c->after;
        c->after = SV_AFTER_NOTHING;
        if (after == SV_AFTER_START) {
            c->restarts++;
            set_state(s, c, SV_WAITING);
        } else if (after == SV_AFTER_REMOVE) {
            set_state(s, c, SV_STOPPED);
            c->removed = true;
        } else {
            set_state(s, c, SV_STOPPED);
        }
        return;
    }
    const struct desc_restart *rp = &c->pc.restart;
    bool again =
        rp->policy == DESC_RESTART_ALWAYS || (rp->policy == DESC_RESTART_ON_FAILURE && !clean);
    if (!again) {
        set_state(s, c, SV_EXITED);
        return;
    }
    /* A run as long as the longest back-off was healthy: the count starts again. */
    if (ran >= (uint64_t)rp->backoff_max_ms * 1000000ull)
        c->in_row = 0;
    if (rp->limit != 0 && c->in_row >= rp->limit) {
        snprintf(c->last_exit + strlen(c->last_exit), sizeof(c->last_exit) - strlen(c->last_exit),
                 "; gave up after %u restarts", c->in_row);
        log_error("%s: ended %u times in a row; giving up (restart limit)", c->pc.name,
                  c->in_row + 1);
        set_state(s, c, SV_FAILED);
        return;
    }
    uint64_t delay = rp->backoff_ms;
    for (unsigned i = 0; i < c->in_row && delay < rp->backoff_max_ms; i++)
        delay *= 2;
    if (delay > rp->backoff_max_ms)
        delay = rp->backoff_max_ms;
    c->in_row++;
    c->restarts++;
    c->deadline_ns = s->now_ns + delay * 1000000ull;
    log_warn("%s: restarting in %llu ms (restart %llu)", c->pc.name, (unsigned long long)delay,
             (unsigned long long)c->restarts);
    set_state(s, c, SV_BACKOFF);
}

static void on_exit_fd(void *opaque, uint32_t events)
{
    struct sv_comp *c = opaque;
    struct supervisor *s = c->sv;
    (void)events;
    siginfo_t si = {0};
    struct rusage ru = {0};
    int status = 0;
    /* wait4() reaps and reports the run's CPU time in one call. */
    pid_t r = wait4(c->pid, &status, WNOHANG, &ru);
    if (r != c->pid)
        return;
    if (c->cg_fd < 0) /* else its cgroup counts it */
        c->cpu_ns_done += (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000ull +
                          (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000ull;
    if (WIFEXITED(status)) {
        si.si_code = CLD_EXITED;
        si.si_status = WEXITSTATUS(status);
    } else {
        si.si_code = CLD_KILLED;
        si.si_status = WTERMSIG(status);
    }
    s->now_ns = mono_ns();
    ended(s, c, &si);
    comp_cgroup_after_end(s, c);
}

int sv_start(struct supervisor *s, struct sv_comp *c)
{
    (void)s;
    if (is_up(c) || c->state == SV_WAITING)
        return -EALREADY;
    c->in_row = 0;
    c->after = SV_AFTER_NOTHING;
    set_state(s, c, SV_WAITING);
    return 0;
}

int sv_stop(struct supervisor *s, struct sv_comp *c, enum sv_after after)
{
    if (!is_up(c)) {
        /* Not running: a waiting or backing-off component just stays put. */
        if (c->state == SV_WAITING || c->state == SV_BACKOFF) {
            set_state(s, c, SV_STOPPED);
            if (after == SV_AFTER_START)
                set_state(s, c, SV_WAITING);
            if (after == SV_AFTER_REMOVE)
                c->removed = true;
            return 0;
        }
        if (after == SV_AFTER_REMOVE) {
            c->removed = true;
            return 0;
        }
        if (after == SV_AFTER_START) {
            c->in_row = 0;
            set_state(s, c, SV_WAITING);
            return 0;
        }
        return -EALREADY;
    }
    c->after = after;
    if (c->state == SV_STOPPING)
        return 0;
    /* bulkhead-vmm presses the guest's power button on SIGTERM and stops itself hard at its
     * --shutdown-timeout; backends end at once. */
    kill(c->pid, SIGTERM);
    c->deadline_ns = s->now_ns + (uint64_t)c->pc.stop_timeout * 1000000000ull;
    set_state(s, c, SV_STOPPING);
    return 0;
}

int sv_kill(struct supervisor *s, struct sv_comp *c)
{
    (void)s;
    if (!is_up(c))
        return -ESRCH;
    return kill(c->pid, SIGKILL) == 0 ? 0 : -errno;
}

void sv_down(struct supervisor *s)
{
    if (s->down)
        return;
    log_info("stopping the system: VMs first, then backends");
    s->down = true;
    for (unsigned i = 0; i < s->nr; i++) {
        struct sv_comp *c = s->c[i];
        if (c != NULL && !c->removed && c->pc.is_vm)
            (void)sv_stop(s, c, SV_AFTER_NOTHING);
    }
}

/* Every 100 ms: move each component along. */
static void step(struct supervisor *s)
{
    s->now_ns = mono_ns();
    bool vm_up = false, any_up = false;
    for (unsigned i = 0; i < s->nr; i++) {
        struct sv_comp *c = s->c[i];
        if (c == NULL || c->removed)
            continue;
        if (is_up(c)) {
            any_up = true;
            vm_up |= c->pc.is_vm;
        }
        switch (c->state) {
        case SV_WAITING:
            if (!s->down && deps_ready(s, c) && !replacing(s, c))
                spawn(s, c);
            break;
        case SV_STARTING:
            if (sockets_ready(c)) {
                set_state(s, c, SV_RUNNING);
            } else if (!c->ready_warned && s->now_ns - c->started_ns > READY_WARN_NS) {
                c->ready_warned = true;
                log_warn("%s: running for 30 s and its sockets are not there yet", c->pc.name);
            }
            break;
        case SV_RUNNING:
            open_console(s, c);
            break;
        case SV_BACKOFF:
            if (s->down)
                set_state(s, c, SV_STOPPED);
            else if (s->now_ns >= c->deadline_ns)
                set_state(s, c, SV_WAITING);
            break;
        case SV_STOPPING:
            if (s->now_ns >= c->deadline_ns && !c->killed_at_deadline) {
                log_warn("%s: still running %u s after SIGTERM; SIGKILL", c->pc.name,
                         c->pc.stop_timeout);
                c->killed_at_deadline = true;
                kill(c->pid, SIGKILL);
            }
            break;
        default:
            break;
        }
    }
    for (unsigned i = 0; i < s->nr_relays && !s->down; i++)
        relay_tick(&s->relays[i]);
    /* Unfinished lines of VMs without the input (a login prompt) show once output has
     * paused for a tick; flushing while it streams would cut lines in two. */
    if (s->mux != NULL && s->mux_dirty && s->now_ns - s->last_output_ns >= TICK_MS * 1000000ull) {
        mux_flush(s->mux);
        s->mux_dirty = false;
    }
    if (!s->down)
        return;
    /* Backends go once every VM is gone; the loop ends once nothing runs. */
    if (!vm_up) {
        for (unsigned i = 0; i < s->nr; i++) {
            struct sv_comp *c = s->c[i];
            if (c != NULL && !c->removed && !c->pc.is_vm && is_up(c) && c->state != SV_STOPPING)
                (void)sv_stop(s, c, SV_AFTER_NOTHING);
        }
    }
    if (!any_up)
        s->quit = true;
}

static void on_tick(void *opaque, uint32_t events)
{
    struct supervisor *s = opaque;
    uint64_t v;
    (void)events;
    if (read(s->tick_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        return;
    step(s);
}

int sv_init(struct supervisor *s, const char *run_dir, const char *log_dir)
{
    memset(s, 0, sizeof(*s));
    s->tick_fd = -1;
    s->signal_fd = -1;
    s->tty_in = -1;
    if (snprintf(s->run_dir, sizeof(s->run_dir), "%s", run_dir) >= (int)sizeof(s->run_dir) ||
        snprintf(s->log_dir, sizeof(s->log_dir), "%s", log_dir) >= (int)sizeof(s->log_dir))
        return -ENAMETOOLONG;
    int r;
    if ((r = mkdir_p(run_dir, 0700)) != 0 || (r = mkdir_p(log_dir, 0755)) != 0)
        return r;
    if ((r = event_loop_init(&s->loop)) != 0)
        return r;
    s->tick_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    struct itimerspec t = {.it_interval = {.tv_nsec = TICK_MS * 1000000l},
                           .it_value = {.tv_nsec = TICK_MS * 1000000l}};
    if (s->tick_fd < 0 || timerfd_settime(s->tick_fd, 0, &t, NULL) != 0)
        return -errno;
    return event_loop_add(&s->loop, s->tick_fd, EVENT_IN, on_tick, s);
}

static int open_log(const struct supervisor *s, const char *name, const char *suffix)
{
    char path[SV_LOG_DIR_MAX + DESC_NAME_MAX + 32];
    snprintf(path, sizeof(path), "%s/%s%s", s->log_dir, name, suffix);
    /* Consoles carry what was typed into them: for their owner only (docs/console.md). */
    return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
}

int sv_add(struct supervisor *s, struct plan_comp *pc, struct sv_comp **out)
{
    unsigned slot = 0;
    while (slot < s->nr && s->c[slot] != NULL)
        slot++;
    if (slot >= SV_MAX_COMPS)
        return -ENOSPC;
    struct sv_comp *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -ENOMEM;
    c->pc = *pc;
    /* The argv strings are the component's now. */
    memset(pc->argv, 0, sizeof(pc->argv));
    pc->argc = 0;
    c->sv = s;
    c->pid = 0;
    c->pidfd = c->console_fd = c->viewer_fd = -1;
    c->cg_fd = -1;
    c->mux_id = -1;
    c->uid = ++s->next_uid; /* from 1: 0 means none in replaces_uid */
    c->state = SV_STOPPED;
    c->log_fd = open_log(s, c->pc.name, ".log");
    if (c->log_fd < 0) {
        int e = -errno;
        free(c);
        return e;
    }
    c->console_log_fd = c->pc.is_vm ? open_log(s, c->pc.name, ".console.log") : -1;
    c->console_extra_fd = -1;
    if (c->pc.console_log[0] != '\0')
        c->console_extra_fd =
            open(c->pc.console_log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    s->c[slot] = c;
    if (slot >= s->nr)
        s->nr = slot + 1;
    *out = c;
    return 0;
}

void sv_resolve_deps(struct supervisor *s, const struct plan *p, unsigned first, unsigned n)
{
    /* A plan names dependencies by its own indices; the supervisor's slots differ. */
    for (unsigned i = first; i < first + n; i++) {
        struct sv_comp *c = sv_find(s, p->comps[i].name);
        if (c == NULL)
            continue;
        c->nr_deps = 0;
        for (unsigned k = 0; k < p->comps[i].nr_deps; k++) {
            struct sv_comp *d = sv_find(s, p->comps[p->comps[i].deps[k]].name);
            for (unsigned slot = 0; d != NULL && slot < s->nr; slot++)
                if (s->c[slot] == d)
                    c->deps[c->nr_deps++] = slot;
        }
    }
}

int sv_adopt(struct supervisor *s, struct plan *p)
{
    for (unsigned i = 0; i < p->nr_comps; i++) {
        struct sv_comp *c = NULL;
        int r = sv_add(s, &p->comps[i], &c);
        if (r != 0 || c == NULL)
            return r != 0 ? r : -ENOMEM;
        c->state = SV_WAITING;
    }
    sv_resolve_deps(s, p, 0, p->nr_comps);
    return sv_set_links(s, p);
}

int sv_set_links(struct supervisor *s, const struct plan *p)
{
    for (unsigned i = 0; i < s->nr_relays; i++)
        relay_close(&s->relays[i]);
    free(s->relays);
    s->relays = NULL;
    s->nr_relays = 0;
    if (p->nr_links == 0)
        return 0;
    s->relays = calloc(p->nr_links, sizeof(*s->relays));
    if (s->relays == NULL)
        return -ENOMEM;
    for (unsigned i = 0; i < p->nr_links; i++)
        relay_init(&s->relays[i], &p->links[i], &s->loop);
    s->nr_relays = p->nr_links;
    return 0;
}

static void on_tty(void *opaque, uint32_t events)
{
    struct supervisor *s = opaque;
    (void)events;
    uint8_t buf[256];
    ssize_t n = read(s->tty_in, buf, sizeof(buf));
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        /* The terminal went away: consoles go on being logged. */
        event_loop_remove(&s->loop, s->tty_in);
        s->tty_in = -1;
        return;
    }
    size_t off = 0;
    while (off < (size_t)n) {
        struct mux_event ev[8];
        size_t used = 0;
        unsigned ne = mux_input(s->mux, buf + off, (size_t)n - off, ev, 8, &used);
        for (unsigned i = 0; i < ne; i++) {
            if (ev[i].type == MUX_EV_QUIT) {
                sv_down(s);
                continue;
            }
            for (unsigned k = 0; k < s->nr; k++) {
                struct sv_comp *c = s->c[k];
                if (c != NULL && !c->removed && c->mux_id == (int)ev[i].id)
                    (void)sv_console_write(c, ev[i].data, ev[i].len);
            }
        }
        if (used == 0)
            break;
        off += used;
    }
}

int sv_attach_mux(struct supervisor *s, struct mux *m, int tty_in)
{
    s->mux = m;
    s->tty_in = tty_in;
    for (unsigned i = 0; i < s->nr; i++) {
        struct sv_comp *c = s->c[i];
        if (c == NULL || c->removed || !c->pc.is_vm)
            continue;
        sv_mux_add(s, c);
    }
    if (tty_in < 0)
        return 0;
    return event_loop_add(&s->loop, tty_in, EVENT_IN, on_tty, s);
}

void sv_mux_add(struct supervisor *s, struct sv_comp *c)
{
    if (s->mux == NULL || c->mux_id >= 0 || !c->pc.is_vm)
        return;
    int id = mux_add(s->mux, c->pc.name, c->pc.takes_input, NULL);
    c->mux_id = id >= 0 ? id : -1;
}

int sv_run(struct supervisor *s)
{
    step(s);
    while (!s->quit) {
        int r = event_loop_run_once(&s->loop, -1);
        if (r < 0)
            return r;
        /* Freed slots of removed components that have ended. */
        for (unsigned i = 0; i < s->nr; i++) {
            struct sv_comp *c = s->c[i];
            if (c != NULL && c->removed && !is_up(c) && c->viewer_fd < 0) {
                sv_comp_free(s, c);
                s->c[i] = NULL;
            }
        }
    }
    /* Everything has ended: the cgroups go now, before `down` is told the system stopped. */
    cg_sys_close(&s->cg);
    return 0;
}

void sv_comp_free(struct supervisor *s, struct sv_comp *c)
{
    close_console(s, c);
    comp_cgroup_close(s, c);
    if (c->mux_id >= 0 && s->mux != NULL)
        mux_set_state(s->mux, (unsigned)c->mux_id, "removed");
    if (c->log_fd >= 0)
        close(c->log_fd);
    if (c->console_log_fd >= 0)
        close(c->console_log_fd);
    if (c->console_extra_fd >= 0)
        close(c->console_extra_fd);
    for (unsigned a = 0; a < c->pc.argc; a++)
        free(c->pc.argv[a]);
    free(c);
}

void sv_destroy(struct supervisor *s)
{
    for (unsigned i = 0; i < s->nr_relays; i++)
        relay_close(&s->relays[i]);
    free(s->relays);
    s->relays = NULL;
    s->nr_relays = 0;
    for (unsigned i = 0; i < s->nr; i++) {
        if (s->c[i] != NULL)
            sv_comp_free(s, s->c[i]);
        s->c[i] = NULL;
    }
    cg_sys_close(&s->cg);
    if (s->tick_fd >= 0)
        close(s->tick_fd);
    if (s->signal_fd >= 0)
        close(s->signal_fd);
    event_loop_destroy(&s->loop);
}
