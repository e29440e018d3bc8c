/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The system description (docs/system-description.md): libyaml's document API builds the
 * node tree, and a walk driven by one key table per kind of mapping turns it into struct
 * desc. The walk never stops at a problem: it records an error at the node's position
 * and goes on with the next key, so one run reports everything. Backends are read before
 * VMs and VMs before serial links, whatever the file's order, so each reference is resolved
 * where it is written, with its position and its path (vms.web.disks[0].backend) at hand.
 */
#include "supervisor/desc.h"

#include "core/checked.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

/* ---- memory the description owns ------------------------------------------------------- */

/** Strings and messages live in a chain of these, freed together with the description:
 * nothing in a struct desc has to be freed on its own. */
struct desc_block {
    struct desc_block *next; /**< The block filled before this one. */
    size_t used;             /**< Bytes of @c data handed out. */
    size_t cap;              /**< Bytes of @c data. */
    char data[];             /**< The strings. */
};

#define BLOCK_SIZE 8192

/* Defaults, as docs/system-description.md gives them. */
#define DEFAULT_MEM       (256ull << 20)
#define MIN_MEM           (16ull << 20)
#define MAX_MEM           (1ull << 40)
#define MAX_VCPUS         254
#define DEFAULT_POLL_US   50
#define MAX_POLL_US       1000
#define DEFAULT_TIMEOUT   30
#define MAX_TIMEOUT       3600
#define MAX_QUEUES        16
#define DEFAULT_WEIGHT    100
#define MAX_WEIGHT        10000
#define DEFAULT_SHUTDOWN  30
#define MAX_SHUTDOWN      86400
#define FS_TAG_MAX        36
#define PORT_NAME_MAX     64
#define UDS_MAX           95
#define SOCKET_PATH_MAX   107
#define IFNAME_MAX        15
#define MAX_DURATION_MS   86400000ull
#define MIN_CPU_MAX_MILLI 10
#define MAX_CPU_MAX_MILLI (DESC_MAX_HOST_CPUS * 1000u)
#define PATH_TEXT_MAX     512
#define MAX_HOST_PATHS    (DESC_MAX_VMS * (2 + DESC_MAX_DEVICES * (2 + DESC_MAX_CONSOLE_PORTS)))

/** A path the supervisor or a backend creates on the host (a socket, a log): two entries
 * naming the same one would fight over it. */
struct claimed_path {
    const char *path;    /**< As resolved. */
    struct desc_pos pos; /**< Its first mention. */
};

/** A device using a backend, kept so that the error about a user too many can name the
 * ones that came first. */
struct backend_user {
    const char *where;   /**< The device's path, "vms.web.disks[0]". */
    struct desc_pos pos; /**< Its reference to the backend. */
};

/** The state of one parse; the walk's functions all take it, so none needs a global. */
struct dparse {
    struct desc *d;               /**< What is being filled in. */
    const struct desc_host *host; /**< Facts to check against. */
    yaml_document_t *doc;         /**< libyaml's tree, for node indices. */
    bool oom;                     /**< An allocation failed: the result is -ENOMEM. */
    char path[PATH_TEXT_MAX];     /**< Where the walk is, "vms.web.disks[0]", for messages. */
    size_t path_len;              /**< Bytes of @c path. */
    yaml_node_t *top_vms;         /**< The value of vms:, read after backends:. */
    yaml_node_t *top_backends;    /**< The value of backends:. */
    yaml_node_t *top_links;       /**< The value of serial-links:, read last. */
    struct backend_user users[DESC_MAX_BACKENDS][2]; /**< Each backend's first two users. */
    struct claimed_path host_paths[MAX_HOST_PATHS];  /**< Sockets and logs named so far. */
    unsigned nr_host_paths;                          /**< Entries of @c host_paths. */
    bool mem_reported; /**< One VM's memory alone was too much: the sum would say it again. */
    bool bad_type[DESC_MAX_BACKENDS]; /**< Backends whose type was wrong: not also "unused". */
    /** Keys under vms: and backends: that repeat an earlier name; they are left out. */
    const yaml_node_t *dup_keys[DESC_MAX_VMS + DESC_MAX_BACKENDS];
    unsigned nr_dup_keys; /**< Entries of @c dup_keys. */
};

static void *arena_alloc(struct dparse *c, size_t size)
{
    struct desc_block *b = c->d->blocks;
    size = (size + 7) & ~(size_t)7;
    if (b == NULL || b->cap - b->used < size) {
        size_t cap = size > BLOCK_SIZE ? size : BLOCK_SIZE;
        b = malloc(sizeof(*b) + cap);
        if (b == NULL) {
            c->oom = true;
            return NULL;
        }
        b->next = c->d->blocks;
        b->used = 0;
        b->cap = cap;
        c->d->blocks = b;
    }
    void *p = b->data + b->used;
    b->used += size;
    return p;
}

static char *arena_strndup(struct dparse *c, const char *s, size_t len)
{
    char *p = arena_alloc(c, len + 1);
    if (p == NULL)
        return NULL;
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

static char *arena_printf(struct dparse *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static char *arena_printf(struct dparse *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *p = arena_alloc(c, (size_t)n + 1);
    if (p == NULL)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

/* ---- errors ------------------------------------------------------------------------------ */

static void add_error_v(struct dparse *c, struct desc_pos pos, bool with_path, const char *fmt,
                        va_list ap) __attribute__((format(printf, 4, 0)));
static void add_error_v(struct dparse *c, struct desc_pos pos, bool with_path, const char *fmt,
                        va_list ap)
{
    struct desc *d = c->d;
    if (d->nr_errors >= DESC_MAX_ERRORS) {
        d->errors_dropped++;
        return;
    }
    char text[1024];
    int n = 0;
    if (with_path && c->path_len > 0)
        n = snprintf(text, sizeof(text), "%s: ", c->path);
    vsnprintf(text + n, sizeof(text) - (size_t)n, fmt, ap);
    char *msg = arena_strndup(c, text, strlen(text));
    if (msg == NULL)
        return;
    d->errors[d->nr_errors++] = (struct desc_error){.pos = pos, .msg = msg};
}

/* An error about the node at @p pos, its message prefixed with where the walk is. */
static void errorf(struct dparse *c, struct desc_pos pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void errorf(struct dparse *c, struct desc_pos pos, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    add_error_v(c, pos, true, fmt, ap);
    va_end(ap);
}

/* An error whose message says itself what it is about. */
static void error_at(struct dparse *c, struct desc_pos pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void error_at(struct dparse *c, struct desc_pos pos, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    add_error_v(c, pos, false, fmt, ap);
    va_end(ap);
}

static size_t path_push(struct dparse *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static size_t path_push(struct dparse *c, const char *fmt, ...)
{
    size_t mark = c->path_len;
    if (c->path_len < sizeof(c->path) - 1) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(c->path + c->path_len, sizeof(c->path) - c->path_len, fmt, ap);
        va_end(ap);
        if (n > 0)
            c->path_len += (size_t)n;
        if (c->path_len >= sizeof(c->path))
            c->path_len = sizeof(c->path) - 1;
    }
    return mark;
}

/* A key below the current node: "vms" at the top, ".kernel" further down. */
static size_t path_push_key(struct dparse *c, const char *key)
{
    return path_push(c, c->path_len == 0 ? "%s" : ".%s", key);
}

static void path_pop(struct dparse *c, size_t mark)
{
    c->path_len = mark;
    c->path[mark] = '\0';
}

/* ---- nodes ------------------------------------------------------------------------------- */

static struct desc_pos pos_of(const yaml_node_t *n)
{
    return (struct desc_pos){(unsigned)n->start_mark.line + 1, (unsigned)n->start_mark.column + 1};
}

static yaml_node_t *node_at(struct dparse *c, int index)
{
    return yaml_document_get_node(c->doc, index);
}

static const char *text_of(const yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

static bool is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *s = text_of(n);
    return s[0] == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
           strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0;
}

/* Report that @p n is not @p want, saying what it is instead. */
static void wrong(struct dparse *c, const yaml_node_t *n, const char *want)
{
    if (n->type == YAML_MAPPING_NODE)
        errorf(c, pos_of(n), "expected %s, got a mapping", want);
    else if (n->type == YAML_SEQUENCE_NODE)
        errorf(c, pos_of(n), "expected %s, got a list", want);
    else if (is_null(n))
        errorf(c, pos_of(n), "expected %s, got nothing", want);
    else
        errorf(c, pos_of(n), "expected %s, got '%.60s'", want, text_of(n));
}

/* A scalar that is not null, without NUL bytes (a "\0" escape would cut it short). */
static bool want_text(struct dparse *c, const yaml_node_t *n, const char *want, const char **out)
{
    if (n->type != YAML_SCALAR_NODE || is_null(n)) {
        wrong(c, n, want);
        return false;
    }
    if (strlen(text_of(n)) != n->data.scalar.length) {
        errorf(c, pos_of(n), "expected %s, got text with a NUL byte", want);
        return false;
    }
    *out = text_of(n);
    return true;
}

static bool want_string(struct dparse *c, const yaml_node_t *n, const char *want, const char **out)
{
    const char *s;
    if (!want_text(c, n, want, &s))
        return false;
    *out = arena_strndup(c, s, strlen(s));
    return *out != NULL;
}

/* A decimal number from @p min to @p max; quoting does not matter. */
static bool want_uint(struct dparse *c, const yaml_node_t *n, uint64_t min, uint64_t max,
                      uint64_t *out)
{
    char want[80];
    snprintf(want, sizeof(want), "a number from %llu to %llu", (unsigned long long)min,
             (unsigned long long)max);
    const char *s;
    if (!want_text(c, n, want, &s))
        return false;
    uint64_t v = 0;
    bool ok = s[0] != '\0';
    for (const char *p = s; *p != '\0' && ok; p++)
        ok = *p >= '0' && *p <= '9' && !checked_mul_u64(v, 10, &v) &&
             !checked_add_u64(v, (uint64_t)(*p - '0'), &v);
    if (!ok || v < min || v > max) {
        wrong(c, n, want);
        return false;
    }
    *out = v;
    return true;
}

static bool want_unsigned(struct dparse *c, const yaml_node_t *n, unsigned min, unsigned max,
                          unsigned *out)
{
    uint64_t v;
    if (!want_uint(c, n, min, max, &v))
        return false;
    *out = (unsigned)v;
    return true;
}

static bool want_bool(struct dparse *c, const yaml_node_t *n, bool *out)
{
    const char *s;
    if (!want_text(c, n, "true or false", &s))
        return false;
    if (strcmp(s, "true") == 0) {
        *out = true;
    } else if (strcmp(s, "false") == 0) {
        *out = false;
    } else {
        wrong(c, n, "true or false");
        return false;
    }
    return true;
}

/* A path as written, made relative to the description's directory. */
static bool want_path(struct dparse *c, const yaml_node_t *n, const char **out)
{
    const char *s;
    if (!want_text(c, n, "a path", &s))
        return false;
    if (s[0] == '/' || strcmp(c->d->base_dir, ".") == 0)
        *out = arena_strndup(c, s, strlen(s));
    else
        *out = arena_printf(c, "%s/%s", c->d->base_dir, s);
    return *out != NULL;
}

static const char *path_problem(int r)
{
    switch (r) {
    case -ENOENT:
    case -ENOTDIR:
        return "no such file";
    case -EACCES:
    case -EPERM:
        return "permission denied";
    case -EINVAL:
    case -EISDIR:
        return "not the right kind of file";
    default:
        return strerror(-r);
    }
}

/* Ask the host whether @p path is what @p kind says; an error at @p pos when not. */
static void check_path(struct dparse *c, const char *what, const char *path,
                       enum desc_path_kind kind, struct desc_pos pos)
{
    if (c->host->check_path == NULL || path == NULL)
        return;
    int r = c->host->check_path(path, kind, c->host->ctx);
    if (r == 0)
        return;
    static const char *const need[] = {
        [DESC_PATH_FILE] = "a readable regular file",
        [DESC_PATH_IMAGE] = "a regular file or a block device",
        [DESC_PATH_PROGRAM] = "an executable program",
        [DESC_PATH_DIR] = "a directory",
    };
    if (r == -EINVAL || r == -EISDIR)
        errorf(c, pos, "%s '%s' is not %s", what, path, need[kind]);
    else
        errorf(c, pos, "%s '%s': %s", what, path, path_problem(r));
}

/* The directory a file would be created in must exist. */
static void check_parent(struct dparse *c, const char *what, const char *path, struct desc_pos pos)
{
    const char *slash = strrchr(path, '/');
    char dir[PATH_TEXT_MAX];
    if (slash == NULL)
        snprintf(dir, sizeof(dir), ".");
    else if (slash == path)
        snprintf(dir, sizeof(dir), "/");
    else
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
    if (c->host->check_path == NULL)
        return;
    int r = c->host->check_path(dir, DESC_PATH_DIR, c->host->ctx);
    if (r != 0)
        errorf(c, pos, "%s '%s': its directory '%s' does not exist or is not usable", what, path,
               dir);
}

/* Remember a path something on the host creates or listens on; the same path twice is an
 * error (two backends cannot listen on one socket, two logs would interleave). */
static void claim_host_path(struct dparse *c, const char *what, const char *path,
                            struct desc_pos pos)
{
    if (path == NULL)
        return;
    for (unsigned i = 0; i < c->nr_host_paths; i++) {
        if (strcmp(c->host_paths[i].path, path) == 0) {
            errorf(c, pos, "%s '%s' is already used at line %u, column %u", what, path,
                   c->host_paths[i].pos.line, c->host_paths[i].pos.col);
            return;
        }
    }
    if (c->nr_host_paths < MAX_HOST_PATHS)
        c->host_paths[c->nr_host_paths++] = (struct claimed_path){path, pos};
}

/* ---- mappings driven by key tables --------------------------------------------------------- */

/** One key a kind of mapping takes; a table of them is the schema of that mapping. */
struct dfield {
    const char *key; /**< The key as written. */
    /** Reads the key's value into @p obj (the table's object: a VM, a device, ...). */
    void (*parse)(struct dparse *c, yaml_node_t *value, void *obj);
    bool required; /**< Missing is an error at the mapping. */
};

#define MAX_FIELDS 32

/* Walk a mapping: each key must be one of @p fields and given once; each value goes to its
 * field's parser with the key appended to the path. @p seen (optional) gets bit i for
 * field i given. False when @p n is not a mapping at all. */
static bool walk_map(struct dparse *c, yaml_node_t *n, const struct dfield *fields, size_t nr,
                     void *obj, unsigned *seen)
{
    if (seen != NULL)
        *seen = 0;
    if (n->type != YAML_MAPPING_NODE) {
        wrong(c, n, "a mapping");
        return false;
    }
    struct desc_pos first[MAX_FIELDS] = {{0, 0}};
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node_at(c, p->key), *v = node_at(c, p->value);
        if (k == NULL || v == NULL)
            continue;
        if (k->type != YAML_SCALAR_NODE) {
            errorf(c, pos_of(k), "keys must be names, not %s",
                   k->type == YAML_MAPPING_NODE ? "mappings" : "lists");
            continue;
        }
        const char *key = text_of(k);
        size_t i = 0;
        while (i < nr && strcmp(fields[i].key, key) != 0)
            i++;
        if (i == nr) {
            char list[512];
            size_t len = 0;
            for (size_t j = 0; j < nr && len < sizeof(list); j++) {
                int w = snprintf(list + len, sizeof(list) - len, "%s%s", j > 0 ? ", " : "",
                                 fields[j].key);
                if (w > 0)
                    len += (size_t)w;
            }
            errorf(c, pos_of(k), "unknown key '%.60s' (expected %s)", key, list);
            continue;
        }
        if (first[i].line != 0) {
            errorf(c, pos_of(k), "'%s' is given twice (first at line %u, column %u)", key,
                   first[i].line, first[i].col);
            continue;
        }
        first[i] = pos_of(k);
        if (seen != NULL)
            *seen |= 1u << i;
        size_t mark = path_push_key(c, key);
        if (fields[i].parse != NULL)
            fields[i].parse(c, v, obj);
        path_pop(c, mark);
    }
    for (size_t i = 0; i < nr; i++)
        if (fields[i].required && first[i].line == 0)
            errorf(c, pos_of(n), "'%s' is required", fields[i].key);
    return true;
}

/* The value of @p key in the mapping @p n, or NULL. */
static yaml_node_t *find_key(struct dparse *c, yaml_node_t *n, const char *key)
{
    if (n->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node_at(c, p->key);
        if (k != NULL && k->type == YAML_SCALAR_NODE && strcmp(text_of(k), key) == 0)
            return node_at(c, p->value);
    }
    return NULL;
}

/* Field indices for walk_map()'s seen mask. */
#define SEEN(i) (1u << (i))

/* ---- values ---------------------------------------------------------------------------- */

int desc_parse_size(const char *s, uint64_t *out)
{
    if (s[0] < '0' || s[0] > '9')
        return -EINVAL;
    uint64_t v = 0;
    const char *p = s;
    for (; *p >= '0' && *p <= '9'; p++)
        if (checked_mul_u64(v, 10, &v) || checked_add_u64(v, (uint64_t)(*p - '0'), &v))
            return -EINVAL;
    unsigned shift = 20;
    if (*p != '\0') {
        switch (toupper((unsigned char)*p)) {
        case 'K':
            shift = 10;
            break;
        case 'M':
            shift = 20;
            break;
        case 'G':
            shift = 30;
            break;
        case 'T':
            shift = 40;
            break;
        default:
            return -EINVAL;
        }
        p++;
        if (*p == 'i')
            p++;
        if (*p == 'B' || *p == 'b')
            p++;
        if (*p != '\0')
            return -EINVAL;
    }
    if (v > (UINT64_MAX >> shift))
        return -EINVAL;
    *out = v << shift;
    return 0;
}

static bool want_size(struct dparse *c, const yaml_node_t *n, uint64_t *out)
{
    const char *s;
    if (!want_text(c, n, "a size", &s))
        return false;
    if (desc_parse_size(s, out) != 0) {
        errorf(c, pos_of(n),
               "'%.60s' is not a size: expected a number of MiB or a number with K, M, G or T "
               "(256M, 1G)",
               s);
        return false;
    }
    return true;
}

/* A duration: a number with ms, s, m or h; a bare number is seconds. */
static bool want_duration(struct dparse *c, const yaml_node_t *n, unsigned *ms)
{
    const char *s;
    if (!want_text(c, n, "a duration", &s))
        return false;
    uint64_t v = 0;
    const char *p = s;
    bool ok = *p >= '0' && *p <= '9';
    for (; ok && *p >= '0' && *p <= '9'; p++)
        ok = !checked_mul_u64(v, 10, &v) && !checked_add_u64(v, (uint64_t)(*p - '0'), &v);
    uint64_t unit = 0;
    if (strcmp(p, "ms") == 0)
        unit = 1;
    else if (strcmp(p, "s") == 0 || *p == '\0')
        unit = 1000;
    else if (strcmp(p, "m") == 0)
        unit = 60000;
    else if (strcmp(p, "h") == 0)
        unit = 3600000;
    if (!ok || unit == 0 || checked_mul_u64(v, unit, &v) || v == 0 || v > MAX_DURATION_MS) {
        errorf(c, pos_of(n),
               "'%.60s' is not a duration from 1ms to 24h: expected a number with ms, s, m or h "
               "(a bare number is seconds)",
               s);
        return false;
    }
    *ms = (unsigned)v;
    return true;
}

/* A name of a VM or backend: 1 to 32 of [a-z0-9-], not starting with '-'. */
static bool name_ok(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > DESC_NAME_MAX || s[0] == '-')
        return false;
    for (const char *p = s; *p != '\0'; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-'))
            return false;
    return true;
}

static bool want_name(struct dparse *c, const yaml_node_t *n, const char **out)
{
    const char *s;
    if (!want_text(c, n, "a name", &s))
        return false;
    if (!name_ok(s)) {
        errorf(c, pos_of(n),
               "'%.60s' is not a valid name: 1 to %u of a-z, 0-9 and '-', not "
               "starting with '-'",
               s, DESC_NAME_MAX);
        return false;
    }
    *out = arena_strndup(c, s, strlen(s));
    return *out != NULL;
}

static bool want_mode(struct dparse *c, const yaml_node_t *n, enum desc_mem_mode *out)
{
    const char *s;
    if (!want_text(c, n, "isolated or shared", &s))
        return false;
    if (strcmp(s, "isolated") == 0) {
        *out = DESC_MEM_ISOLATED;
    } else if (strcmp(s, "shared") == 0) {
        *out = DESC_MEM_SHARED;
    } else {
        wrong(c, n, "isolated or shared");
        return false;
    }
    return true;
}

/* ---- restart policy ---------------------------------------------------------------------- */

static void restart_defaults(struct desc_restart *r, struct desc_pos pos)
{
    *r = (struct desc_restart){
        .policy = DESC_RESTART_ON_FAILURE,
        .backoff_ms = DESC_DEFAULT_BACKOFF_MS,
        .backoff_max_ms = DESC_DEFAULT_BACKOFF_MAX_MS,
        .limit = DESC_DEFAULT_RESTART_LIMIT,
        .pos = pos,
    };
}

static bool want_policy(struct dparse *c, const yaml_node_t *n, enum desc_restart_policy *out)
{
    static const char want[] = "never, on-failure or always";
    const char *s;
    if (!want_text(c, n, want, &s))
        return false;
    if (strcmp(s, "never") == 0) {
        *out = DESC_RESTART_NEVER;
    } else if (strcmp(s, "on-failure") == 0) {
        *out = DESC_RESTART_ON_FAILURE;
    } else if (strcmp(s, "always") == 0) {
        *out = DESC_RESTART_ALWAYS;
    } else {
        wrong(c, n, want);
        return false;
    }
    return true;
}

static void f_restart_policy(struct dparse *c, yaml_node_t *v, void *obj)
{
    want_policy(c, v, &((struct desc_restart *)obj)->policy);
}

static void f_restart_backoff(struct dparse *c, yaml_node_t *v, void *obj)
{
    want_duration(c, v, &((struct desc_restart *)obj)->backoff_ms);
}

static void f_restart_backoff_max(struct dparse *c, yaml_node_t *v, void *obj)
{
    want_duration(c, v, &((struct desc_restart *)obj)->backoff_max_ms);
}

static void f_restart_limit(struct dparse *c, yaml_node_t *v, void *obj)
{
    want_unsigned(c, v, 0, 1000, &((struct desc_restart *)obj)->limit);
}

static const struct dfield restart_fields[] = {
    {"policy", f_restart_policy, true},
    {"backoff", f_restart_backoff, false},
    {"backoff-max", f_restart_backoff_max, false},
    {"limit", f_restart_limit, false},
};

/* restart: a policy alone, or a mapping with the back-off too. */
static void parse_restart(struct dparse *c, yaml_node_t *v, struct desc_restart *r)
{
    r->pos = pos_of(v);
    if (v->type == YAML_SCALAR_NODE) {
        want_policy(c, v, &r->policy);
        return;
    }
    if (v->type != YAML_MAPPING_NODE) {
        wrong(c, v, "a policy (never, on-failure, always) or a mapping");
        return;
    }
    walk_map(c, v, restart_fields, sizeof(restart_fields) / sizeof(restart_fields[0]), r, NULL);
    if (r->backoff_ms > r->backoff_max_ms)
        errorf(c, pos_of(v), "backoff (%u ms) is longer than backoff-max (%u ms)", r->backoff_ms,
               r->backoff_max_ms);
}

static void f_vm_restart(struct dparse *c, yaml_node_t *v, void *obj)
{
    parse_restart(c, v, &((struct desc_vm *)obj)->restart);
}

static void f_backend_restart(struct dparse *c, yaml_node_t *v, void *obj)
{
    parse_restart(c, v, &((struct desc_backend *)obj)->restart);
}

/* ---- console routing --------------------------------------------------------------------- */

static void f_route_log(struct dparse *c, yaml_node_t *v, void *obj)
{
    struct desc_route *r = obj;
    if (!want_path(c, v, &r->log))
        return;
    check_parent(c, "log", r->log, pos_of(v));
    claim_host_path(c, "log", r->log, pos_of(v));
}

static void f_route_input(struct dparse *c, yaml_node_t *v, void *obj)
{
    want_bool(c, v, &((struct desc_route *)obj)->input);
}

static const struct dfield route_fields[] = {
    {"log", f_route_log, false},
    {"input", f_route_input, false},
};

static void f_vm_serial(struct dparse *c, yaml_node_t *v, void *obj)
{
    walk_map(c, v, route_fields, 2, &((struct desc_vm *)obj)->serial, NULL);
}

/* ---- backends ---------------------------------------------------------------------------- */

static const char *const backend_type_names[] = {
    [DESC_BACKEND_BLK] = "blk",
    [DESC_BACKEND_SWITCH] = "switch",
    [DESC_BACKEND_P2P] = "p2p",
    [DESC_BACKEND_EXTERNAL] = "external",
};

static const char *const dev_kind_names[] = {
    [DESC_DEV_DISK] = "blk",        [DESC_DEV_NIC] = "net", [DESC_DEV_VSOCK] = "vsock",
    [DESC_DEV_CONSOLE] = "console", [DESC_DEV_RNG] = "rng", [DESC_DEV_FS] = "fs",
};

const char *desc_dev_kind_name(enum desc_dev_kind kind)
{
    static const char *const keys[] = {
        [DESC_DEV_DISK] = "disk",       [DESC_DEV_NIC] = "nic", [DESC_DEV_VSOCK] = "vsock",
        [DESC_DEV_CONSOLE] = "console", [DESC_DEV_RNG] = "rng", [DESC_DEV_FS] = "fs",
    };
    return (unsigned)kind < sizeof(keys) / sizeof(keys[0]) ? keys[kind] : "?";
}

static void f_ignore(struct dparse *c, yaml_node_t *v, void *obj)
{
    (void)c;
    (void)v;
    (void)obj;
}

static void f_blk_image(struct dparse *c, yaml_node_t *v, void *obj)
{
    want_path(c, v, &((struct desc_backend *)obj)->image);
}

static void f_blk_readonly(struct dparse *c, yaml_node_t *v, void *obj)
{
    want_bool(c, v, &((struct desc_backend *)obj)->readonly);
}

static void f_blk_queues(struct dparse *c, yaml_node_t *v, void *obj)
{
    want_unsigned(c, v, 1, MAX_QUEUES, &((struct desc_backend *)obj)->queues);
}

static void f_blk_create(struct dparse *c, yaml_node_t *v, void *obj)
{
    struct desc_backend *b = obj;
    uint64_t size;
    if (!want_size(c, v, &size))
        return;
    if (size == 0 || (size & 511) != 0)
        errorf(c, pos_of(v), "the size must be a non-zero multiple of 512 bytes");
    else
        b->create_bytes = size;
}

/* A tap interface name: what the kernel takes (IFNAMSIZ). */
static bool ifname_ok(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > IFNAME_MAX || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
        return false;
    for (const char *p = s; *p != '\0'; p++)
        if (*p == '/' || *p == ':' || isspace((unsigned char)*p) || !isprint((unsigned char)*p))
            return false;
    return true;
}

static void f_net_taps(struct dparse *c, yaml_node_t *v, void *obj)
{
    struct desc_backend *b = obj;
    if (v->type != YAML_SEQUENCE_NODE) {
        wrong(c, v, "a list of tap interface names");
        return;
    }
    for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
         it++) {
        yaml_node_t *t = node_at(c, *it);
        size_t mark = path_push(c, "[%u]", (unsigned)(it - v->data.sequence.items.start));
        const char *name;
        if (t != NULL && want_text(c, t, "a tap interface name", &name)) {
            if (!ifname_ok(name)) {
                errorf(c, pos_of(t), "'%.60s' is not an interface name (1 to %u bytes, no '/')",
                       name, IFNAME_MAX);
            } else if (b->nr_taps >= DESC_MAX_TAPS) {
                errorf(c, pos_of(t), "at most %u taps", DESC_MAX_TAPS);
            } else {
                b->taps[b->nr_taps++] = arena_strndup(c, name, strlen(name));
                if (b->type == DESC_BACKEND_P2P && b->nr_taps > 2)
                    errorf(c, pos_of(t), "a p2p link has exactly two ends; this is a third");
            }
        }
        path_pop(c, mark);
    }
}

static bool want_dev_kind(struct dparse *c, const yaml_node_t *n, enum desc_dev_kind *out)
{
    static const char want[] = "one of blk, net, fs, vsock, console, rng";
    const char *s;
    if (!want_text(c, n, want, &s))
        return false;
    for (unsigned k = 0; k < sizeof(dev_kind_names) / sizeof(dev_kind_names[0]); k++) {
        if (strcmp(s, dev_kind_names[k]) == 0) {
            *out = (enum desc_dev_kind)k;
            return true;
        }
    }
    wrong(c, n, want);
    return false;
}

static void f_ext_device(struct dparse *c, yaml_node_t *v, void *obj)
{
    want_dev_kind(c, v, &((struct desc_backend *)obj)->device);
}

static void f_ext_command(struct dparse *c, yaml_node_t *v, void *obj)
{
    struct desc_backend *b = obj;
    if (v->type != YAML_SEQUENCE_NODE ||
        v->data.sequence.items.start == v->data.sequence.items.top) {
        wrong(c, v, "a list: the program and its arguments");
        return;
    }
    bool has_socket = false;
    for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
         it++) {
        yaml_node_t *w = node_at(c, *it);
        unsigned i = (unsigned)(it - v->data.sequence.items.start);
        size_t mark = path_push(c, "[%u]", i);
        const char *word;
        if (w == NULL || !want_text(c, w, "a word of the command", &word)) {
            path_pop(c, mark);
            continue;
        }
        if (b->argc >= DESC_MAX_ARGS) {
            errorf(c, pos_of(w), "at most %u words", DESC_MAX_ARGS);
            path_pop(c, mark);
            break;
        }
        if (i == 0 && strchr(word, '/') != NULL) {
            want_path(c, w, &b->argv[0]);
            check_path(c, "program", b->argv[0], DESC_PATH_PROGRAM, pos_of(w));
        } else {
            b->argv[b->argc] = arena_strndup(c, word, strlen(word));
            if (i == 0)
                check_path(c, "program", word, DESC_PATH_PROGRAM, pos_of(w));
        }
        b->argc++;
        has_socket |= strstr(word, "{socket}") != NULL;
        path_pop(c, mark);
    }
    b->argv[b->argc] = NULL;
    if (!has_socket)
        errorf(c, pos_of(v),
               "no word contains {socket}, where the supervisor puts the path of "
               "the vhost-user socket the backend must listen on");
}

static const struct dfield blk_fields[] = {
    {"type", f_ignore, true},
    {"image", f_blk_image, true},
    {"readonly", f_blk_readonly, false},
    {"queues", f_blk_queues, false},
    {"create", f_blk_create, false},
    {"restart", f_backend_restart, false},
};
enum { BLK_IMAGE = 1 };

static const struct dfield net_fields[] = {
    {"type", f_ignore, true},
    {"taps", f_net_taps, false},
    {"restart", f_backend_restart, false},
};

static const struct dfield ext_fields[] = {
    {"type", f_ignore, true},
    {"device", f_ext_device, true},
    {"command", f_ext_command, true},
    {"restart", f_backend_restart, false},
};

static void parse_backend(struct dparse *c, yaml_node_t *v, struct desc_backend *b)
{
    restart_defaults(&b->restart, b->pos);
    b->queues = 1;
    if (v->type != YAML_MAPPING_NODE) {
        c->bad_type[b - c->d->backends] = true;
        wrong(c, v, "a mapping");
        return;
    }
    yaml_node_t *t = find_key(c, v, "type");
    if (t == NULL) {
        c->bad_type[b - c->d->backends] = true;
        errorf(c, pos_of(v), "'type' is required (blk, switch, p2p or external)");
        return;
    }
    static const char want[] = "blk, switch, p2p or external";
    const char *s;
    size_t mark = path_push_key(c, "type");
    bool ok = want_text(c, t, want, &s);
    unsigned type = 0;
    while (ok && type < sizeof(backend_type_names) / sizeof(backend_type_names[0]) &&
           strcmp(s, backend_type_names[type]) != 0)
        type++;
    if (ok && type == sizeof(backend_type_names) / sizeof(backend_type_names[0])) {
        wrong(c, t, want);
        ok = false;
    }
    path_pop(c, mark);
    if (!ok) {
        c->bad_type[b - c->d->backends] = true;
        return; /* the other keys depend on the type */
    }
    b->type = (enum desc_backend_type)type;
    unsigned seen;
    switch (b->type) {
    case DESC_BACKEND_BLK:
        walk_map(c, v, blk_fields, sizeof(blk_fields) / sizeof(blk_fields[0]), b, &seen);
        if ((seen & SEEN(BLK_IMAGE)) && b->image != NULL) {
            yaml_node_t *img = find_key(c, v, "image");
            mark = path_push_key(c, "image");
            /* Two writers on one image corrupt it; several readers are fine. (Paths are
             * compared as written: two spellings of one file are not caught.) */
            for (const struct desc_backend *o = c->d->backends; o < b; o++)
                if (o->type == DESC_BACKEND_BLK && o->image != NULL &&
                    strcmp(o->image, b->image) == 0 && !(o->readonly && b->readonly))
                    errorf(c, pos_of(img),
                           "the image '%s' is already served by backend '%s' (line %u); only "
                           "read-only backends may share an image",
                           b->image, o->name, o->pos.line);
            /* A missing image is fine when the supervisor is to create it. */
            bool missing = c->host->check_path != NULL &&
                           c->host->check_path(b->image, DESC_PATH_IMAGE, c->host->ctx) == -ENOENT;
            if (b->create_bytes != 0 && missing)
                check_parent(c, "image", b->image, pos_of(img));
            else
                check_path(c, "image", b->image, DESC_PATH_IMAGE, pos_of(img));
            path_pop(c, mark);
        }
        break;
    case DESC_BACKEND_SWITCH:
    case DESC_BACKEND_P2P:
        walk_map(c, v, net_fields, sizeof(net_fields) / sizeof(net_fields[0]), b, NULL);
        break;
    case DESC_BACKEND_EXTERNAL:
        walk_map(c, v, ext_fields, sizeof(ext_fields) / sizeof(ext_fields[0]), b, NULL);
        break;
    }
}

/* ---- devices ----------------------------------------------------------------------------- */

/** What a device's key parsers need: the device, and its VM for checks across devices
 * (an fs tag must be unique in the VM). */
struct dev_parse {
    struct desc_vm *vm;      /**< The VM. */
    struct desc_device *dev; /**< The device being read. */
};

static struct desc_device *new_device(struct dparse *c, struct desc_vm *vm, enum desc_dev_kind kind,
                                      const yaml_node_t *n)
{
    if (vm->nr_devices >= DESC_MAX_DEVICES) {
        errorf(c, pos_of(n), "at most %u devices per VM", DESC_MAX_DEVICES);
        return NULL;
    }
    struct desc_device *d = &vm->devices[vm->nr_devices++];
    *d = (struct desc_device){
        .kind = kind,
        .pos = pos_of(n),
        .backend = -1,
        .mode = DESC_MEM_ISOLATED,
        .poll_us = DEFAULT_POLL_US,
        .timeout = kind == DESC_DEV_DISK ? DEFAULT_TIMEOUT : 0,
        .route = {.input = true},
    };
    return d;
}

/* Which backends a device of each kind can use, for the message when it names another. */
static bool backend_fits(const struct desc_backend *b, enum desc_dev_kind kind)
{
    if (b->type == DESC_BACKEND_EXTERNAL)
        return b->device == kind;
    if (kind == DESC_DEV_DISK)
        return b->type == DESC_BACKEND_BLK;
    if (kind == DESC_DEV_NIC)
        return b->type == DESC_BACKEND_SWITCH || b->type == DESC_BACKEND_P2P;
    return false;
}

static const char *backend_wanted(enum desc_dev_kind kind)
{
    switch (kind) {
    case DESC_DEV_DISK:
        return "a blk backend, or an external one with device: blk";
    case DESC_DEV_NIC:
        return "a switch or p2p backend, or an external one with device: net";
    case DESC_DEV_FS:
        return "an external backend with device: fs (virtiofsd)";
    case DESC_DEV_VSOCK:
        return "an external backend with device: vsock";
    case DESC_DEV_CONSOLE:
        return "an external backend with device: console";
    case DESC_DEV_RNG:
        return "an external backend with device: rng";
    }
    return "?";
}

/* Resolve a device's backend: or link: into an index, and count the device as a user. */
static void f_dev_backend(struct dparse *c, yaml_node_t *v, void *obj)
{
    struct dev_parse *dc = obj;
    struct desc_device *dev = dc->dev;
    struct desc *d = c->d;
    if (!want_name(c, v, &dev->backend_name))
        return;
    dev->backend_pos = pos_of(v);
    unsigned i = 0;
    while (i < d->nr_backends && strcmp(d->backends[i].name, dev->backend_name) != 0)
        i++;
    if (i == d->nr_backends) {
        bool is_vm = false;
        for (unsigned j = 0; j < d->nr_vms && !is_vm; j++)
            is_vm = d->vms[j].name != NULL && strcmp(d->vms[j].name, dev->backend_name) == 0;
        if (is_vm || (c->top_vms != NULL && find_key(c, c->top_vms, dev->backend_name) != NULL))
            errorf(c, pos_of(v), "'%s' is a VM; expected %s", dev->backend_name,
                   backend_wanted(dev->kind));
        else
            errorf(c, pos_of(v), "no backend named '%s'", dev->backend_name);
        return;
    }
    struct desc_backend *b = &d->backends[i];
    if (!backend_fits(b, dev->kind)) {
        if (b->type == DESC_BACKEND_EXTERNAL)
            errorf(c, pos_of(v), "backend '%s' serves device: %s; a %s needs %s", b->name,
                   dev_kind_names[b->device], desc_dev_kind_name(dev->kind),
                   backend_wanted(dev->kind));
        else
            errorf(c, pos_of(v), "backend '%s' is a %s; a %s needs %s", b->name,
                   backend_type_names[b->type], desc_dev_kind_name(dev->kind),
                   backend_wanted(dev->kind));
        return;
    }
    struct backend_user *u = c->users[i];
    switch (b->type) {
    case DESC_BACKEND_BLK:
    case DESC_BACKEND_EXTERNAL:
        if (b->nr_users >= 1) {
            errorf(c, pos_of(v),
                   "backend '%s' already serves %s (line %u, column %u); %s backend serves "
                   "one device",
                   b->name, u[0].where, u[0].pos.line, u[0].pos.col,
                   b->type == DESC_BACKEND_BLK ? "a blk" : "an external");
            return;
        }
        break;
    case DESC_BACKEND_P2P:
        if (b->nr_users + b->nr_taps >= 2) {
            if (b->nr_users == 2)
                errorf(c, pos_of(v),
                       "p2p link '%s' already has two ends, %s (line %u) and %s (line %u); a "
                       "third needs a switch",
                       b->name, u[0].where, u[0].pos.line, u[1].where, u[1].pos.line);
            else
                errorf(c, pos_of(v),
                       "p2p link '%s' already has two ends (%u of them taps); a third needs a "
                       "switch",
                       b->name, b->nr_taps);
            return;
        }
        break;
    case DESC_BACKEND_SWITCH:
        if (b->nr_users + b->nr_taps >= DESC_MAX_SWITCH_PORTS) {
            errorf(c, pos_of(v), "switch '%s' has %u ports already, the most it takes", b->name,
                   DESC_MAX_SWITCH_PORTS);
            return;
        }
        break;
    }
    if (b->nr_users < 2) {
        /* The path of the device, without the ".backend" or ".link" just pushed. */
        const char *dot = strrchr(c->path, '.');
        u[b->nr_users].where =
            arena_strndup(c, c->path, dot != NULL ? (size_t)(dot - c->path) : c->path_len);
        u[b->nr_users].pos = pos_of(v);
    }
    dev->port = b->nr_users++;
    dev->backend = (int)i;
}

static void f_dev_mode(struct dparse *c, yaml_node_t *v, void *obj)
{
    want_mode(c, v, &((struct dev_parse *)obj)->dev->mode);
}

static void f_dev_poll(struct dparse *c, yaml_node_t *v, void *obj)
{
    want_unsigned(c, v, 0, MAX_POLL_US, &((struct dev_parse *)obj)->dev->poll_us);
}

static void f_disk_timeout(struct dparse *c, yaml_node_t *v, void *obj)
{
    want_unsigned(c, v, 1, MAX_TIMEOUT, &((struct dev_parse *)obj)->dev->timeout);
}

static void f_nic_mac(struct dparse *c, yaml_node_t *v, void *obj)
{
    struct desc_device *dev = ((struct dev_parse *)obj)->dev;
    const char *s;
    if (!want_text(c, v, "a MAC address", &s))
        return;
    bool ok = strlen(s) == 17;
    for (unsigned i = 0; ok && i < 6; i++) {
        const char *p = s + 3 * i;
        ok = isxdigit((unsigned char)p[0]) && isxdigit((unsigned char)p[1]) &&
             p[2] == (i == 5 ? '\0' : ':');
        if (ok) {
            char hex[3] = {p[0], p[1], '\0'};
            dev->mac[i] = (uint8_t)strtoul(hex, NULL, 16);
        }
    }
    if (!ok || (dev->mac[0] & 1) != 0) {
        errorf(c, pos_of(v), "'%.60s' is not a unicast MAC address (like 02:00:00:00:00:01)", s);
        return;
    }
    dev->mac_given = true;
}

static void f_fs_tag(struct dparse *c, yaml_node_t *v, void *obj)
{
    struct dev_parse *dc = obj;
    const char *s;
    if (!want_text(c, v, "a mount tag", &s))
        return;
    if (strlen(s) > FS_TAG_MAX) {
        errorf(c, pos_of(v), "the tag '%.60s' is longer than %u bytes", s, FS_TAG_MAX);
        return;
    }
    for (unsigned i = 0; i < dc->vm->nr_devices; i++) {
        const struct desc_device *o = &dc->vm->devices[i];
        if (o != dc->dev && o->kind == DESC_DEV_FS && o->tag != NULL && strcmp(o->tag, s) == 0) {
            errorf(c, pos_of(v), "the tag '%s' is already used by another fs of this VM (line %u)",
                   s, o->pos.line);
            return;
        }
    }
    dc->dev->tag = arena_strndup(c, s, strlen(s));
}

static void f_vsock_cid(struct dparse *c, yaml_node_t *v, void *obj)
{
    /* 0-2 are the hypervisor, local and host; 2^32-1 is "any". */
    want_uint(c, v, 3, 0xfffffffeull, &((struct dev_parse *)obj)->dev->cid);
}

static void f_vsock_uds(struct dparse *c, yaml_node_t *v, void *obj)
{
    struct desc_device *dev = ((struct dev_parse *)obj)->dev;
    if (!want_path(c, v, &dev->uds))
        return;
    if (strlen(dev->uds) > UDS_MAX)
        errorf(c, pos_of(v), "the socket path '%s' is longer than %u bytes", dev->uds, UDS_MAX);
    check_parent(c, "socket", dev->uds, pos_of(v));
    claim_host_path(c, "socket", dev->uds, pos_of(v));
}

static void f_console_log(struct dparse *c, yaml_node_t *v, void *obj)
{
    f_route_log(c, v, &((struct dev_parse *)obj)->dev->route);
}

static void f_console_input(struct dparse *c, yaml_node_t *v, void *obj)
{
    f_route_input(c, v, &((struct dev_parse *)obj)->dev->route);
}

static bool port_name_ok(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > PORT_NAME_MAX)
        return false;
    for (const char *p = s; *p != '\0'; p++)
        if (!isalnum((unsigned char)*p) && *p != '.' && *p != '_' && *p != '-')
            return false;
    return true;
}

static void f_port_socket(struct dparse *c, yaml_node_t *v, void *obj)
{
    struct desc_port *p = obj;
    if (!want_path(c, v, &p->path))
        return;
    p->kind = DESC_PORT_SOCKET;
    if (strlen(p->path) > SOCKET_PATH_MAX)
        errorf(c, pos_of(v), "the socket path '%s' is longer than %u bytes", p->path,
               SOCKET_PATH_MAX);
    check_parent(c, "socket", p->path, pos_of(v));
    claim_host_path(c, "socket", p->path, pos_of(v));
}

static void f_port_file(struct dparse *c, yaml_node_t *v, void *obj)
{
    struct desc_port *p = obj;
    if (!want_path(c, v, &p->path))
        return;
    p->kind = DESC_PORT_FILE;
    check_parent(c, "file", p->path, pos_of(v));
    claim_host_path(c, "file", p->path, pos_of(v));
}

static const struct dfield port_fields[] = {
    {"socket", f_port_socket, false},
    {"file", f_port_file, false},
};

static void f_console_ports(struct dparse *c, yaml_node_t *v, void *obj)
{
    struct desc_device *dev = ((struct dev_parse *)obj)->dev;
    if (v->type != YAML_MAPPING_NODE) {
        wrong(c, v, "a mapping of port names");
        return;
    }
    for (yaml_node_pair_t *pr = v->data.mapping.pairs.start; pr < v->data.mapping.pairs.top; pr++) {
        yaml_node_t *k = node_at(c, pr->key), *pv = node_at(c, pr->value);
        const char *name;
        if (k == NULL || pv == NULL || !want_text(c, k, "a port name", &name))
            continue;
        if (!port_name_ok(name) || strcmp(name, "com1") == 0 || strcmp(name, "com2") == 0) {
            errorf(c, pos_of(k),
                   "'%.60s' is not a port name: 1 to %u of A-Z, a-z, 0-9, '.', '_', '-', and "
                   "not com1 or com2 (the UARTs)",
                   name, PORT_NAME_MAX);
            continue;
        }
        bool dup = false;
        for (unsigned i = 0; i < dev->nr_ports && !dup; i++)
            dup = strcmp(dev->ports[i].name, name) == 0;
        if (dup) {
            errorf(c, pos_of(k), "the port '%s' is given twice", name);
            continue;
        }
        if (dev->nr_ports >= DESC_MAX_CONSOLE_PORTS) {
            errorf(c, pos_of(k), "at most %u named ports", DESC_MAX_CONSOLE_PORTS);
            continue;
        }
        struct desc_port *p = &dev->ports[dev->nr_ports++];
        *p = (struct desc_port){.name = arena_strndup(c, name, strlen(name)),
                                .kind = DESC_PORT_LINK,
                                .link = -1,
                                .pos = pos_of(k)};
        if (is_null(pv))
            continue; /* wired by a serial link */
        size_t mark = path_push(c, ".%s", name);
        unsigned seen;
        if (walk_map(c, pv, port_fields, 2, p, &seen) && seen == (SEEN(0) | SEEN(1)))
            errorf(c, pos_of(pv), "give socket: or file:, not both");
        path_pop(c, mark);
    }
}

static const struct dfield disk_fields[] = {
    {"backend", f_dev_backend, true},
    {"mode", f_dev_mode, false},
    {"poll", f_dev_poll, false},
    {"timeout", f_disk_timeout, false},
};

static const struct dfield nic_fields[] = {
    {"link", f_dev_backend, true},
    {"mac", f_nic_mac, false},
    {"mode", f_dev_mode, false},
    {"poll", f_dev_poll, false},
};

static const struct dfield fs_fields[] = {
    {"backend", f_dev_backend, true},
    {"tag", f_fs_tag, true},
    {"mode", f_dev_mode, false},
    {"poll", f_dev_poll, false},
};

static const struct dfield vsock_fields[] = {
    {"backend", f_dev_backend, false}, {"cid", f_vsock_cid, false}, {"uds", f_vsock_uds, false},
    {"mode", f_dev_mode, false},       {"poll", f_dev_poll, false},
};
enum { VSOCK_BACKEND = 0, VSOCK_CID = 1, VSOCK_UDS = 2 };

static const struct dfield console_fields[] = {
    {"backend", f_dev_backend, false}, {"log", f_console_log, false},
    {"input", f_console_input, false}, {"ports", f_console_ports, false},
    {"mode", f_dev_mode, false},       {"poll", f_dev_poll, false},
};
enum { CONSOLE_BACKEND = 0, CONSOLE_OWN = SEEN(1) | SEEN(2) | SEEN(3) };

static const struct dfield rng_fields[] = {
    {"backend", f_dev_backend, false},
    {"mode", f_dev_mode, false},
    {"poll", f_dev_poll, false},
};

/* disks:, nics:, fs:: a list of device mappings. */
static void parse_device_list(struct dparse *c, yaml_node_t *v, struct desc_vm *vm,
                              enum desc_dev_kind kind, const struct dfield *fields, size_t nr)
{
    if (v->type != YAML_SEQUENCE_NODE) {
        wrong(c, v, "a list");
        return;
    }
    for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
         it++) {
        yaml_node_t *n = node_at(c, *it);
        if (n == NULL)
            continue;
        size_t mark = path_push(c, "[%u]", (unsigned)(it - v->data.sequence.items.start));
        struct dev_parse dc = {vm, new_device(c, vm, kind, n)};
        if (dc.dev != NULL)
            walk_map(c, n, fields, nr, &dc, NULL);
        path_pop(c, mark);
    }
}

static void f_vm_disks(struct dparse *c, yaml_node_t *v, void *obj)
{
    parse_device_list(c, v, obj, DESC_DEV_DISK, disk_fields,
                      sizeof(disk_fields) / sizeof(disk_fields[0]));
}

static void f_vm_nics(struct dparse *c, yaml_node_t *v, void *obj)
{
    parse_device_list(c, v, obj, DESC_DEV_NIC, nic_fields,
                      sizeof(nic_fields) / sizeof(nic_fields[0]));
}

static void f_vm_fs(struct dparse *c, yaml_node_t *v, void *obj)
{
    parse_device_list(c, v, obj, DESC_DEV_FS, fs_fields, sizeof(fs_fields) / sizeof(fs_fields[0]));
}

static void f_vm_vsock(struct dparse *c, yaml_node_t *v, void *obj)
{
    struct dev_parse dc = {obj, NULL};
    if (v->type != YAML_MAPPING_NODE) {
        wrong(c, v, "a mapping");
        return;
    }
    dc.dev = new_device(c, dc.vm, DESC_DEV_VSOCK, v);
    unsigned seen;
    if (dc.dev == NULL ||
        !walk_map(c, v, vsock_fields, sizeof(vsock_fields) / sizeof(vsock_fields[0]), &dc, &seen))
        return;
    unsigned own = seen & (SEEN(VSOCK_CID) | SEEN(VSOCK_UDS));
    if ((seen & SEEN(VSOCK_BACKEND)) ? own != 0 : own != (SEEN(VSOCK_CID) | SEEN(VSOCK_UDS)))
        errorf(c, pos_of(v), "give cid: and uds:, or backend: alone");
}

static void f_vm_console(struct dparse *c, yaml_node_t *v, void *obj)
{
    struct dev_parse dc = {obj, NULL};
    if (v->type != YAML_MAPPING_NODE) {
        wrong(c, v, "a mapping");
        return;
    }
    dc.dev = new_device(c, dc.vm, DESC_DEV_CONSOLE, v);
    unsigned seen;
    if (dc.dev != NULL &&
        walk_map(c, v, console_fields, sizeof(console_fields) / sizeof(console_fields[0]), &dc,
                 &seen) &&
        (seen & SEEN(CONSOLE_BACKEND)) && (seen & CONSOLE_OWN))
        errorf(c, pos_of(v),
               "log:, input: and ports: are for the own console backend; an "
               "external backend: decides those itself");
}

static void f_vm_rng(struct dparse *c, yaml_node_t *v, void *obj)
{
    struct dev_parse dc = {obj, NULL};
    if (v->type == YAML_SCALAR_NODE) {
        bool on;
        if (want_bool(c, v, &on) && on)
            new_device(c, dc.vm, DESC_DEV_RNG, v);
        return;
    }
    if (v->type != YAML_MAPPING_NODE) {
        wrong(c, v, "true, false or a mapping");
        return;
    }
    dc.dev = new_device(c, dc.vm, DESC_DEV_RNG, v);
    if (dc.dev != NULL)
        walk_map(c, v, rng_fields, sizeof(rng_fields) / sizeof(rng_fields[0]), &dc, NULL);
}

/* ---- VMs ------------------------------------------------------------------------------------ */

static void f_vm_kernel(struct dparse *c, yaml_node_t *v, void *obj)
{
    struct desc_vm *vm = obj;
    if (want_path(c, v, &vm->kernel))
        check_path(c, "kernel", vm->kernel, DESC_PATH_FILE, pos_of(v));
}

static void f_vm_initrd(struct dparse *c, yaml_node_t *v, void *obj)
{
    struct desc_vm *vm = obj;
    if (want_path(c, v, &vm->initrd))
        check_path(c, "initrd", vm->initrd, DESC_PATH_FILE, pos_of(v));
}

static void f_vm_cmdline(struct dparse *c, yaml_node_t *v, void *obj)
{
    struct desc_vm *vm = obj;
    /* A quoted "" is an empty command line; a bare "cmdline:" is a mistake. */
    want_string(c, v, "a kernel command line", &vm->cmdline);
}

static void f_vm_memory(struct dparse *c, yaml_node_t *v, void *obj)
{
    struct desc_vm *vm = obj;
    uint64_t bytes;
    vm->mem_pos = pos_of(v);
    if (!want_size(c, v, &bytes))
        return;
    if (bytes < MIN_MEM || bytes > MAX_MEM) {
        errorf(c, pos_of(v), "%s is out of range (16M to 1T)", text_of(v));
        return;
    }
    if ((bytes & 0xfff) != 0) {
        errorf(c, pos_of(v), "%s is not a multiple of 4K", text_of(v));
        return;
    }
    vm->mem_bytes = bytes;
    if (c->host->mem_bytes != 0 && bytes > c->host->mem_bytes) {
        errorf(c, pos_of(v), "%s (%llu MiB) is more than the host's memory (%llu MiB)", text_of(v),
               (unsigned long long)(bytes >> 20), (unsigned long long)(c->host->mem_bytes >> 20));
        c->mem_reported = true;
    }
}

static void f_vm_vcpus(struct dparse *c, yaml_node_t *v, void *obj)
{
    struct desc_vm *vm = obj;
    if (!want_unsigned(c, v, 1, MAX_VCPUS, &vm->vcpus))
        return;
    if (c->host->cpus != 0 && vm->vcpus > c->host->cpus)
        errorf(c, pos_of(v), "%u vCPUs are more than the host's %u CPUs", vm->vcpus, c->host->cpus);
}

/* A decimal number at *@p p (before @p end), saturating far above any CPU number. */
static uint64_t cpu_number(const char **p, const char *end)
{
    uint64_t v = 0;
    for (; *p < end && isdigit((unsigned char)**p); (*p)++)
        if (v < 1000000)
            v = v * 10 + (uint64_t)(**p - '0');
    return v;
}

/* One "N" or "N-M" of a host-cpus list into the VM's mask. */
static void add_cpus(struct dparse *c, const yaml_node_t *n, const char *s, size_t len,
                     struct desc_vm *vm)
{
    const char *p = s, *end = s + len;
    bool ok = p < end && isdigit((unsigned char)*p);
    uint64_t lo = cpu_number(&p, end), hi = lo;
    if (ok && p < end && *p == '-') {
        p++;
        ok = p < end && isdigit((unsigned char)*p);
        hi = cpu_number(&p, end);
    }
    if (!ok || p != end || hi < lo) {
        errorf(c, pos_of(n), "'%.*s' is not a CPU number or a range N-M", (int)len, s);
        return;
    }
    uint64_t limit = c->host->cpus != 0 && c->host->cpus < DESC_MAX_HOST_CPUS ? c->host->cpus
                                                                              : DESC_MAX_HOST_CPUS;
    if (hi >= limit) {
        if (c->host->cpus != 0 && c->host->cpus <= DESC_MAX_HOST_CPUS)
            errorf(c, pos_of(n), "host CPU %llu does not exist: the host has %u CPUs (0 to %u)",
                   (unsigned long long)hi, c->host->cpus, c->host->cpus - 1);
        else
            errorf(c, pos_of(n), "host CPU %llu is beyond the %u this format handles",
                   (unsigned long long)hi, DESC_MAX_HOST_CPUS);
        return;
    }
    for (uint64_t cpu = lo; cpu <= hi; cpu++)
        vm->host_cpus[cpu / 64] |= 1ull << (cpu % 64);
    vm->host_cpus_given = true;
}

static void add_cpu_list(struct dparse *c, const yaml_node_t *n, const char *s, struct desc_vm *vm)
{
    for (;;) {
        while (*s == ' ')
            s++;
        const char *comma = strchr(s, ',');
        size_t len = comma != NULL ? (size_t)(comma - s) : strlen(s);
        while (len > 0 && s[len - 1] == ' ')
            len--;
        add_cpus(c, n, s, len, vm);
        if (comma == NULL)
            break;
        s = comma + 1;
    }
}

static void f_vm_host_cpus(struct dparse *c, yaml_node_t *v, void *obj)
{
    struct desc_vm *vm = obj;
    const char *s;
    if (v->type == YAML_SEQUENCE_NODE) {
        for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
             it++) {
            yaml_node_t *n = node_at(c, *it);
            size_t mark = path_push(c, "[%u]", (unsigned)(it - v->data.sequence.items.start));
            if (n != NULL && want_text(c, n, "a CPU number or a range N-M", &s))
                add_cpus(c, n, s, strlen(s), vm);
            path_pop(c, mark);
        }
    } else if (want_text(c, v, "a CPU list (\"0-1,4\" or [0, 2])", &s)) {
        add_cpu_list(c, v, s, vm);
    }
}

/* cpu-max: "50%" of one CPU, or a number of CPUs ("0.5", "2"); kept in thousandths. */
static void f_vm_cpu_max(struct dparse *c, yaml_node_t *v, void *obj)
{
    struct desc_vm *vm = obj;
    const char *s;
    if (!want_text(c, v, "a share of a CPU (50%, 0.5, 2)", &s))
        return;
    uint64_t whole = 0, frac = 0;
    unsigned frac_digits = 0;
    const char *p = s;
    bool ok = isdigit((unsigned char)*p);
    for (; ok && isdigit((unsigned char)*p); p++)
        ok = !checked_mul_u64(whole, 10, &whole) &&
             !checked_add_u64(whole, (uint64_t)(*p - '0'), &whole);
    if (ok && *p == '.') {
        p++;
        ok = isdigit((unsigned char)*p);
        for (; ok && isdigit((unsigned char)*p); p++, frac_digits++) {
            ok = frac_digits < 3;
            frac = frac * 10 + (uint64_t)(*p - '0');
        }
    }
    for (unsigned i = frac_digits; i < 3; i++)
        frac *= 10;
    bool percent = *p == '%';
    p += percent;
    uint64_t milli = 0; /* thousandths of the number as written */
    ok = ok && *p == '\0' && !checked_mul_u64(whole, 1000, &milli) &&
         !checked_add_u64(milli, frac, &milli);
    if (ok && percent)
        milli /= 100; /* 50% = 0.5 CPUs = 500 */
    if (!ok || milli < MIN_CPU_MAX_MILLI || milli > MAX_CPU_MAX_MILLI) {
        errorf(c, pos_of(v),
               "'%.60s' is not a CPU share from 1%% to %u CPUs: expected a percentage of one "
               "CPU (50%%) or a number of CPUs with up to three decimals (0.5, 2)",
               s, DESC_MAX_HOST_CPUS);
        return;
    }
    if (c->host->cpus != 0 && milli > (uint64_t)c->host->cpus * 1000) {
        errorf(c, pos_of(v), "%s is more than the host's %u CPUs", s, c->host->cpus);
        return;
    }
    vm->cpu_max_milli = (unsigned)milli;
}

static void f_vm_cpu_weight(struct dparse *c, yaml_node_t *v, void *obj)
{
    want_unsigned(c, v, 1, MAX_WEIGHT, &((struct desc_vm *)obj)->cpu_weight);
}

static void f_vm_shutdown_timeout(struct dparse *c, yaml_node_t *v, void *obj)
{
    want_unsigned(c, v, 0, MAX_SHUTDOWN, &((struct desc_vm *)obj)->shutdown_timeout);
}

static const struct dfield vm_fields[] = {
    {"kernel", f_vm_kernel, true},
    {"initrd", f_vm_initrd, false},
    {"cmdline", f_vm_cmdline, false},
    {"memory", f_vm_memory, false},
    {"vcpus", f_vm_vcpus, false},
    {"host-cpus", f_vm_host_cpus, false},
    {"cpu-max", f_vm_cpu_max, false},
    {"cpu-weight", f_vm_cpu_weight, false},
    {"shutdown-timeout", f_vm_shutdown_timeout, false},
    {"serial", f_vm_serial, false},
    {"disks", f_vm_disks, false},
    {"nics", f_vm_nics, false},
    {"fs", f_vm_fs, false},
    {"vsock", f_vm_vsock, false},
    {"console", f_vm_console, false},
    {"rng", f_vm_rng, false},
    {"restart", f_vm_restart, false},
};

static void parse_vm(struct dparse *c, yaml_node_t *v, struct desc_vm *vm)
{
    vm->cmdline = "console=ttyS0";
    vm->mem_bytes = DEFAULT_MEM;
    vm->mem_pos = vm->pos;
    vm->vcpus = 1;
    vm->cpu_weight = DEFAULT_WEIGHT;
    vm->shutdown_timeout = DEFAULT_SHUTDOWN;
    vm->serial.input = true;
    vm->com2_link = -1;
    restart_defaults(&vm->restart, vm->pos);
    walk_map(c, v, vm_fields, sizeof(vm_fields) / sizeof(vm_fields[0]), vm, NULL);
}

/* ---- the names under vms: and backends: ---------------------------------------------------- */

/* Each NAME: VALUE of @p map, its name checked and unique across VMs and backends. */
static void each_named(struct dparse *c, yaml_node_t *map, const char *section, unsigned max,
                       void (*fn)(struct dparse *c, yaml_node_t *v, const char *name,
                                  struct desc_pos pos))
{
    if (map->type != YAML_MAPPING_NODE) {
        size_t mark = path_push_key(c, section);
        if (!is_null(map))
            wrong(c, map, "a mapping of names");
        path_pop(c, mark);
        return;
    }
    unsigned count = 0;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = node_at(c, p->key), *v = node_at(c, p->value);
        if (k == NULL || v == NULL)
            continue;
        size_t mark = path_push_key(c, section);
        const char *name;
        bool ok = want_name(c, k, &name);
        path_pop(c, mark);
        if (!ok)
            continue;
        bool dup = false;
        for (unsigned i = 0; i < c->nr_dup_keys && !dup; i++)
            dup = c->dup_keys[i] == k;
        if (dup)
            continue; /* reported by find_duplicates() */
        if (++count > max) {
            error_at(c, pos_of(k), "at most %u %s", max, section);
            continue;
        }
        mark = path_push(c, "%s.%s", section, name);
        fn(c, v, name, pos_of(k));
        path_pop(c, mark);
    }
}

/* Names are one namespace, so a reference is never ambiguous. Backends are read before
 * VMs, so duplicates are found first, in the file's order: the later one is reported and
 * left out. */
static void find_duplicates(struct dparse *c)
{
    struct named {
        const yaml_node_t *key;
        struct desc_pos pos;
    } all[2 * (DESC_MAX_VMS + DESC_MAX_BACKENDS)];
    unsigned n = 0;
    yaml_node_t *maps[2] = {c->top_vms, c->top_backends};
    for (unsigned m = 0; m < 2; m++) {
        if (maps[m] == NULL || maps[m]->type != YAML_MAPPING_NODE)
            continue;
        for (yaml_node_pair_t *p = maps[m]->data.mapping.pairs.start;
             p < maps[m]->data.mapping.pairs.top && n < sizeof(all) / sizeof(all[0]); p++) {
            yaml_node_t *k = node_at(c, p->key);
            if (k != NULL && k->type == YAML_SCALAR_NODE && name_ok(text_of(k)))
                all[n++] = (struct named){k, pos_of(k)};
        }
    }
    for (unsigned i = 0; i < n; i++) {
        for (unsigned j = 0; j < n; j++) {
            const struct desc_pos a = all[j].pos, b = all[i].pos;
            bool earlier = a.line < b.line || (a.line == b.line && a.col < b.col);
            if (!earlier || strcmp(text_of(all[j].key), text_of(all[i].key)) != 0)
                continue;
            error_at(c, b,
                     "the name '%s' is used twice (first at line %u, column %u); VMs and "
                     "backends share one set of names",
                     text_of(all[i].key), a.line, a.col);
            if (c->nr_dup_keys < sizeof(c->dup_keys) / sizeof(c->dup_keys[0]))
                c->dup_keys[c->nr_dup_keys++] = all[i].key;
            break;
        }
    }
}

static void add_backend(struct dparse *c, yaml_node_t *v, const char *name, struct desc_pos pos)
{
    struct desc_backend *b = &c->d->backends[c->d->nr_backends++];
    b->name = name;
    b->pos = pos;
    parse_backend(c, v, b);
}

static void add_vm(struct dparse *c, yaml_node_t *v, const char *name, struct desc_pos pos)
{
    struct desc_vm *vm = &c->d->vms[c->d->nr_vms++];
    vm->name = name;
    vm->pos = pos;
    parse_vm(c, v, vm);
}

/* ---- serial links ------------------------------------------------------------------------ */

/* "vm:com2" or "vm:PORT" (a virtio-console port of the VM wired to nothing else). */
static bool parse_endpoint(struct dparse *c, yaml_node_t *n, int link, struct desc_endpoint *e)
{
    static const char want[] = "VM:com2 or VM:PORT (a console port)";
    const char *s;
    if (!want_text(c, n, want, &s))
        return false;
    e->pos = pos_of(n);
    const char *colon = strchr(s, ':');
    if (colon == NULL || colon == s || colon[1] == '\0') {
        wrong(c, n, want);
        return false;
    }
    const struct desc *d = c->d;
    size_t len = (size_t)(colon - s);
    const char *port = colon + 1;
    int vm = -1;
    for (unsigned i = 0; i < d->nr_vms && vm < 0; i++)
        if (strlen(d->vms[i].name) == len && strncmp(d->vms[i].name, s, len) == 0)
            vm = (int)i;
    if (vm < 0) {
        errorf(c, pos_of(n), "no VM named '%.*s'", (int)len, s);
        return false;
    }
    struct desc_vm *v = &c->d->vms[vm];
    e->vm = vm;
    if (strcmp(port, "com2") == 0) {
        e->device = e->port = -1;
        if (v->com2_link >= 0) {
            const struct desc_serial_link *l = &d->serial_links[v->com2_link];
            errorf(c, pos_of(n), "%s is already linked (line %u, column %u)", s, l->pos.line,
                   l->pos.col);
            return false;
        }
        v->com2_link = link;
        return true;
    }
    if (strcmp(port, "com1") == 0) {
        errorf(c, pos_of(n), "com1 is the VM's console; link com2 or a console port");
        return false;
    }
    for (unsigned i = 0; i < v->nr_devices; i++) {
        struct desc_device *dev = &v->devices[i];
        if (dev->kind != DESC_DEV_CONSOLE || dev->backend >= 0)
            continue;
        for (unsigned j = 0; j < dev->nr_ports; j++) {
            struct desc_port *p = &dev->ports[j];
            if (strcmp(p->name, port) != 0)
                continue;
            if (p->kind != DESC_PORT_LINK) {
                errorf(c, pos_of(n),
                       "the port %s has a host side (%s: at line %u); a linked port has "
                       "neither socket: nor file:",
                       s, p->kind == DESC_PORT_SOCKET ? "socket" : "file", p->pos.line);
                return false;
            }
            if (p->link >= 0) {
                const struct desc_serial_link *l = &d->serial_links[p->link];
                errorf(c, pos_of(n), "%s is already linked (line %u, column %u)", s, l->pos.line,
                       l->pos.col);
                return false;
            }
            p->link = link;
            e->device = (int)i;
            e->port = (int)j;
            return true;
        }
    }
    errorf(c, pos_of(n), "VM '%s' has no console port '%s' (declare it under console: ports:)",
           v->name, port);
    return false;
}

static void parse_serial_links(struct dparse *c, yaml_node_t *v)
{
    size_t top = path_push_key(c, "serial-links");
    if (v->type != YAML_SEQUENCE_NODE) {
        if (!is_null(v))
            wrong(c, v, "a list of pairs");
        path_pop(c, top);
        return;
    }
    for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
         it++) {
        yaml_node_t *n = node_at(c, *it);
        size_t mark = path_push(c, "[%u]", (unsigned)(it - v->data.sequence.items.start));
        if (n == NULL || n->type != YAML_SEQUENCE_NODE ||
            n->data.sequence.items.top - n->data.sequence.items.start != 2) {
            if (n != NULL)
                wrong(c, n, "a pair [VM:PORT, VM:PORT]");
            path_pop(c, mark);
            continue;
        }
        if (c->d->nr_serial_links >= DESC_MAX_SERIAL_LINKS) {
            errorf(c, pos_of(n), "at most %u serial links", DESC_MAX_SERIAL_LINKS);
            path_pop(c, mark);
            break;
        }
        int idx = (int)c->d->nr_serial_links;
        struct desc_serial_link *l = &c->d->serial_links[idx];
        l->pos = pos_of(n);
        bool ok = true;
        for (unsigned e = 0; e < 2; e++) {
            yaml_node_t *en = node_at(c, n->data.sequence.items.start[e]);
            ok &= en != NULL && parse_endpoint(c, en, idx, &l->ends[e]);
        }
        if (ok) {
            c->d->nr_serial_links++;
        } else {
            /* Undo what a good end of a bad link claimed, so the link is simply left out. */
            for (unsigned i = 0; i < c->d->nr_vms; i++) {
                struct desc_vm *vm = &c->d->vms[i];
                if (vm->com2_link == idx)
                    vm->com2_link = -1;
                for (unsigned j = 0; j < vm->nr_devices; j++)
                    for (unsigned k = 0; k < vm->devices[j].nr_ports; k++)
                        if (vm->devices[j].ports[k].link == idx)
                            vm->devices[j].ports[k].link = -1;
            }
            *l = (struct desc_serial_link){0};
        }
        path_pop(c, mark);
    }
    path_pop(c, top);
}

/* ---- checks across the whole description ------------------------------------------------- */

static void check_backends_used(struct dparse *c)
{
    for (unsigned i = 0; i < c->d->nr_backends; i++) {
        const struct desc_backend *b = &c->d->backends[i];
        if (c->bad_type[i])
            continue;
        if (b->nr_users == 0)
            error_at(c, b->pos, "backends.%s: no VM uses this backend", b->name);
        else if (b->type == DESC_BACKEND_P2P && b->nr_users + b->nr_taps < 2)
            error_at(c, b->pos,
                     "backends.%s: a p2p link has exactly two ends (NICs or taps); this one has "
                     "one",
                     b->name);
    }
}

static void check_macs(struct dparse *c)
{
    const struct desc *d = c->d;
    for (unsigned i = 0; i < d->nr_vms; i++) {
        for (unsigned j = 0; j < d->vms[i].nr_devices; j++) {
            const struct desc_device *a = &d->vms[i].devices[j];
            if (!a->mac_given)
                continue;
            /* Only against earlier NICs: each clash is reported once, at the later one. */
            bool clash = false;
            for (unsigned k = 0; k <= i && !clash; k++) {
                unsigned end = k == i ? j : d->vms[k].nr_devices;
                for (unsigned m = 0; m < end && !clash; m++) {
                    const struct desc_device *b = &d->vms[k].devices[m];
                    if (b->mac_given && memcmp(a->mac, b->mac, 6) == 0) {
                        error_at(c, a->pos,
                                 "vms.%s: the MAC address %02x:%02x:%02x:%02x:%02x:%02x is "
                                 "already used by a NIC of '%s' (line %u)",
                                 d->vms[i].name, a->mac[0], a->mac[1], a->mac[2], a->mac[3],
                                 a->mac[4], a->mac[5], d->vms[k].name, b->pos.line);
                        clash = true;
                    }
                }
            }
        }
    }
}

static void check_ports_linked(struct dparse *c)
{
    const struct desc *d = c->d;
    for (unsigned i = 0; i < d->nr_vms; i++)
        for (unsigned j = 0; j < d->vms[i].nr_devices; j++)
            for (unsigned k = 0; k < d->vms[i].devices[j].nr_ports; k++) {
                const struct desc_port *p = &d->vms[i].devices[j].ports[k];
                if (p->kind == DESC_PORT_LINK && p->link < 0)
                    error_at(c, p->pos,
                             "vms.%s.console.ports.%s: a port without socket: or file: must be "
                             "in a serial link",
                             d->vms[i].name, p->name);
            }
}

static void check_memory_total(struct dparse *c, yaml_node_t *vms_key)
{
    const struct desc *d = c->d;
    uint64_t sum = 0;
    bool overflow = false;
    for (unsigned i = 0; i < d->nr_vms; i++)
        overflow |= checked_add_u64(sum, d->vms[i].mem_bytes, &sum);
    if (c->host->mem_bytes != 0 && d->nr_vms > 1 && !c->mem_reported &&
        (overflow || sum > c->host->mem_bytes))
        error_at(c, vms_key != NULL ? pos_of(vms_key) : (struct desc_pos){1, 1},
                 "vms: the VMs' memory adds up to %llu MiB, more than the host's %llu MiB",
                 (unsigned long long)(sum >> 20), (unsigned long long)(c->host->mem_bytes >> 20));
}

/* ---- the top level --------------------------------------------------------------------------- */

static void f_top_version(struct dparse *c, yaml_node_t *v, void *obj)
{
    (void)obj;
    const char *s;
    if (want_text(c, v, "1", &s) && strcmp(s, "1") != 0)
        errorf(c, pos_of(v), "'%.60s' is not a version this bulkhead reads (only 1)", s);
}

static void f_top_vms(struct dparse *c, yaml_node_t *v, void *obj)
{
    (void)obj;
    c->top_vms = v;
}

static void f_top_backends(struct dparse *c, yaml_node_t *v, void *obj)
{
    (void)obj;
    c->top_backends = v;
}

static void f_top_links(struct dparse *c, yaml_node_t *v, void *obj)
{
    (void)obj;
    c->top_links = v;
}

static const struct dfield top_fields[] = {
    {"version", f_top_version, false},
    {"vms", f_top_vms, true},
    {"backends", f_top_backends, false},
    {"serial-links", f_top_links, false},
};

/* The key node of @p key at the top, for positions of errors about the section. */
static yaml_node_t *top_key(struct dparse *c, yaml_node_t *root, const char *key)
{
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = node_at(c, p->key);
        if (k != NULL && k->type == YAML_SCALAR_NODE && strcmp(text_of(k), key) == 0)
            return k;
    }
    return NULL;
}

static void parse_root(struct dparse *c, yaml_node_t *root)
{
    if (root->type != YAML_MAPPING_NODE) {
        wrong(c, root, "a mapping with vms: (and backends:, serial-links:)");
        return;
    }
    walk_map(c, root, top_fields, sizeof(top_fields) / sizeof(top_fields[0]), NULL, NULL);
    find_duplicates(c);
    /* Backends first, so the VMs' references resolve where they are written. */
    if (c->top_backends != NULL)
        each_named(c, c->top_backends, "backends", DESC_MAX_BACKENDS, add_backend);
    if (c->top_vms != NULL) {
        each_named(c, c->top_vms, "vms", DESC_MAX_VMS, add_vm);
        if (c->d->nr_vms == 0 && (c->top_vms->type == YAML_MAPPING_NODE || is_null(c->top_vms)))
            error_at(c, pos_of(top_key(c, root, "vms")), "vms: no VM is declared");
    }
    if (c->top_links != NULL)
        parse_serial_links(c, c->top_links);
    check_backends_used(c);
    check_ports_linked(c);
    check_macs(c);
    check_memory_total(c, top_key(c, root, "vms"));
}

/* ---- YAML ------------------------------------------------------------------------------------ */

static void yaml_error(struct dparse *c, const yaml_parser_t *p)
{
    if (p->error == YAML_MEMORY_ERROR) {
        c->oom = true;
        return;
    }
    const char *problem = p->problem != NULL ? p->problem : "unknown error";
    if (p->error == YAML_READER_ERROR) {
        error_at(c, (struct desc_pos){0, 0}, "invalid YAML: %s at byte %zu", problem,
                 p->problem_offset);
        return;
    }
    struct desc_pos pos = {(unsigned)p->problem_mark.line + 1,
                           (unsigned)p->problem_mark.column + 1};
    if (p->context != NULL)
        error_at(c, pos, "invalid YAML: %s (%s at line %u, column %u)", problem, p->context,
                 (unsigned)p->context_mark.line + 1, (unsigned)p->context_mark.column + 1);
    else
        error_at(c, pos, "invalid YAML: %s", problem);
}

/* One pass over the events before the document is built: syntax errors, and the things the
 * document API would hide (aliases, which turn the tree into a graph; a second document). */
static bool prescan(struct dparse *c, const char *text, size_t len)
{
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p)) {
        c->oom = true;
        return false;
    }
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    bool ok = true;
    unsigned docs = 0;
    for (;;) {
        yaml_event_t e;
        if (!yaml_parser_parse(&p, &e)) {
            yaml_error(c, &p);
            ok = false;
            break;
        }
        yaml_event_type_t type = e.type;
        struct desc_pos pos = {(unsigned)e.start_mark.line + 1, (unsigned)e.start_mark.column + 1};
        if (type == YAML_ALIAS_EVENT) {
            error_at(c, pos, "aliases (*%s) are not supported: write the value out",
                     (const char *)e.data.alias.anchor);
            ok = false;
        } else if (type == YAML_DOCUMENT_START_EVENT && ++docs == 2) {
            error_at(c, pos, "only one YAML document per file");
            ok = false;
        }
        yaml_event_delete(&e);
        if (type == YAML_STREAM_END_EVENT)
            break;
    }
    yaml_parser_delete(&p);
    return ok;
}

static void sort_errors(struct desc *d)
{
    /* Insertion sort: stable, so errors at one position keep the order they were found in. */
    for (unsigned i = 1; i < d->nr_errors; i++) {
        struct desc_error e = d->errors[i];
        unsigned j = i;
        while (j > 0 && (d->errors[j - 1].pos.line > e.pos.line ||
                         (d->errors[j - 1].pos.line == e.pos.line &&
                          d->errors[j - 1].pos.col > e.pos.col))) {
            d->errors[j] = d->errors[j - 1];
            j--;
        }
        d->errors[j] = e;
    }
}

static void parse_text(struct dparse *c, const char *text, size_t len)
{
    if (!prescan(c, text, len))
        return;
    yaml_parser_t p;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&p)) {
        c->oom = true;
        return;
    }
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    if (!yaml_parser_load(&p, &doc)) {
        yaml_error(c, &p);
        yaml_parser_delete(&p);
        return;
    }
    c->doc = &doc;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root == NULL)
        error_at(c, (struct desc_pos){1, 1}, "the description is empty: expected vms:");
    else
        parse_root(c, root);
    c->doc = NULL;
    yaml_document_delete(&doc);
    yaml_parser_delete(&p);
}

int desc_parse(const char *file, const char *text, size_t len, const struct desc_host *host,
               struct desc **out)
{
    *out = NULL;
    struct desc *d = calloc(1, sizeof(*d));
    struct dparse *c = calloc(1, sizeof(*c));
    if (d == NULL || c == NULL) {
        free(d);
        free(c);
        return -ENOMEM;
    }
    static const struct desc_host no_host;
    c->d = d;
    c->host = host != NULL ? host : &no_host;
    d->file = arena_strndup(c, file, strlen(file));
    const char *slash = strrchr(file, '/');
    if (slash == NULL)
        d->base_dir = ".";
    else if (slash == file)
        d->base_dir = "/";
    else
        d->base_dir = arena_strndup(c, file, (size_t)(slash - file));
    if (d->file != NULL && d->base_dir != NULL)
        parse_text(c, text, len);
    for (unsigned i = 0; i < d->nr_vms; i++)
        d->nr_links += d->vms[i].nr_devices;
    d->nr_links += d->nr_serial_links;
    bool oom = c->oom;
    free(c);
    if (oom) {
        desc_free(d);
        return -ENOMEM;
    }
    sort_errors(d);
    *out = d;
    return d->nr_errors > 0 || d->errors_dropped > 0 ? -EINVAL : 0;
}

int desc_load(const char *path, const struct desc_host *host, struct desc **out)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int r = -errno;
        close(fd);
        return r;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return -EINVAL;
    }
    if (st.st_size > DESC_MAX_FILE_SIZE) {
        close(fd);
        return -EFBIG;
    }
    /* Read up to one byte more than the limit: a file that grew meanwhile is refused too. */
    char *text = malloc(DESC_MAX_FILE_SIZE + 1);
    if (text == NULL) {
        close(fd);
        return -ENOMEM;
    }
    size_t len = 0;
    while (len <= DESC_MAX_FILE_SIZE) {
        ssize_t n = read(fd, text + len, DESC_MAX_FILE_SIZE + 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int r = -errno;
            free(text);
            close(fd);
            return r;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    if (len > DESC_MAX_FILE_SIZE) {
        free(text);
        return -EFBIG;
    }
    int r = desc_parse(path, text, len, host, out);
    free(text);
    return r;
}

void desc_print_errors(const struct desc *d, FILE *f)
{
    for (unsigned i = 0; i < d->nr_errors; i++) {
        const struct desc_error *e = &d->errors[i];
        if (e->pos.line != 0)
            fprintf(f, "%s:%u:%u: error: %s\n", d->file, e->pos.line, e->pos.col, e->msg);
        else
            fprintf(f, "%s: error: %s\n", d->file, e->msg);
    }
    if (d->errors_dropped > 0)
        fprintf(f, "%s: error: %u more errors not shown\n", d->file, d->errors_dropped);
}

void desc_free(struct desc *d)
{
    if (d == NULL)
        return;
    for (struct desc_block *b = d->blocks, *next; b != NULL; b = next) {
        next = b->next;
        free(b);
    }
    free(d);
}

/* ---- the host ------------------------------------------------------------------------------- */

int desc_host_probe(struct desc_host *host)
{
    *host = (struct desc_host){.check_path = desc_check_path};
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus > 0)
        host->cpus = (unsigned)cpus;
    FILE *f = fopen("/proc/meminfo", "re");
    if (f == NULL)
        return -errno;
    char line[256];
    while (fgets(line, sizeof(line), f) != NULL) {
        unsigned long long kib;
        if (sscanf(line, "MemTotal: %llu kB", &kib) == 1) {
            if (kib <= (UINT64_MAX >> 10))
                host->mem_bytes = (uint64_t)kib << 10;
            break;
        }
    }
    fclose(f);
    return 0;
}

static int check_program(const char *path)
{
    if (strchr(path, '/') != NULL) {
        struct stat st;
        if (stat(path, &st) != 0)
            return -errno;
        if (!S_ISREG(st.st_mode))
            return -EINVAL;
        return access(path, X_OK) == 0 ? 0 : -errno;
    }
    const char *env = getenv("PATH");
    if (env == NULL || env[0] == '\0')
        env = "/usr/local/bin:/usr/bin:/bin";
    int best = -ENOENT;
    for (const char *dir = env;;) {
        const char *colon = strchr(dir, ':');
        size_t len = colon != NULL ? (size_t)(colon - dir) : strlen(dir);
        char full[PATH_TEXT_MAX];
        if (len > 0 &&
            snprintf(full, sizeof(full), "%.*s/%s", (int)len, dir, path) < (int)sizeof(full)) {
            int r = check_program(full);
            if (r == 0)
                return 0;
            if (r != -ENOENT && r != -ENOTDIR)
                best = r;
        }
        if (colon == NULL)
            break;
        dir = colon + 1;
    }
    return best;
}

int desc_check_path(const char *path, enum desc_path_kind kind, void *ctx)
{
    (void)ctx;
    if (kind == DESC_PATH_PROGRAM)
        return check_program(path);
    struct stat st;
    if (stat(path, &st) != 0)
        return -errno;
    switch (kind) {
    case DESC_PATH_FILE:
        if (!S_ISREG(st.st_mode))
            return -EINVAL;
        return access(path, R_OK) == 0 ? 0 : -errno;
    case DESC_PATH_IMAGE:
        if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
            return -EINVAL;
        return access(path, R_OK) == 0 ? 0 : -errno;
    case DESC_PATH_DIR:
        return S_ISDIR(st.st_mode) ? 0 : -EINVAL;
    case DESC_PATH_PROGRAM:
        break;
    }
    return 0;
}
