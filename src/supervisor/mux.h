/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file mux.h
 * @brief The console multiplexer (REQ-061): many VMs' serial consoles on one terminal.
 *
 * Every line a VM prints appears as `NAME | text`, the name padded to the longest one and
 * coloured per VM; the keys of docs/console.md (Ctrl-A then a digit or a name, as screen
 * users expect) choose the VM that receives what the user types. The module knows nothing
 * of processes, sockets or the terminal's mode: the caller hands it console bytes
 * (mux_output()) and keystrokes (mux_input()) and gets back events; the only descriptors
 * it touches are the terminal's output, which it writes, and the per-VM log files it
 * opens. Not thread-safe: one event loop drives it.
 *
 * Guest output is untrusted. On the terminal it goes through a small line model that keeps
 * printable text (UTF-8 included), tab (expanded to spaces), and the few line-editing
 * controls a shell's echo needs (backspace, carriage return, cursor left and right, erase
 * in line), each re-expressed by the multiplexer so that the cursor never leaves the VM's
 * own text; every other escape sequence and control character is dropped, so a guest can
 * neither move the cursor onto another VM's lines or its own prefix, nor set the window
 * title, the colours or anything else of the terminal. The log files get the raw bytes.
 *
 * Partial lines: on a terminal (MUX_TTY) the line the input VM is still writing (its shell
 * prompt, the echo of what the user types) is always shown as the last line; other output
 * erases it, is printed above it and redraws it, as readline does with asynchronous
 * messages. Other VMs' partial lines are held until their newline, until mux_flush() (the
 * caller calls it when output has paused), or until the user switches to that VM, so the
 * terminal never shows one VM's line cut by another's.
 */
#ifndef BULKHEAD_SUPERVISOR_MUX_H
#define BULKHEAD_SUPERVISOR_MUX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Most consoles one multiplexer carries; ids are never reused, so this counts removed ones. */
#define MUX_MAX 64
/** Longest console name, without its NUL. */
#define MUX_NAME_MAX 32
/** Finished lines kept per VM for replay. */
#define MUX_SCROLLBACK 200
/** Lines replayed when the user switches to a VM. */
#define MUX_REPLAY 20
/** Characters of one line; a longer line is broken here, the guest's own terminal would wrap. */
#define MUX_LINE_MAX 1024
/** Longest state text of mux_set_state(), without its NUL (longer text is cut). */
#define MUX_STATE_MAX 31
/** Size of the output buffer; one API call's output is written in chunks of this. */
#define MUX_OBUF 8192

/** mux_init() flag: colour the names (see mux_want_color()). */
#define MUX_COLOR 1u
/**
 * mux_init() flag: the output is a terminal in raw mode, so lines end in CR LF and the input
 * VM's unfinished line is shown live and redrawn. Without it (a pipe, a file) only whole
 * lines are written, which suits a log someone reads later.
 */
#define MUX_TTY 2u

/** What the caller must do after a keystroke. */
enum mux_ev_type {
    MUX_EV_INPUT, /**< Write mux_event::data to VM mux_event::id's console. */
    MUX_EV_QUIT,  /**< The user pressed Ctrl-A x: stop the whole system gracefully. */
};

/** One thing mux_input() asks the caller to do. */
struct mux_event {
    enum mux_ev_type type; /**< What to do. */
    unsigned id;           /**< MUX_EV_INPUT: the VM (as mux_add() returned it). */
    /**
     * MUX_EV_INPUT: the bytes; they point into mux_input()'s buffer (or a static byte for
     * Ctrl-A a), so they are valid as long as that buffer is.
     */
    const uint8_t *data;
    size_t len; /**< MUX_EV_INPUT: bytes at @c data (at least 1). */
};

/** Where mux_input() is inside a Ctrl-A command. */
enum mux_key_state {
    MUX_KEY_NORMAL, /**< Keystrokes go to the input VM. */
    MUX_KEY_PREFIX, /**< Ctrl-A was pressed; the next key is the command. */
    MUX_KEY_NAME,   /**< Collecting a name (or a number after Ctrl-A '). */
    /**
     * A name prefix was unique and that VM was chosen (or refused, when it takes no input):
     * the rest of its name and an Enter are swallowed, so typing the whole name as a habit
     * sends nothing to a VM.
     */
    MUX_KEY_TAIL,
};

struct mux_vm;

/** One multiplexer: its terminal, its consoles, and the keyboard's state. */
struct mux {
    int out_fd;                 /**< The terminal (or pipe); not owned, never closed here. */
    unsigned flags;             /**< MUX_COLOR and MUX_TTY. */
    unsigned cols;              /**< Terminal width; see mux_set_width(). */
    bool out_dead;              /**< The output failed for good (EPIPE, EBADF): drop all. */
    uint64_t dropped;           /**< Output bytes dropped because the terminal did not take them. */
    struct mux_vm *vm[MUX_MAX]; /**< Consoles by id; NULL past @c nr. */
    unsigned nr;                /**< Ids handed out. */
    unsigned name_w;            /**< Length of the longest name, for the padding. */
    int input;                  /**< The VM that gets keystrokes, or -1. */
    int prev;                   /**< The one before it, for Ctrl-A Ctrl-A, or -1. */
    /**
     * On MUX_TTY: the VM whose unfinished line is the terminal's last line with the cursor in
     * it, or -1 when the cursor is at the start of an empty line.
     */
    int open;
    unsigned open_pw;             /**< Width of the open line's prefix when it was printed. */
    unsigned open_col;            /**< Where the terminal's cursor is in the open line's text. */
    bool picked;                  /**< Some VM has had the input: mux_add() no longer picks one. */
    bool hinted;                  /**< Said that no VM gets input; not again until one does. */
    bool stalled;                 /**< A write timed out: do not wait again until one succeeds. */
    enum mux_key_state key;       /**< Keyboard command state. */
    char typed[MUX_NAME_MAX + 1]; /**< MUX_KEY_NAME: what was typed so far. */
    size_t ntyped;                /**< Characters in @c typed. */
    bool typed_quote;             /**< MUX_KEY_NAME came from Ctrl-A ' (digits are names). */
    unsigned tail_id;             /**< MUX_KEY_TAIL: the VM whose name is being typed. */
    size_t tail_pos;              /**< MUX_KEY_TAIL: characters of the name matched. */
    uint8_t obuf[MUX_OBUF];       /**< Output not yet written. */
    size_t olen;                  /**< Bytes in @c obuf. */
};

/**
 * Whether output to @p fd should be coloured: it is a terminal and the NO_COLOR environment
 * variable is unset or empty (https://no-color.org: present and not empty disables colour).
 * @param fd the descriptor the multiplexer will write.
 * @return true for colour.
 */
bool mux_want_color(int fd);

/**
 * Set up an empty multiplexer.
 * @param m the multiplexer.
 * @param out_fd where the combined output goes. May be non-blocking: a write that would
 *        block is retried for at most 50 ms (poll), then the rest is dropped and counted
 *        in mux::dropped, so a terminal held with Ctrl-S cannot stall the supervisor.
 * @param flags MUX_COLOR, MUX_TTY.
 * @return 0.
 */
int mux_init(struct mux *m, int out_fd, unsigned flags);

/**
 * Free every console's memory and close the log files; held partial lines are not printed
 * (call mux_flush() first for that). The terminal's cursor is left at the start of a line.
 * @param m the multiplexer.
 */
void mux_destroy(struct mux *m);

/**
 * Tell the terminal's width (TIOCGWINSZ; 80 until told). Only used to decide whether the
 * input VM's unfinished line fits one row and so can be erased and redrawn.
 * @param m the multiplexer.
 * @param cols columns; 0 is ignored.
 */
void mux_set_width(struct mux *m, unsigned cols);

/**
 * Add a console. The first one that takes input becomes the input VM.
 * @param m the multiplexer.
 * @param name its name: 1 to MUX_NAME_MAX printable ASCII characters, no space or '|';
 *        unique (compared ignoring case, since names are typed to select).
 * @param takes_input whether the user may type into it; when false it cannot be selected.
 * @param log_path NULL, or a file to which every byte of the console is appended exactly as
 *        the guest sent it (CR, escape sequences and all), created with mode 0600. Lines of
 *        the multiplexer's own (mux_set_state()) are added between them.
 * @return the id (0 for the first, then 1, 2... in order, so Ctrl-A 1 is id 0); -EINVAL a bad
 *         name, -EEXIST a name taken, -ENOSPC MUX_MAX reached, -ENOMEM, or open(2)'s error.
 */
int mux_add(struct mux *m, const char *name, bool takes_input, const char *log_path);

/**
 * A console is gone for good: its unfinished line is printed, its log closed and it cannot
 * be selected any more (it keeps its number and scrollback). When it had the input, no VM
 * has it until the user picks one.
 * @param m the multiplexer.
 * @param id the console.
 */
void mux_remove(struct mux *m, unsigned id);

/**
 * Record a console's state ("restarting", "stopped", "running"...): prints
 * `--- NAME: STATE ---`, which no guest can print since a guest's text always follows its
 * prefix, adds the same line to the log, and shows the state in the Ctrl-A ? list. The
 * console's unfinished line is finished first and its escape-sequence parser reset, because
 * the bytes after a restart belong to a new boot.
 * @param m the multiplexer.
 * @param id the console.
 * @param state short text; control characters are replaced by '?'.
 */
void mux_set_state(struct mux *m, unsigned id, const char *state);

/**
 * Print a line of the caller's own (the supervisor's "all VMs stopped"), so that it does not
 * land in the middle of the input VM's unfinished line. It has no VM prefix, and is bold
 * with MUX_COLOR, like the multiplexer's own lines.
 * @param m the multiplexer.
 * @param text the line, without newline; at most 255 characters are printed, control
 *        characters and non-ASCII bytes as '?'.
 */
void mux_message(struct mux *m, const char *text);

/**
 * Bytes a VM's console printed.
 * @param m the multiplexer.
 * @param id the console; unknown or removed ids are ignored.
 * @param buf the bytes.
 * @param len bytes at @p buf.
 */
void mux_output(struct mux *m, unsigned id, const uint8_t *buf, size_t len);

/**
 * Show the unfinished lines that are held (not the input VM's on MUX_TTY, which is shown
 * already), each as a line of its own. Call it when console output has paused for a while
 * (some 100 ms) so a background VM's prompt does not stay hidden. When the line is later
 * finished without further change it is not printed again.
 * @param m the multiplexer.
 */
void mux_flush(struct mux *m);

/**
 * Keystrokes from the terminal (raw mode is the caller's business). Ctrl-A starts a command
 * (docs/console.md); everything else is returned as MUX_EV_INPUT for the input VM, or
 * dropped with a hint when no VM has the input.
 * @param m the multiplexer.
 * @param buf the bytes read.
 * @param len bytes at @p buf.
 * @param ev receives the events, in order.
 * @param max_ev room in @p ev (at least 1).
 * @param used receives how many bytes of @p buf were handled; less than @p len only when
 *        @p ev filled up, then call again with the rest.
 * @return events stored in @p ev.
 */
unsigned mux_input(struct mux *m, const uint8_t *buf, size_t len, struct mux_event *ev,
                   unsigned max_ev, size_t *used);

/**
 * Give the input to a console, as the keys do: a separator, its last MUX_REPLAY lines, the
 * line `--- input goes to NAME (Ctrl-A ? for help) ---`, then its unfinished line.
 * @param m the multiplexer.
 * @param id the console.
 * @return 0; -ENOENT no such console or removed, -EPERM it does not take input (both also
 *         print a line saying so).
 */
int mux_select(struct mux *m, unsigned id);

/**
 * The console that gets keystrokes.
 * @param m the multiplexer.
 * @return its id, or -1 when none has.
 */
int mux_input_vm(const struct mux *m);

/**
 * Print a console's last lines with its prefix, between separator lines.
 * @param m the multiplexer.
 * @param id the console.
 * @param lines how many (at most MUX_SCROLLBACK are kept).
 */
void mux_replay(struct mux *m, unsigned id, unsigned lines);

/**
 * The one line that tells a user how to use the consoles, without a newline.
 * @return a static string.
 */
const char *mux_help_line(void);

#endif
