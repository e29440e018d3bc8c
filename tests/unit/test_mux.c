/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The console multiplexer (supervisor/mux.c) writing into a pipe the test reads back:
 * prefixes and padding, colour on and off and the NO_COLOR rule, lines of several VMs that
 * never mix within a line (held, flushed and, on a terminal, the input VM's line erased and
 * redrawn), guest escape sequences and control characters that never reach the output,
 * every hot key, input routed to the selected VM, scrollback replayed on a switch, the
 * per-VM log file, output-only VMs, and a terminal that does not take output.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "supervisor/mux.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int rfd = -1, wfd = -1;
static struct mux m;
static char out[1 << 17];
static char tmpdir[64];

static int setup(void **state)
{
    (void)state;
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0)
        return -1;
    rfd = p[0];
    wfd = p[1];
    (void)fcntl(rfd, F_SETFL, O_NONBLOCK);
    (void)fcntl(rfd, F_SETPIPE_SZ, 1 << 20);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    mux_destroy(&m);
    close(rfd);
    close(wfd);
    return 0;
}

/* Everything written since the last call, as a string. */
static const char *drain(void)
{
    size_t n = 0;
    for (;;) {
        ssize_t r = read(rfd, out + n, sizeof(out) - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    out[n] = '\0';
    return out;
}

static void put(unsigned id, const char *s)
{
    mux_output(&m, id, (const uint8_t *)s, strlen(s));
}

static unsigned keys(const char *s, struct mux_event *ev, unsigned max_ev)
{
    size_t used = 0;
    unsigned n = mux_input(&m, (const uint8_t *)s, strlen(s), ev, max_ev, &used);
    assert_int_equal(used, strlen(s));
    return n;
}

/* Three VMs, web and db taking input, mon output only. */
static void three(unsigned flags)
{
    mux_init(&m, wfd, flags);
    assert_int_equal(mux_add(&m, "web", true, NULL), 0);
    assert_int_equal(mux_add(&m, "db", true, NULL), 1);
    assert_int_equal(mux_add(&m, "mon", false, NULL), 2);
}

static void test_prefix_padding(void **state)
{
    (void)state;
    mux_init(&m, wfd, 0);
    assert_int_equal(mux_add(&m, "web", true, NULL), 0);
    assert_int_equal(mux_add(&m, "database", true, NULL), 1);
    put(0, "hello\r\n");
    put(1, "x\n\n");
    put(0, "a\tb\n");
    assert_string_equal(drain(), "web      | hello\n"
                                 "database | x\n"
                                 "database | \n"
                                 "web      | a       b\n");
}

static void test_color(void **state)
{
    (void)state;
    mux_init(&m, wfd, MUX_COLOR);
    mux_add(&m, "web", true, NULL);
    mux_add(&m, "db", true, NULL);
    put(0, "one\n");
    put(1, "two\n");
    assert_string_equal(drain(), "\x1b[36mweb\x1b[0m | one\n"
                                 "\x1b[32mdb\x1b[0m  | two\n");
    mux_destroy(&m);

    mux_init(&m, wfd, 0);
    mux_add(&m, "web", true, NULL);
    put(0, "one\n");
    mux_set_state(&m, 0, "restarting");
    assert_null(strchr(drain(), 0x1b));
}

static void test_want_color(void **state)
{
    (void)state;
    assert_false(mux_want_color(wfd)); /* a pipe */
    int pt = posix_openpt(O_RDWR | O_NOCTTY);
    if (pt < 0 || grantpt(pt) != 0 || unlockpt(pt) != 0) {
        if (pt >= 0)
            close(pt);
        skip();
    }
    int tt = open(ptsname(pt), O_RDWR | O_NOCTTY);
    assert_true(tt >= 0);
    unsetenv("NO_COLOR");
    assert_true(mux_want_color(tt));
    setenv("NO_COLOR", "", 1);
    assert_true(mux_want_color(tt));
    setenv("NO_COLOR", "1", 1);
    assert_false(mux_want_color(tt));
    unsetenv("NO_COLOR");
    close(tt);
    close(pt);
}

/* Not a terminal: whole lines only, a partial line waits for its newline. */
static void test_interleave_lines(void **state)
{
    (void)state;
    three(0);
    put(0, "boot: ab");
    put(1, "db up\nstill");
    put(0, "cd\nnext");
    put(1, " db\n");
    put(0, " web\n");
    assert_string_equal(drain(), "db  | db up\n"
                                 "web | boot: abcd\n"
                                 "db  | still db\n"
                                 "web | next web\n");
}

/* A terminal: the input VM's line is shown at once, erased when another VM prints,
 * redrawn under it. */
static void test_interleave_tty(void **state)
{
    (void)state;
    three(MUX_TTY);
    put(0, "root@web:~# ");
    assert_string_equal(drain(), "web | root@web:~# ");
    put(0, "l");
    assert_string_equal(drain(), "l");
    put(1, "db line\r\nhalf");
    assert_string_equal(drain(), "\r\x1b[K"
                                 "db  | db line\r\n"
                                 "web | root@web:~# l");
    put(0, "s\r\n");
    assert_string_equal(drain(), "s\r\n");
    put(1, " done\n");
    assert_string_equal(drain(), "db  | half done\r\n");

    /* Too wide to erase: the line stays and is drawn again below. */
    mux_set_width(&m, 20);
    put(0, "0123456789012345");
    drain();
    put(1, "x\n");
    assert_string_equal(drain(), "\r\n"
                                 "db  | x\r\n"
                                 "web | 0123456789012345");

    /* The caller's own line goes above the input line too. */
    mux_set_width(&m, 80);
    mux_message(&m, "--- bulkhead: \x1b[2Jhi ---");
    assert_string_equal(drain(), "\r\x1b[K"
                                 "--- bulkhead: ?[2Jhi ---\r\n"
                                 "web | 0123456789012345");
    /* And the shell's prompt after the end starts on a line of its own. */
    mux_destroy(&m);
    assert_string_equal(drain(), "\r\n");
}

/* A background VM's prompt appears with mux_flush() and is not printed twice. */
static void test_flush(void **state)
{
    (void)state;
    three(MUX_TTY);
    put(1, "login: ");
    assert_string_equal(drain(), "");
    mux_flush(&m);
    assert_string_equal(drain(), "db  | login: \r\n");
    mux_flush(&m);
    assert_string_equal(drain(), "");
    put(1, "\r\n");
    assert_string_equal(drain(), "");
    put(1, "more");
    mux_flush(&m);
    put(1, " text\n");
    assert_string_equal(drain(), "db  | more\r\ndb  | more text\r\n");
}

static void test_escapes_dropped(void **state)
{
    (void)state;
    three(MUX_TTY | MUX_COLOR);
    mux_select(&m, 1); /* web's line is not live: only whole lines below */
    drain();
    static const char evil[] = "a\x1b]0;title\x07"
                               "b\x1b[2J"
                               "c\x1b[31m"
                               "d\x1b[0m\x1bPq#0;1\x1b\\"
                               "e\x1b]2;t2\x1b\\"
                               "f\x1b(Bg\x1b[?1049h\x1b[1;1H\x1b[A\x1b"
                               "7h\x07\x0e\x0f\x7fi\x9b"
                               "31mj\xc2\x9bk\xe2\x80\xaeX\xc3\xa9\xff\n";
    put(0, evil);
    /* Split anywhere, the same happens. */
    for (size_t i = 0; i + 1 < sizeof(evil); i++)
        mux_output(&m, 0, (const uint8_t *)evil + i, 1);
    const char *o = drain();
    const char *want = "\x1b[36mweb\x1b[0m | abcdefghi?31mj?k?X\xc3\xa9?\r\n";
    size_t wl = strlen(want);
    assert_int_equal(strlen(o), 2 * wl);
    assert_memory_equal(o, want, wl);
    assert_memory_equal(o + wl, want, wl);

    /* An unfinished string swallows a bounded amount only. */
    put(0, "\x1b]0;");
    for (int i = 0; i < 5000; i++)
        put(0, "x");
    put(0, "\nok\n");
    o = drain();
    assert_non_null(strstr(o, "| ok\r\n"));
    assert_null(strstr(o, "title"));
}

/* The guest's line editing on the live line: the cursor never goes left of its text. */
static void test_line_editing(void **state)
{
    (void)state;
    three(MUX_TTY);
    put(0, "ab\b\b\b\b\bX");
    assert_string_equal(drain(), "web | ab\r\x1b[6CX");
    put(0, "\r\x1b[K$ ");
    assert_string_equal(drain(), "\r\x1b[6C\x1b[K$ ");
    put(0, "ls\b\x1b[K\x1b[5D!\n");
    assert_string_equal(drain(), "ls\r\x1b[9C\x1b[K\r\x1b[6C!\r\n");
    mux_select(&m, 1);
    mux_select(&m, 0);
    /* What the line looked like at its end is what scrollback keeps. */
    assert_non_null(strstr(drain(), "web | ! l\r\n"));
}

static void test_long_line(void **state)
{
    (void)state;
    three(0);
    static char line[MUX_LINE_MAX + 11];
    memset(line, 'z', sizeof(line) - 1);
    line[sizeof(line) - 2] = '\n';
    put(0, line);
    const char *o = drain();
    const char *nl1 = strchr(o, '\n');
    assert_non_null(nl1);
    assert_int_equal(nl1 - o, 6 + MUX_LINE_MAX);
    assert_string_equal(nl1 + 1, "web | zzzzzzzzz\n");
}

static void test_keys_number_and_toggle(void **state)
{
    (void)state;
    struct mux_event ev[4];
    three(0);
    assert_int_equal(mux_input_vm(&m), 0);
    assert_int_equal(keys("\x01"
                          "2",
                          ev, 4),
                     0);
    assert_int_equal(mux_input_vm(&m), 1);
    assert_non_null(strstr(drain(), "--- input goes to db (Ctrl-A ? for help) ---\n"));
    keys("\x01\x01", ev, 4);
    assert_int_equal(mux_input_vm(&m), 0);
    keys("\x01\x01", ev, 4);
    assert_int_equal(mux_input_vm(&m), 1);
    keys("\x01'1\r", ev, 4);
    assert_int_equal(mux_input_vm(&m), 0);
    drain();
    keys("\x01"
         "9",
         ev, 4);
    assert_int_equal(mux_input_vm(&m), 0);
    assert_non_null(strstr(drain(), "no VM number 9"));
}

static void test_keys_name(void **state)
{
    (void)state;
    struct mux_event ev[4];
    mux_init(&m, wfd, 0);
    mux_add(&m, "db", true, NULL);
    mux_add(&m, "web", true, NULL);
    mux_add(&m, "worker", true, NULL);
    mux_add(&m, "web2", true, NULL);
    mux_add(&m, "api", true, NULL);

    /* "w" is not unique, "wo" is: worker at once, the rest of its name swallowed. */
    assert_int_equal(keys("\x01woRKer\r", ev, 4), 0);
    assert_int_equal(mux_input_vm(&m), 2);
    /* web and web2: "web" Enter is the exact one. */
    assert_int_equal(keys("\x01we", ev, 4), 0);
    assert_int_equal(mux_input_vm(&m), 2);
    assert_int_equal(keys("b\r", ev, 4), 0);
    assert_int_equal(mux_input_vm(&m), 1);
    /* A unique prefix, then typing that is not the name goes to the VM. */
    assert_int_equal(keys("\x01"
                          "dls\r",
                          ev, 4),
                     1);
    assert_int_equal(mux_input_vm(&m), 0);
    assert_int_equal(ev[0].type, MUX_EV_INPUT);
    assert_int_equal(ev[0].id, 0);
    assert_int_equal(ev[0].len, 3);
    assert_memory_equal(ev[0].data, "ls\r", 3);
    /* 'a' is a command; an upper-case A or the quote reaches "api". */
    keys("\x01"
         "A",
         ev, 4);
    assert_int_equal(mux_input_vm(&m), 4);
    keys("\x01\x01\x01'api\r", ev, 4);
    assert_int_equal(mux_input_vm(&m), 4);
    drain();
    keys("\x01zz", ev, 4);
    assert_int_equal(mux_input_vm(&m), 4);
    assert_non_null(strstr(drain(), "no VM's name starts with 'z'"));
}

static void test_keys_commands(void **state)
{
    (void)state;
    struct mux_event ev[4];
    three(0);
    drain();
    assert_int_equal(keys("\x01?", ev, 4), 0);
    const char *o = drain();
    assert_non_null(strstr(o, "  1  web  <- gets your input\n"));
    assert_non_null(strstr(o, "  2  db   \n"));
    assert_non_null(strstr(o, "  3  mon  output only\n"));
    assert_non_null(strstr(o, "x            stop every VM"));

    assert_int_equal(keys("\x01"
                          "a",
                          ev, 4),
                     1);
    assert_int_equal(ev[0].type, MUX_EV_INPUT);
    assert_int_equal(ev[0].id, 0);
    assert_int_equal(ev[0].len, 1);
    assert_int_equal(ev[0].data[0], 0x01);

    assert_int_equal(keys("q\x01x", ev, 4), 2);
    assert_int_equal(ev[0].type, MUX_EV_INPUT);
    assert_int_equal(ev[1].type, MUX_EV_QUIT);

    assert_int_equal(keys("\x01\"", ev, 4), 0);
    assert_non_null(strstr(drain(), "--- consoles ---\n"));

    assert_non_null(strstr(mux_help_line(), "Ctrl-A ?"));
    assert_null(strchr(mux_help_line(), '\n'));
}

static void test_input_routing(void **state)
{
    (void)state;
    struct mux_event ev[2];
    size_t used;
    three(0);
    static const uint8_t a[] = "hello";
    assert_int_equal(mux_input(&m, a, 5, ev, 2, &used), 1);
    assert_int_equal(used, 5);
    assert_ptr_equal(ev[0].data, a);
    assert_int_equal(ev[0].len, 5);
    assert_int_equal(ev[0].id, 0);

    /* A command split over two reads. */
    assert_int_equal(keys("ab\x01", ev, 2), 1);
    assert_int_equal(ev[0].len, 2);
    assert_int_equal(keys("2cd", ev, 2), 1);
    assert_int_equal(ev[0].id, 1);
    assert_memory_equal(ev[0].data, "cd", 2);

    /* Room for one event: the caller comes back for the rest. */
    static const uint8_t b[] = "xy\x01"
                               "1z\x01x";
    assert_int_equal(mux_input(&m, b, 7, ev, 1, &used), 1);
    assert_int_equal(used, 4);
    assert_int_equal(ev[0].id, 1);
    assert_memory_equal(ev[0].data, "xy", 2);
    assert_int_equal(mux_input(&m, b + 4, 3, ev, 1, &used), 1);
    assert_int_equal(used, 2);
    assert_int_equal(ev[0].id, 0);
    assert_int_equal(ev[0].len, 1);
    assert_int_equal(ev[0].data[0], 'z');
    assert_int_equal(mux_input(&m, b + 6, 1, ev, 1, &used), 1);
    assert_int_equal(ev[0].type, MUX_EV_QUIT);
}

static void test_output_only(void **state)
{
    (void)state;
    struct mux_event ev[2];
    three(0);
    assert_int_equal(mux_select(&m, 2), -EPERM);
    assert_int_equal(keys("\x01"
                          "3\x01mon\r",
                          ev, 2),
                     0);
    assert_int_equal(mux_input_vm(&m), 0);
    assert_non_null(strstr(drain(), "mon does not take input"));

    /* The input VM goes away: nothing gets input, one hint. */
    mux_remove(&m, 0);
    assert_int_equal(mux_input_vm(&m), -1);
    drain();
    assert_int_equal(keys("abc", ev, 2), 0);
    assert_int_equal(keys("def", ev, 2), 0);
    const char *o = drain();
    const char *h = strstr(o, "no VM gets your input");
    assert_non_null(h);
    assert_null(strstr(h + 1, "no VM gets your input"));
    assert_int_equal(mux_select(&m, 0), -ENOENT);
    assert_int_equal(mux_select(&m, 1), 0);
    assert_int_equal(keys("abc", ev, 2), 1);
    assert_int_equal(ev[0].id, 1);
}

static void test_scrollback_replay(void **state)
{
    (void)state;
    three(MUX_TTY);
    char line[32];
    for (int i = 0; i < MUX_SCROLLBACK + 30; i++) {
        snprintf(line, sizeof(line), "db line %d\n", i);
        put(1, line);
    }
    put(1, "db# ");
    drain();
    assert_int_equal(mux_select(&m, 1), 0);
    const char *o = drain();
    snprintf(line, sizeof(line), "db line %d\r", MUX_SCROLLBACK + 30 - MUX_REPLAY - 1);
    assert_null(strstr(o, line));
    const char *head = strstr(o, "--- db: its last 20 lines ---\r\n");
    assert_non_null(head);
    snprintf(line, sizeof(line), "db  | db line %d\r\n", MUX_SCROLLBACK + 30 - MUX_REPLAY);
    assert_ptr_equal(strstr(o, line), head + strlen("--- db: its last 20 lines ---\r\n"));
    snprintf(line, sizeof(line), "db  | db line %d\r\n", MUX_SCROLLBACK + 29);
    const char *last = strstr(o, line);
    assert_non_null(last);
    assert_string_equal(last + strlen(line),
                        "--- input goes to db (Ctrl-A ? for help) ---\r\ndb  | db# ");
    mux_replay(&m, 0, 5);
    assert_non_null(strstr(drain(), "--- web: no lines yet ---"));
}

static void test_state_line(void **state)
{
    (void)state;
    three(0);
    put(0, "half\x1b]0;");
    mux_set_state(&m, 0, "restarting");
    put(0, "title\n");
    assert_string_equal(drain(), "web | half\n--- web: restarting ---\nweb | title\n");
    put(0, "x\n");
    drain();
    struct mux_event ev[1];
    keys("\x01?", ev, 1);
    assert_non_null(strstr(drain(), "  1  web  <- gets your input, restarting\n"));
}

static void test_log_file(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_mux.XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    char path[128];
    snprintf(path, sizeof(path), "%s/web.log", tmpdir);
    mux_init(&m, wfd, 0);
    assert_int_equal(mux_add(&m, "web", true, path), 0);
    uint8_t all[512];
    for (size_t i = 0; i < sizeof(all); i++)
        all[i] = (uint8_t)(i * 7);
    mux_output(&m, 0, all, 100);
    mux_output(&m, 0, all + 100, sizeof(all) - 100);
    drain();

    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    uint8_t back[1024];
    assert_int_equal(read(fd, back, sizeof(back)), sizeof(all));
    assert_memory_equal(back, all, sizeof(all));

    mux_set_state(&m, 0, "restarting");
    ssize_t n = pread(fd, back, sizeof(back), sizeof(all));
    const char mark[] = "\n--- bulkhead: restarting ---\n";
    assert_int_equal(n, sizeof(mark) - 1);
    assert_memory_equal(back, mark, sizeof(mark) - 1);
    close(fd);
    mux_destroy(&m);
    unlink(path);
    rmdir(tmpdir);
}

static void test_add_errors(void **state)
{
    (void)state;
    mux_init(&m, wfd, 0);
    assert_int_equal(mux_add(&m, "", true, NULL), -EINVAL);
    assert_int_equal(mux_add(&m, "a b", true, NULL), -EINVAL);
    assert_int_equal(mux_add(&m, "a|b", true, NULL), -EINVAL);
    assert_int_equal(mux_add(&m, "a\x1b", true, NULL), -EINVAL);
    assert_int_equal(mux_add(&m, "0123456789012345678901234567890123", true, NULL), -EINVAL);
    assert_int_equal(mux_add(&m, "web", true, NULL), 0);
    assert_int_equal(mux_add(&m, "WEB", true, NULL), -EEXIST);
    assert_int_equal(mux_add(&m, "x", true, "/nonexistent/dir/log"), -ENOENT);
    char name[8];
    for (int i = 1; i < MUX_MAX; i++) {
        snprintf(name, sizeof(name), "v%d", i);
        assert_int_equal(mux_add(&m, name, false, NULL), i);
    }
    assert_int_equal(mux_add(&m, "last", true, NULL), -ENOSPC);
}

/* A terminal that takes nothing (Ctrl-S): the call returns after a short wait and later
 * ones at once; output is dropped and counted. */
static void test_stalled_output(void **state)
{
    (void)state;
    (void)fcntl(wfd, F_SETPIPE_SZ, 4096);
    (void)fcntl(wfd, F_SETFL, O_NONBLOCK);
    static char fill[65536];
    while (write(wfd, fill, sizeof(fill)) > 0)
        ;
    mux_init(&m, wfd, 0);
    mux_add(&m, "web", true, NULL);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < 20; i++)
        put(0, "line\n");
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    assert_true(s < 0.5);
    assert_int_equal(m.dropped, 20 * strlen("web | line\n"));
    drain();
    put(0, "back\n");
    assert_string_equal(drain(), "web | back\n");
}

/* What reaches the terminal, whatever the guests send: text in valid UTF-8 without C1
 * controls, CR, LF, and only our sequences: colour, erase in line, cursor right (after a
 * CR, never less than the prefix). */
static void check_terminal_output(const char *o, size_t n, unsigned pw)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)o[i];
        if (c == 0x1b) {
            assert_true(i + 1 < n && o[i + 1] == '[');
            size_t j = i + 2;
            unsigned num = 0;
            while (j < n && ((o[j] >= '0' && o[j] <= '9') || o[j] == ';'))
                num = o[j] == ';' ? 0 : num * 10 + (unsigned)(o[j] - '0'), j++;
            assert_true(j < n);
            assert_non_null(strchr("KCm", o[j]));
            if (o[j] == 'C') {
                assert_true(i > 0 && o[i - 1] == '\r');
                assert_true(num >= pw);
            }
            i = j;
        } else if (c < 0x20) {
            assert_true(c == '\r' || c == '\n');
        } else if (c >= 0x80) {
            unsigned need = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : 1;
            assert_true(c >= 0xc2 && c <= 0xf4);
            uint32_t cp = c & (0x3fu >> need);
            for (unsigned k = 0; k < need; k++) {
                assert_true(i + 1 < n && ((uint8_t)o[i + 1] & 0xc0) == 0x80);
                cp = (cp << 6) | ((uint8_t)o[++i] & 0x3f);
            }
            assert_false(cp >= 0x80 && cp <= 0x9f);
            assert_false(cp >= 0x202a && cp <= 0x202e);
        } else {
            assert_true(c != 0x7f);
        }
    }
}

static void test_random_guests(void **state)
{
    (void)state;
    static const char pick[] = "\x1b\x1b\x1b[[]];?0123456789KCDGHJm\b\b\r\r\n\t\x07\x9b\xc2\xe2"
                               "\x80\xae\x18PX\\abc ";
    three(MUX_TTY | MUX_COLOR);
    mux_set_width(&m, 60);
    srand(1);
    uint8_t buf[64];
    for (int round = 0; round < 20000; round++) {
        size_t len = 1 + (size_t)rand() % sizeof(buf);
        for (size_t i = 0; i < len; i++)
            buf[i] = rand() % 4 ? (uint8_t)pick[rand() % (int)(sizeof(pick) - 1)] : (uint8_t)rand();
        mux_output(&m, (unsigned)rand() % 3, buf, len);
        if (round % 50 == 0) {
            struct mux_event ev[8];
            size_t used;
            static const char *const k[] = {"\x01"
                                            "1",
                                            "\x01"
                                            "2",
                                            "\x01\x01", "\x01?", "ls\r"};
            const char *s = k[rand() % 5];
            mux_input(&m, (const uint8_t *)s, strlen(s), ev, 8, &used);
        }
        if (round % 97 == 0)
            mux_flush(&m);
        const char *o = drain();
        check_terminal_output(o, strlen(o), 6);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_prefix_padding, setup, teardown),
        cmocka_unit_test_setup_teardown(test_color, setup, teardown),
        cmocka_unit_test_setup_teardown(test_want_color, setup, teardown),
        cmocka_unit_test_setup_teardown(test_interleave_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_interleave_tty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flush, setup, teardown),
        cmocka_unit_test_setup_teardown(test_escapes_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_line_editing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keys_number_and_toggle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keys_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keys_commands, setup, teardown),
        cmocka_unit_test_setup_teardown(test_input_routing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_output_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scrollback_replay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_add_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_random_guests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stalled_output, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
