/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file options.h
 * @brief The bulkhead-vmm command line.
 */
#ifndef BULKHEAD_VMM_OPTIONS_H
#define BULKHEAD_VMM_OPTIONS_H

#include "core/log.h"
#include "host/console.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** How a device's backend reaches guest memory (docs/design.md, "The two memory modes"). */
enum vmm_mem_mode {
    VMM_MEM_ISOLATED, /**< The backend sees only a per-device bounce region (default). */
    VMM_MEM_SHARED,   /**< Standard vhost-user: the backend maps guest RAM. */
};

/** One --disk option. Strings point into the process's copy of the option text. */
struct vmm_disk {
    const char *path;       /**< path=IMG: bulkhead-vmm starts bulkhead-blk for it; or NULL. */
    const char *socket;     /**< socket=PATH: a vhost-user-blk backend started elsewhere. */
    bool readonly;          /**< readonly=on (path= only: the backend enforces it). */
    unsigned queues;        /**< queues=N (path= only), 0: bulkhead-blk's default (1). */
    unsigned timeout;       /**< timeout=SECONDS: a backend holding requests without
                                 completing any for this long is lost (isolated mode). */
    enum vmm_mem_mode mode; /**< mode=isolated|shared. */
    char *text;             /**< The option's text, cut at the commas: owns the strings. */
};

/** Default timeout= of a --disk, seconds: Linux's own default block-request timeout. */
#define VMM_DEFAULT_DISK_TIMEOUT 30
/** Largest timeout= of a --disk, seconds. */
#define VMM_MAX_DISK_TIMEOUT 3600

/** Most queues= of a --disk: what the VMM's virtio-blk device handles. */
#define VMM_MAX_DISK_QUEUES 16

/** Most --disk options one VM takes. */
#define VMM_MAX_DISKS 16

/** Parsed command line. */
struct vmm_options {
    const char *kernel;       /**< --kernel PATH (required). */
    const char *initrd;       /**< --initrd PATH, or NULL. */
    const char *cmdline;      /**< --cmdline STRING. */
    uint64_t mem_bytes;       /**< --mem SIZE, in bytes. */
    unsigned cpus;            /**< --cpus N. */
    enum serial_kind serial;  /**< --serial kind. */
    const char *serial_path;  /**< Path for file: and unix:. */
    bool no_reboot;           /**< --no-reboot: exit instead of rebooting. */
    enum log_level log_level; /**< --log-level LEVEL. */
    /** --shutdown-timeout: seconds a signalled guest has to power off before it is stopped
     * hard; 0 stops at once. */
    unsigned shutdown_timeout;
    const char *control;                  /**< --control PATH: the control socket, or NULL. */
    struct vmm_disk disks[VMM_MAX_DISKS]; /**< --disk, in command-line order. */
    unsigned nr_disks;                    /**< Entries of @c disks. */
};

/** What options_parse() wants the caller to do. */
enum options_result {
    OPTIONS_RUN,   /**< Options are valid: run the VM. */
    OPTIONS_EXIT,  /**< --help or --version was printed: exit 0. */
    OPTIONS_ERROR, /**< Invalid: the message is in the error buffer; exit 2. */
};

/** Seconds a signalled guest gets to power off before it is stopped hard: long enough for
 * a distribution's shutdown, short enough that a hung guest does not hold up its host. */
#define VMM_DEFAULT_SHUTDOWN_TIMEOUT 30
/** Largest --shutdown-timeout: a day. */
#define VMM_MAX_SHUTDOWN_TIMEOUT 86400

/** Largest --cpus accepted before asking the platform. */
#define VMM_MAX_CPUS 254
/** Smallest --mem accepted. */
#define VMM_MIN_MEM (16ull << 20)
/** Largest --mem accepted. */
#define VMM_MAX_MEM (1ull << 40)

/**
 * Parse the command line.
 * @param argc argument count.
 * @param argv arguments.
 * @param opts receives the options (defaults: 256 MiB, 1 CPU, stdio, "console=ttyS0").
 * @param err receives a one-line message when OPTIONS_ERROR is returned.
 * @param err_len size of @p err.
 * @return what to do next.
 */
enum options_result options_parse(int argc, char **argv, struct vmm_options *opts, char *err,
                                  size_t err_len);

/**
 * Parse a size: a number with an optional K, M, G or T suffix (powers of 1024); a bare number
 * means MiB, as in QEMU's -m.
 * @param s the text.
 * @param out receives the size in bytes.
 * @return 0, or -EINVAL on a malformed or overflowing size.
 */
int options_parse_size(const char *s, uint64_t *out);

#endif
