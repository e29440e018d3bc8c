/* SPDX-License-Identifier: BSD-2-Clause */
#include "supervisor/cgroup.h"

#include "core/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/magic.h>
#include <mntent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

/* Write @p text to the file @p name of directory @p dirfd, as one write: cgroup files take
 * a value per write. */
static int write_at(int dirfd, const char *name, const char *text)
{
    int fd = openat(dirfd, name, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t len = (ssize_t)strlen(text);
    int r = write(fd, text, (size_t)len) == len ? 0 : -errno;
    close(fd);
    return r;
}

static int read_at(int dirfd, const char *name, char *buf, size_t len)
{
    int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = read(fd, buf, len - 1);
    int r = n >= 0 ? 0 : -errno;
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    return r;
}

/* Whether the space-separated list @p list holds the word @p word. */
static bool has_word(const char *list, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = list; (p = strstr(p, word)) != NULL; p += n) {
        bool starts = p == list || p[-1] == ' ';
        bool ends = p[n] == '\0' || p[n] == ' ' || p[n] == '\n';
        if (starts && ends)
            return true;
    }
    return false;
}

/* The first cgroup v2 mount: /sys/fs/cgroup on a unified host, /sys/fs/cgroup/unified on a
 * hybrid one. */
static int find_mount(char *out, size_t len)
{
    FILE *f = setmntent("/proc/self/mounts", "re");
    if (f == NULL)
        return -errno;
    int r = -ENOENT;
    struct mntent *m;
    while (r != 0 && (m = getmntent(f)) != NULL) {
        if (strcmp(m->mnt_type, "cgroup2") == 0 && strlen(m->mnt_dir) < len) {
            snprintf(out, len, "%s", m->mnt_dir);
            r = 0;
        }
    }
    endmntent(f);
    return r;
}

/* FNV-1a: a short, stable name for the system from its run directory. */
static uint32_t name_hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s != '\0'; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

int cg_sys_open(struct cg_sys *g, const char *mount, const char *run_dir)
{
    memset(g, 0, sizeof(*g));
    g->tried = true;
    g->sys_fd = -1;
    char found[256];
    int r = 0;
    if (mount == NULL && (r = find_mount(found, sizeof(found))) == 0)
        mount = found;
    if (r != 0) {
        snprintf(g->why, sizeof(g->why), "no cgroup v2 file system is mounted");
        log_warn("cgroups: %s: no CPU budgets, weights or per-component CPU accounting", g->why);
        return r;
    }
    snprintf(g->path, sizeof(g->path), "%s/bulkhead-%08" PRIx32, mount, name_hash(run_dir));
    int root = open(mount, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    struct statfs sfs;
    if (root < 0 || fstatfs(root, &sfs) != 0 || sfs.f_type != CGROUP2_SUPER_MAGIC) {
        r = root < 0 ? -errno : -ENOTDIR;
        snprintf(g->why, sizeof(g->why), "%s is not a cgroup v2 file system", mount);
        log_warn("cgroups: %s: no CPU budgets, weights or per-component CPU accounting", g->why);
        if (root >= 0)
            close(root);
        return r;
    }
    char controllers[512];
    bool cpu = read_at(root, "cgroup.controllers", controllers, sizeof(controllers)) == 0 &&
               has_word(controllers, "cpu");
    if (!cpu)
        snprintf(g->why, sizeof(g->why),
                 "the cpu controller is not available in %s (a host that keeps it in "
                 "cgroup v1?)",
                 mount);
    else if ((r = write_at(root, "cgroup.subtree_control", "+cpu")) != 0)
        snprintf(g->why, sizeof(g->why), "cannot enable the cpu controller in %s: %s", mount,
                 strerror(-r));
    close(root);
    cpu = cpu && r == 0;
    if (mkdir(g->path, 0755) != 0 && errno != EEXIST) {
        r = -errno;
        snprintf(g->why, sizeof(g->why), "cannot create %s: %s", g->path, strerror(-r));
        log_warn("cgroups: %s: no CPU budgets, weights or per-component CPU accounting", g->why);
        return r;
    }
    g->sys_fd = open(g->path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (g->sys_fd < 0) {
        r = -errno;
        snprintf(g->why, sizeof(g->why), "cannot open %s: %s", g->path, strerror(-r));
        log_warn("cgroups: %s: no CPU budgets, weights or per-component CPU accounting", g->why);
        return r;
    }
    if (cpu && (r = write_at(g->sys_fd, "cgroup.subtree_control", "+cpu")) != 0) {
        snprintf(g->why, sizeof(g->why), "cannot enable the cpu controller in %s: %s", g->path,
                 strerror(-r));
        cpu = false;
    }
    g->cpu = cpu;
    log_info("cgroups: components in %s/NAME; CPU budgets and weights %s%s", g->path,
             cpu ? "applied" : "NOT applied: ", cpu ? "" : g->why);
    return cpu ? 0 : -ENOTSUP;
}

int cg_comp_open(struct cg_sys *g, const char *name, unsigned cpu_max_milli, unsigned weight,
                 int *fd)
{
    *fd = -1;
    bool asks = cpu_max_milli != 0 || weight != CG_DEFAULT_WEIGHT;
    if (asks && !g->cpu && !g->warned) {
        g->warned = true;
        log_warn("%s: cpu-max/cpu-weight NOT applied (nor to any other component): %s", name,
                 g->why);
    }
    if (g->sys_fd < 0)
        return -ENOENT;
    if (mkdirat(g->sys_fd, name, 0755) != 0 && errno != EEXIST) {
        int r = -errno;
        log_error("%s: cannot create its cgroup %s/%s: %s", name, g->path, name, strerror(-r));
        return r;
    }
    int leaf = openat(g->sys_fd, name, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (leaf < 0) {
        int r = -errno;
        log_error("%s: cannot open its cgroup %s/%s: %s", name, g->path, name, strerror(-r));
        return r;
    }
    if (g->cpu) {
        /* Always written, "max" included: a leaf reused after apply may hold an old value. */
        char max[64], w[16];
        if (cpu_max_milli != 0)
            snprintf(max, sizeof(max), "%llu %u",
                     (unsigned long long)cpu_max_milli * CG_PERIOD_US / 1000u, CG_PERIOD_US);
        else
            snprintf(max, sizeof(max), "max %u", CG_PERIOD_US);
        snprintf(w, sizeof(w), "%u", weight);
        int r = write_at(leaf, "cpu.max", max);
        const char *file = "cpu.max";
        if (r == 0) {
            r = write_at(leaf, "cpu.weight", w);
            file = "cpu.weight";
        }
        if (r != 0) {
            log_error("%s: cannot write %s of %s/%s: %s", name, file, g->path, name, strerror(-r));
            close(leaf);
            return r;
        }
    }
    *fd = leaf;
    return 0;
}

int cg_usage_ns(int fd, uint64_t *ns)
{
    char buf[1024];
    int r = read_at(fd, "cpu.stat", buf, sizeof(buf));
    if (r != 0)
        return r;
    const char *p = strstr(buf, "usage_usec ");
    if (p == NULL || (p != buf && p[-1] != '\n'))
        return -EINVAL;
    *ns = strtoull(p + strlen("usage_usec "), NULL, 10) * 1000u;
    return 0;
}

int cg_comp_remove(struct cg_sys *g, const char *name, int fd)
{
    if (fd >= 0)
        close(fd);
    if (g->sys_fd < 0)
        return 0;
    if (unlinkat(g->sys_fd, name, AT_REMOVEDIR) != 0 && errno != ENOENT)
        return -errno;
    return 0;
}

void cg_sys_close(struct cg_sys *g)
{
    if (!g->tried || g->sys_fd < 0)
        return;
    /* Leaves of components that never ended cleanly, or of an earlier supervisor. */
    int dfd = open(g->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        if (e->d_type == DT_DIR && strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 &&
            unlinkat(dfd, e->d_name, AT_REMOVEDIR) != 0)
            log_warn("cgroups: cannot remove %s/%s: %s", g->path, e->d_name, strerror(errno));
    }
    if (d != NULL)
        closedir(d);
    else if (dfd >= 0)
        close(dfd);
    close(g->sys_fd);
    g->sys_fd = -1;
    if (rmdir(g->path) != 0 && errno != ENOENT)
        log_warn("cgroups: cannot remove %s: %s", g->path, strerror(errno));
}
