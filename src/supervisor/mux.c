/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The console multiplexer; mux.h says what it does and docs/console.md how it is used.
 *
 * Each console has an escape-sequence parser and a one-line model of what the guest's
 * current line looks like (characters and a cursor). Guest bytes change the model; only
 * the multiplexer writes to the terminal, from the model, so whatever the guest sends, the
 * terminal sees printable text and a handful of sequences of our own. Cursor positions are
 * always given as "carriage return, then right by prefix + column": the terminal clamps
 * cursor-right at its margin and never wraps it back, so the cursor cannot land in the
 * prefix or on another line, even if our idea of how wide the guest's text is (combining
 * and double-width characters) is wrong.
 */
#include "supervisor/mux.h"

#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* How long a write may wait for a terminal that does not take output (Ctrl-S, a stuck
 * ssh): long enough to ride out a slow link, short enough that the supervisor's loop (and
 * the VMs it serves) never notice. */
#define OUT_WAIT_MS 50
/* An OSC or DCS string that long is garbage rather than a title; stop swallowing output. */
#define STR_MAX 4096
/* Counts in CSI sequences beyond this are no use on any terminal. */
#define CSI_ARG_MAX 9999
/* A line's UTF-8 text: at most 4 bytes per character. */
#define TEXT_MAX (4 * MUX_LINE_MAX + 1)

/** Where a console's escape-sequence parser is. */
enum esc_state {
    ESC_GROUND, /**< Text and single control characters. */
    ESC_ESC,    /**< After ESC: the next byte says what kind of sequence. */
    ESC_INTER,  /**< ESC and intermediate bytes (charset designations and the like). */
    ESC_CSI,    /**< ESC [: parameters up to a final byte. */
    ESC_STR,    /**< OSC, DCS, SOS, PM, APC: swallowed up to BEL or ST. */
    ESC_STR_ESC /**< ESC inside such a string: ST if a backslash follows. */
};

/** One console: its name, log, parser, the line being written and the scrollback. */
struct mux_vm {
    char name[MUX_NAME_MAX + 1];   /**< As given to mux_add(); printable, no space or '|'. */
    size_t name_len;               /**< strlen(name), for the padding and name matching. */
    bool takes_input;              /**< The user may type into it. */
    bool gone;                     /**< mux_remove()d: keeps its number, takes nothing. */
    char state[MUX_STATE_MAX + 1]; /**< Last mux_set_state() text, for the list. */
    int log_fd;                    /**< -1: no log, or writing it failed. */
    bool log_bol; /**< The log's last byte ends a line (or nothing was written yet). */

    enum esc_state esc; /**< Parser state; survives across mux_output() calls. */
    unsigned csi_arg;   /**< CSI: the first parameter, saturated at CSI_ARG_MAX. */
    bool csi_more;      /**< CSI: past the first parameter, later digits are not ours. */
    bool csi_ignore;    /**< CSI: private or intermediate bytes, a sequence never honoured. */
    unsigned str_len;   /**< ESC_STR: bytes swallowed, bounded by STR_MAX. */
    unsigned u8_need;   /**< UTF-8 continuation bytes still expected. */
    uint32_t u8_cp;     /**< The UTF-8 character so far. */
    uint32_t u8_min;    /**< Smallest value that needs this many bytes (no overlong forms). */

    uint32_t cells[MUX_LINE_MAX]; /**< The unfinished line, one character each. */
    unsigned len;                 /**< Characters in @c cells. */
    unsigned col;                 /**< The guest's cursor, 0..len. */
    bool flushed; /**< Printed as a whole line already and not changed since: not again. */

    char *sb[MUX_SCROLLBACK]; /**< Finished lines (malloc'd UTF-8), a ring. */
    unsigned sb_next;         /**< Slot of @c sb the next line goes to. */
    unsigned sb_count;        /**< Lines in the ring. */
};

/* Names are coloured by id from a fixed palette, so a VM keeps its colour for the whole
 * session. Red is left out: it reads as an error. */
static const char *const palette[] = {"36", "32", "33", "35", "34", "96", "92", "93", "95", "94"};

static const uint8_t ctrl_a = 0x01;

static bool tty(const struct mux *m)
{
    return (m->flags & MUX_TTY) != 0;
}

static const char *nl(const struct mux *m)
{
    /* Raw mode turns off the terminal's own LF to CR LF. */
    return tty(m) ? "\r\n" : "\n";
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- output ---- */

static void out_flush(struct mux *m)
{
    size_t off = 0;
    int64_t deadline = -1;

    while (off < m->olen && !m->out_dead) {
        ssize_t n = write(m->out_fd, m->obuf + off, m->olen - off);
        if (n > 0) {
            off += (size_t)n;
            m->stalled = false;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (m->stalled)
                break;
            if (deadline < 0)
                deadline = now_ms() + OUT_WAIT_MS;
            int64_t left = deadline - now_ms();
            if (left <= 0) {
                m->stalled = true;
                break;
            }
            struct pollfd p = {.fd = m->out_fd, .events = POLLOUT};
            (void)poll(&p, 1, (int)left);
            continue;
        }
        /* EPIPE, EBADF, EIO: the terminal is gone and will not come back. */
        m->out_dead = true;
    }
    m->dropped += m->olen - off;
    m->olen = 0;
}

static void out_bytes(struct mux *m, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        if (m->olen == sizeof(m->obuf))
            out_flush(m);
        size_t k = sizeof(m->obuf) - m->olen;
        if (k > n)
            k = n;
        memcpy(m->obuf + m->olen, b, k);
        m->olen += k;
        b += k;
        n -= k;
    }
}

static void out_str(struct mux *m, const char *s)
{
    out_bytes(m, s, strlen(s));
}

static void out_fmt(struct mux *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void out_fmt(struct mux *m, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n > 0)
        out_bytes(m, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
}

static size_t utf8_encode(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

static size_t line_text(const struct mux_vm *v, char *out)
{
    size_t n = 0;
    for (unsigned i = 0; i < v->len; i++)
        n += utf8_encode(v->cells[i], out + n);
    out[n] = '\0';
    return n;
}

static unsigned prefix_width(const struct mux *m)
{
    return m->name_w + 3;
}

static void out_prefix(struct mux *m, unsigned id)
{
    const struct mux_vm *v = m->vm[id];
    if (m->flags & MUX_COLOR)
        out_fmt(m, "\x1b[%sm%s\x1b[0m", palette[id % (sizeof(palette) / sizeof(palette[0]))],
                v->name);
    else
        out_str(m, v->name);
    for (size_t i = v->name_len; i < m->name_w; i++)
        out_str(m, " ");
    out_str(m, " | ");
}

/* Put the terminal's cursor at column @c of the open line's text. */
static void out_cursor(struct mux *m, unsigned c)
{
    out_fmt(m, "\r\x1b[%uC", m->open_pw + c);
    m->open_col = c;
}

/*
 * Make the cursor stand at the start of an empty line. The input VM's unfinished line is
 * erased when it fits one row (it is redrawn below whatever comes now); otherwise, or when
 * @p erase is false, it stays on the screen as a line of its own.
 */
static void close_open(struct mux *m, bool erase)
{
    if (m->open < 0)
        return;
    struct mux_vm *v = m->vm[m->open];
    if (erase && m->open_pw + v->len < m->cols) {
        out_str(m, "\r\x1b[K");
    } else {
        out_str(m, "\r\n");
        v->flushed = true;
    }
    m->open = -1;
}

static void show_open(struct mux *m, unsigned id)
{
    char text[TEXT_MAX];
    struct mux_vm *v = m->vm[id];
    close_open(m, true);
    out_prefix(m, id);
    line_text(v, text);
    out_str(m, text);
    m->open = (int)id;
    m->open_pw = prefix_width(m);
    m->open_col = v->len;
}

static void print_line(struct mux *m, unsigned id, const char *text)
{
    close_open(m, true);
    out_prefix(m, id);
    out_str(m, text);
    out_str(m, nl(m));
}

static void mux_line(struct mux *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A line of the multiplexer's own: never preceded by a VM's prefix, so no guest can fake
 * one. */
static void mux_line(struct mux *m, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    close_open(m, true);
    if (m->flags & MUX_COLOR)
        out_fmt(m, "\x1b[1m%s\x1b[0m", buf);
    else
        out_str(m, buf);
    out_str(m, nl(m));
}

/* End of every call that may have written: bring the input VM's line back to the bottom
 * with the cursor where the guest has it, and write. */
static void settle(struct mux *m)
{
    if (tty(m) && m->input >= 0) {
        struct mux_vm *v = m->vm[m->input];
        if (m->open == m->input) {
            if (m->open_col != v->col)
                out_cursor(m, v->col);
        } else if (v->len > 0) {
            show_open(m, (unsigned)m->input);
            if (m->open_col != v->col)
                out_cursor(m, v->col);
        }
    }
    out_flush(m);
}

/* ---- per-VM log ---- */

static void log_write(struct mux_vm *v, const void *p, size_t n)
{
    const uint8_t *b = p;
    if (v->log_fd < 0 || n == 0)
        return;
    v->log_bol = b[n - 1] == '\n';
    while (n > 0) {
        ssize_t w = write(v->log_fd, b, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            /* A full disk must not stop the console; say so once and stop logging. */
            log_warn("console log of %s: %s; no longer logging it", v->name,
                     w < 0 ? strerror(errno) : "short write");
            close(v->log_fd);
            v->log_fd = -1;
            return;
        }
        b += w;
        n -= (size_t)w;
    }
}

/* ---- the line model ---- */

static void sb_add(struct mux_vm *v, const char *text)
{
    char *copy = strdup(text);
    if (copy == NULL)
        return; /* the line is on the screen and in the log; only the replay misses it */
    free(v->sb[v->sb_next]);
    v->sb[v->sb_next] = copy;
    v->sb_next = (v->sb_next + 1) % MUX_SCROLLBACK;
    if (v->sb_count < MUX_SCROLLBACK)
        v->sb_count++;
}

static void line_end(struct mux *m, unsigned id)
{
    char text[TEXT_MAX];
    struct mux_vm *v = m->vm[id];
    line_text(v, text);
    sb_add(v, text);
    if (m->open == (int)id) {
        out_str(m, "\r\n");
        m->open = -1;
    } else if (!v->flushed) {
        print_line(m, id, text);
    }
    v->len = 0;
    v->col = 0;
    v->flushed = false;
}

static bool live(const struct mux *m, unsigned id)
{
    return tty(m) && m->input == (int)id;
}

static void line_put(struct mux *m, unsigned id, uint32_t cp)
{
    struct mux_vm *v = m->vm[id];
    if (v->col >= MUX_LINE_MAX)
        line_end(m, id);
    unsigned at = v->col;
    v->cells[at] = cp;
    v->col = at + 1;
    if (v->col > v->len)
        v->len = v->col;
    v->flushed = false;
    if (!live(m, id))
        return;
    if (m->open != (int)id) {
        show_open(m, id);
        return;
    }
    if (m->open_col != at)
        out_cursor(m, at);
    char b[4];
    out_bytes(m, b, utf8_encode(cp, b));
    m->open_col = at + 1;
}

/* Erase in line (CSI K): 0 from the cursor on, 1 up to and including it, 2 all. */
static void line_erase(struct mux *m, unsigned id, unsigned how)
{
    struct mux_vm *v = m->vm[id];
    if (how == 0) {
        if (v->col >= v->len)
            return;
        v->len = v->col;
    } else if (how == 1 || how == 2) {
        unsigned end = how == 2 || v->col >= v->len ? v->len : v->col + 1;
        for (unsigned i = 0; i < end; i++)
            v->cells[i] = ' ';
    } else {
        return;
    }
    v->flushed = false;
    if (!live(m, id) || m->open != (int)id)
        return; /* settle() or the line's end shows the result */
    if (how == 0) {
        if (m->open_col != v->col)
            out_cursor(m, v->col);
        out_str(m, "\x1b[K");
    } else {
        char text[TEXT_MAX];
        line_text(v, text);
        out_cursor(m, 0);
        out_str(m, text);
        out_str(m, "\x1b[K");
        m->open_col = v->len;
    }
}

static uint32_t safe_cp(uint32_t cp)
{
    /* C1 controls (some terminals obey them even as UTF-8) and the bidirectional controls
     * (they could reorder a line so that another VM's name seems to lead it). */
    if ((cp >= 0x80 && cp <= 0x9f) || cp == 0x061c || cp == 0x200e || cp == 0x200f ||
        (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069) || cp == 0x2028 ||
        cp == 0x2029)
        return '?';
    return cp;
}

static void csi_final(struct mux *m, unsigned id, uint8_t fin)
{
    struct mux_vm *v = m->vm[id];
    unsigned n = v->csi_arg ? v->csi_arg : 1;
    switch (fin) {
    case 'K':
        line_erase(m, id, v->csi_arg);
        break;
    case 'C':
        v->col = v->len - v->col > n ? v->col + n : v->len;
        break;
    case 'D':
        v->col = v->col > n ? v->col - n : 0;
        break;
    case 'G':
        v->col = n - 1 < v->len ? n - 1 : v->len;
        break;
    default:
        break; /* colours, cursor up, clear screen, modes, reports: not for a shared view */
    }
}

static void ground(struct mux *m, unsigned id, uint8_t b)
{
    struct mux_vm *v = m->vm[id];
    if (v->u8_need > 0) {
        if ((b & 0xc0) == 0x80) {
            v->u8_cp = (v->u8_cp << 6) | (b & 0x3f);
            if (--v->u8_need == 0) {
                uint32_t cp = v->u8_cp;
                bool ok = cp >= v->u8_min && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff);
                line_put(m, id, ok ? safe_cp(cp) : '?');
            }
            return;
        }
        v->u8_need = 0;
        line_put(m, id, '?'); /* cut short; b is looked at on its own */
    }
    if (b >= 0x20 && b < 0x7f) {
        line_put(m, id, b);
        return;
    }
    if (b >= 0x80) {
        /* The lead byte says how many follow; C0, C1 and F5..FF lead nothing. */
        static const uint32_t min[] = {0, 0x80, 0x800, 0x10000};
        unsigned need = b >= 0xc2 && b <= 0xdf   ? 1
                        : b >= 0xe0 && b <= 0xef ? 2
                        : b >= 0xf0 && b <= 0xf4 ? 3
                                                 : 0;
        if (need == 0) {
            line_put(m, id, '?'); /* not UTF-8: C1 controls included */
            return;
        }
        v->u8_need = need;
        v->u8_cp = b & (0x3fu >> need);
        v->u8_min = min[need];
        return;
    }
    switch (b) {
    case '\n':
        line_end(m, id);
        break;
    case '\r':
        v->col = 0;
        break;
    case '\b':
        if (v->col > 0)
            v->col--;
        break;
    case '\t':
        /* Tab stops count from the text, not the terminal's edge: the prefix would shift
         * them, and tables the guest prints would no longer line up. */
        do
            line_put(m, id, ' ');
        while (v->col % 8 != 0);
        break;
    case 0x1b:
        v->esc = ESC_ESC;
        break;
    default:
        break; /* BEL, NUL, shift-in/out, DEL...: nothing a shared terminal should obey */
    }
}

static void feed(struct mux *m, unsigned id, uint8_t b)
{
    struct mux_vm *v = m->vm[id];
    switch (v->esc) {
    case ESC_GROUND:
        ground(m, id, b);
        return;
    case ESC_STR_ESC:
        if (b == '\\') {
            v->esc = ESC_GROUND;
            return;
        }
        v->esc = ESC_ESC; /* the ESC ended the string and starts a sequence of its own */
        feed(m, id, b);
        return;
    case ESC_ESC:
        if (b == 0x1b)
            return;
        if (b >= 0x20 && b < 0x7f) {
            if (b == '[') {
                v->esc = ESC_CSI;
                v->csi_arg = 0;
                v->csi_more = false;
                v->csi_ignore = false;
            } else if (b == ']' || b == 'P' || b == 'X' || b == '^' || b == '_') {
                v->esc = ESC_STR;
                v->str_len = 0;
            } else if (b < 0x30) {
                v->esc = ESC_INTER;
            } else {
                v->esc = ESC_GROUND;
            }
            return;
        }
        break;
    case ESC_INTER:
        if (b >= 0x20 && b <= 0x2f)
            return;
        if (b >= 0x30 && b < 0x7f) {
            v->esc = ESC_GROUND;
            return;
        }
        break;
    case ESC_CSI:
        if (b >= '0' && b <= '9') {
            if (!v->csi_more)
                v->csi_arg = v->csi_arg >= CSI_ARG_MAX ? CSI_ARG_MAX : v->csi_arg * 10 + (b - '0');
            return;
        }
        if (b == ';') {
            v->csi_more = true;
            return;
        }
        if ((b >= 0x3a && b <= 0x3f) || (b >= 0x20 && b <= 0x2f)) {
            v->csi_ignore = true;
            return;
        }
        if (b >= 0x40 && b < 0x7f) {
            v->esc = ESC_GROUND;
            if (!v->csi_ignore)
                csi_final(m, id, b);
            return;
        }
        if (b == 0x7f)
            return;
        break;
    case ESC_STR:
        if (b == 0x1b)
            v->esc = ESC_STR_ESC;
        else if (b == 0x07 || b == 0x18 || b == 0x1a || ++v->str_len > STR_MAX)
            v->esc = ESC_GROUND;
        return;
    }
    /* A control character or a high byte inside a sequence: the sequence is abandoned, as
     * terminals do, and the byte counts on its own (CAN and SUB only cancel). */
    v->esc = ESC_GROUND;
    if (b != 0x18 && b != 0x1a)
        ground(m, id, b);
}

static void reset_parser(struct mux_vm *v)
{
    v->esc = ESC_GROUND;
    v->u8_need = 0;
}

/* ---- API: set-up ---- */

bool mux_want_color(int fd)
{
    const char *no = getenv("NO_COLOR");
    return isatty(fd) && (no == NULL || no[0] == '\0');
}

int mux_init(struct mux *m, int out_fd, unsigned flags)
{
    memset(m, 0, sizeof(*m));
    m->out_fd = out_fd;
    m->flags = flags;
    m->cols = 80;
    m->input = -1;
    m->prev = -1;
    m->open = -1;
    return 0;
}

void mux_destroy(struct mux *m)
{
    /* Whatever comes next on the terminal (the shell's prompt) starts on a line of its own. */
    close_open(m, false);
    out_flush(m);
    for (unsigned i = 0; i < m->nr; i++) {
        struct mux_vm *v = m->vm[i];
        if (v == NULL)
            continue;
        if (v->log_fd >= 0)
            close(v->log_fd);
        for (unsigned k = 0; k < MUX_SCROLLBACK; k++)
            free(v->sb[k]);
        free(v);
        m->vm[i] = NULL;
    }
    m->nr = 0;
}

void mux_set_width(struct mux *m, unsigned cols)
{
    if (cols > 0)
        m->cols = cols;
}

static int ascii_lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

static bool same_name(const char *a, const char *b)
{
    for (; *a != '\0' && *b != '\0'; a++, b++)
        if (ascii_lower((unsigned char)*a) != ascii_lower((unsigned char)*b))
            return false;
    return *a == *b;
}

int mux_add(struct mux *m, const char *name, bool takes_input, const char *log_path)
{
    size_t n = strlen(name);
    if (n == 0 || n > MUX_NAME_MAX)
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (name[i] <= ' ' || name[i] > '~' || name[i] == '|')
            return -EINVAL;
    for (unsigned i = 0; i < m->nr; i++)
        if (same_name(m->vm[i]->name, name))
            return -EEXIST;
    if (m->nr >= MUX_MAX)
        return -ENOSPC;

    struct mux_vm *v = calloc(1, sizeof(*v));
    if (v == NULL)
        return -ENOMEM;
    memcpy(v->name, name, n + 1);
    v->name_len = n;
    v->takes_input = takes_input;
    v->log_fd = -1;
    v->log_bol = true;
    if (log_path != NULL) {
        v->log_fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
        if (v->log_fd < 0) {
            int err = -errno;
            free(v);
            return err;
        }
    }
    unsigned id = m->nr++;
    m->vm[id] = v;
    if (n > m->name_w)
        m->name_w = (unsigned)n;
    if (takes_input && !m->picked) {
        m->input = (int)id;
        m->picked = true;
    }
    return (int)id;
}

static struct mux_vm *vm_of(const struct mux *m, unsigned id)
{
    return id < m->nr && m->vm[id] != NULL && !m->vm[id]->gone ? m->vm[id] : NULL;
}

void mux_remove(struct mux *m, unsigned id)
{
    struct mux_vm *v = vm_of(m, id);
    if (v == NULL)
        return;
    if (v->len > 0)
        line_end(m, id);
    if (m->open == (int)id)
        close_open(m, false);
    if (v->log_fd >= 0)
        close(v->log_fd);
    v->log_fd = -1;
    v->gone = true;
    if (m->prev == (int)id)
        m->prev = -1;
    if (m->input == (int)id) {
        m->input = -1;
        mux_line(m, "--- %s is gone: no VM gets input (Ctrl-A ? lists them) ---", v->name);
    }
    settle(m);
}

void mux_set_state(struct mux *m, unsigned id, const char *state)
{
    struct mux_vm *v = vm_of(m, id);
    if (v == NULL)
        return;
    size_t n = 0;
    for (; state[n] != '\0' && n < MUX_STATE_MAX; n++)
        v->state[n] = state[n] < ' ' || state[n] > '~' ? '?' : state[n];
    v->state[n] = '\0';
    if (v->len > 0)
        line_end(m, id);
    reset_parser(v);
    mux_line(m, "--- %s: %s ---", v->name, v->state);
    char mark[MUX_STATE_MAX + 32];
    int k =
        snprintf(mark, sizeof(mark), "%s--- bulkhead: %s ---\n", v->log_bol ? "" : "\n", v->state);
    if (k > 0)
        log_write(v, mark, (size_t)k);
    settle(m);
}

/* ---- API: output ---- */

void mux_message(struct mux *m, const char *text)
{
    char clean[256];
    size_t n = 0;
    for (; text[n] != '\0' && n < sizeof(clean) - 1; n++)
        clean[n] = text[n] < ' ' || text[n] > '~' ? '?' : text[n];
    clean[n] = '\0';
    mux_line(m, "%s", clean);
    settle(m);
}

void mux_output(struct mux *m, unsigned id, const uint8_t *buf, size_t len)
{
    struct mux_vm *v = vm_of(m, id);
    if (v == NULL || len == 0)
        return;
    log_write(v, buf, len);
    for (size_t i = 0; i < len; i++)
        feed(m, id, buf[i]);
    settle(m);
}

void mux_flush(struct mux *m)
{
    char text[TEXT_MAX];
    for (unsigned id = 0; id < m->nr; id++) {
        struct mux_vm *v = vm_of(m, id);
        if (v == NULL || v->len == 0 || v->flushed || live(m, id))
            continue;
        line_text(v, text);
        print_line(m, id, text);
        v->flushed = true;
    }
    settle(m);
}

static void replay(struct mux *m, unsigned id, unsigned lines)
{
    struct mux_vm *v = m->vm[id];
    if (lines > v->sb_count)
        lines = v->sb_count;
    if (lines == 0) {
        mux_line(m, "--- %s: no lines yet ---", v->name);
    } else {
        mux_line(m, "--- %s: its last %u line%s ---", v->name, lines, lines == 1 ? "" : "s");
        for (unsigned k = lines; k > 0; k--) {
            const char *s = v->sb[(v->sb_next + MUX_SCROLLBACK - k) % MUX_SCROLLBACK];
            print_line(m, id, s != NULL ? s : "");
        }
    }
}

void mux_replay(struct mux *m, unsigned id, unsigned lines)
{
    if (id >= m->nr || m->vm[id] == NULL)
        return;
    replay(m, id, lines);
    settle(m);
}

int mux_input_vm(const struct mux *m)
{
    return m->input;
}

/* ---- API: input ---- */

int mux_select(struct mux *m, unsigned id)
{
    int ret = 0;
    struct mux_vm *v = id < m->nr ? m->vm[id] : NULL;
    if (v == NULL) {
        mux_line(m, "--- there is no VM number %u (Ctrl-A ? lists them) ---", id + 1);
        ret = -ENOENT;
    } else if (v->gone) {
        mux_line(m, "--- %s is gone ---", v->name);
        ret = -ENOENT;
    } else if (!v->takes_input) {
        mux_line(m, "--- %s does not take input: its console is output only ---", v->name);
        ret = -EPERM;
    } else if (m->input == (int)id) {
        mux_line(m, "--- input already goes to %s ---", v->name);
    } else {
        /* The old input VM's unfinished line stays where it is, as a line of its own. */
        close_open(m, false);
        m->prev = m->input;
        m->input = (int)id;
        m->picked = true;
        m->hinted = false;
        replay(m, id, MUX_REPLAY);
        mux_line(m, "--- input goes to %s (Ctrl-A ? for help) ---", v->name);
    }
    settle(m);
    return ret;
}

static void list(struct mux *m)
{
    mux_line(m, "--- consoles ---");
    for (unsigned id = 0; id < m->nr; id++) {
        const struct mux_vm *v = m->vm[id];
        const char *note[3] = {
            m->input == (int)id ? "<- gets your input" : NULL,
            v->takes_input ? NULL : "output only",
            v->gone               ? "gone"
            : v->state[0] != '\0' ? v->state
                                  : NULL,
        };
        char notes[128] = "";
        size_t n = 0;
        for (unsigned k = 0; k < 3; k++)
            if (note[k] != NULL && n < sizeof(notes))
                n += (size_t)snprintf(notes + n, sizeof(notes) - n, "%s%s", n ? ", " : "", note[k]);
        mux_line(m, "%3u  %-*s  %s", id + 1, (int)m->name_w, v->name, notes);
    }
    mux_line(m, "--- keys: Ctrl-A then ---");
    mux_line(m, "  1..9, 0      give your input to that VM (0: the 10th)");
    mux_line(m, "  NAME         the same by name: its first letters once they are unique "
                "(or all of it and Enter)");
    mux_line(m, "  ' NAME Enter the same for any name or number (names starting with a, x or "
                "a digit)");
    mux_line(m, "  Ctrl-A       back to the VM that had the input before");
    mux_line(m, "  a            send a Ctrl-A to the VM");
    mux_line(m, "  x            stop every VM (gracefully) and quit");
    mux_line(m, "  ? or \"       this list");
}

/* Consoles whose name starts with what was typed; *only gets the one when there is one. */
static unsigned matches(const struct mux *m, unsigned *only, int *exact)
{
    unsigned n = 0;
    *exact = -1;
    for (unsigned id = 0; id < m->nr; id++) {
        const struct mux_vm *v = m->vm[id];
        if (v->name_len < m->ntyped)
            continue;
        bool ok = true;
        for (size_t i = 0; i < m->ntyped && ok; i++)
            ok = ascii_lower((unsigned char)v->name[i]) == ascii_lower((unsigned char)m->typed[i]);
        if (!ok)
            continue;
        if (v->name_len == m->ntyped)
            *exact = (int)id;
        *only = id;
        n++;
    }
    return n;
}

/* Select by what was typed; @p final: Enter was pressed. Returns whether name mode ends. */
static bool by_name(struct mux *m, bool final)
{
    unsigned only = 0;
    int exact;
    m->typed[m->ntyped] = '\0';

    if (m->typed_quote && !final)
        return false; /* like screen's prompt: nothing happens before Enter */
    if (m->typed_quote) {
        unsigned num = 0;
        size_t i = 0;
        for (; i < m->ntyped && m->typed[i] >= '0' && m->typed[i] <= '9' && num < 1000; i++)
            num = num * 10 + (unsigned)(m->typed[i] - '0');
        matches(m, &only, &exact);
        if (i == m->ntyped && exact < 0) {
            /* A number, unless some VM is called that. */
            if (num == 0)
                mux_line(m, "--- VMs are numbered from 1 ---");
            else
                (void)mux_select(m, num - 1);
            return true;
        }
    }
    unsigned n = matches(m, &only, &exact);
    if (n == 0) {
        mux_line(m, "--- no VM's name starts with '%s' (Ctrl-A ? lists them) ---", m->typed);
        return true;
    }
    if (final && exact >= 0) {
        (void)mux_select(m, (unsigned)exact);
        return true;
    }
    if (n == 1) {
        (void)mux_select(m, only);
        if (final)
            return true;
        m->key = MUX_KEY_TAIL;
        m->tail_id = only;
        m->tail_pos = m->ntyped;
        return false;
    }
    if (final) {
        mux_line(m, "--- '%s' could be %u VMs: type more of the name ---", m->typed, n);
        return true;
    }
    return false;
}

/* A key after Ctrl-A. Returns false when it needs an event and there is no room. */
static bool command(struct mux *m, uint8_t b, struct mux_event *ev, unsigned *nev, unsigned max_ev)
{
    if (b == 'a' || b == 'x') {
        if (*nev == max_ev)
            return false;
        m->key = MUX_KEY_NORMAL;
        if (b == 'x') {
            ev[(*nev)++] = (struct mux_event){.type = MUX_EV_QUIT};
        } else if (m->input >= 0) {
            ev[(*nev)++] = (struct mux_event){
                .type = MUX_EV_INPUT, .id = (unsigned)m->input, .data = &ctrl_a, .len = 1};
        }
        return true;
    }
    m->key = MUX_KEY_NORMAL;
    if (b >= '0' && b <= '9') {
        (void)mux_select(m, b == '0' ? 9 : (unsigned)(b - '1'));
    } else if (b == 0x01) {
        if (m->prev >= 0)
            (void)mux_select(m, (unsigned)m->prev);
        else
            mux_line(m, "--- no VM had the input before ---");
    } else if (b == '?' || b == '"') {
        list(m);
    } else if (b == '\'') {
        m->key = MUX_KEY_NAME;
        m->typed_quote = true;
        m->ntyped = 0;
    } else if (b > ' ' && b < 0x7f && b != '|') {
        m->key = MUX_KEY_NAME;
        m->typed_quote = false;
        m->typed[0] = (char)b;
        m->ntyped = 1;
        if (by_name(m, false) && m->key == MUX_KEY_NAME)
            m->key = MUX_KEY_NORMAL;
    } else if (b != 0x1b && b != 0x03 && b != 0x07) {
        mux_line(m, "--- Ctrl-A ? lists the keys ---");
    }
    return true;
}

static void name_key(struct mux *m, uint8_t b)
{
    if (b == '\r' || b == '\n') {
        m->key = MUX_KEY_NORMAL;
        if (m->ntyped > 0)
            by_name(m, true);
        return;
    }
    if (b == 0x7f || b == '\b') {
        if (m->ntyped > 0)
            m->ntyped--;
        if (m->ntyped == 0 && !m->typed_quote)
            m->key = MUX_KEY_NORMAL;
        return;
    }
    if (b <= ' ' || b >= 0x7f || b == '|') {
        m->key = MUX_KEY_NORMAL; /* Esc, Ctrl-C, Ctrl-G: never mind */
        return;
    }
    if (m->ntyped == MUX_NAME_MAX) {
        m->key = MUX_KEY_NORMAL;
        mux_line(m, "--- no VM has a name that long ---");
        return;
    }
    m->typed[m->ntyped++] = (char)b;
    if (by_name(m, false) && m->key == MUX_KEY_NAME)
        m->key = MUX_KEY_NORMAL;
}

/* Swallow the rest of a name already selected; returns false when @p b is input again. */
static bool tail_key(struct mux *m, uint8_t b)
{
    const struct mux_vm *v = m->vm[m->tail_id];
    if (b == '\r' || b == '\n') {
        m->key = MUX_KEY_NORMAL;
        return true;
    }
    if (m->tail_pos < v->name_len &&
        ascii_lower(b) == ascii_lower((unsigned char)v->name[m->tail_pos])) {
        m->tail_pos++;
        return true;
    }
    m->key = MUX_KEY_NORMAL;
    return false;
}

unsigned mux_input(struct mux *m, const uint8_t *buf, size_t len, struct mux_event *ev,
                   unsigned max_ev, size_t *used)
{
    unsigned nev = 0;
    size_t run = 0; /* start of the bytes for the input VM not yet in an event */
    bool in_run = false;
    size_t i = 0;

    for (; i < len; i++) {
        uint8_t b = buf[i];
        if (m->key == MUX_KEY_TAIL && tail_key(m, b))
            continue;
        if (m->key == MUX_KEY_NORMAL) {
            if (b != 0x01) {
                if (m->input >= 0) {
                    if (!in_run)
                        run = i, in_run = true;
                } else if (!m->hinted) {
                    m->hinted = true;
                    mux_line(m, "--- no VM gets your input: Ctrl-A 1..9 or Ctrl-A NAME "
                                "chooses one, Ctrl-A ? lists them ---");
                }
                continue;
            }
            if (in_run) {
                if (nev == max_ev)
                    break;
                ev[nev++] = (struct mux_event){.type = MUX_EV_INPUT,
                                               .id = (unsigned)m->input,
                                               .data = buf + run,
                                               .len = i - run};
                in_run = false;
            }
            m->key = MUX_KEY_PREFIX;
        } else if (m->key == MUX_KEY_PREFIX) {
            if (!command(m, b, ev, &nev, max_ev))
                break;
        } else {
            name_key(m, b);
        }
    }
    if (in_run) {
        if (nev < max_ev)
            ev[nev++] = (struct mux_event){
                .type = MUX_EV_INPUT, .id = (unsigned)m->input, .data = buf + run, .len = i - run};
        else
            i = run;
    }
    *used = i;
    settle(m);
    return nev;
}

const char *mux_help_line(void)
{
    return "Consoles: Ctrl-A then 1..9 or the start of a VM's name chooses the VM that gets your "
           "typing, Ctrl-A ? lists the VMs and keys, Ctrl-A x stops them all and quits.";
}
