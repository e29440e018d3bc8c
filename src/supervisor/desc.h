/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file desc.h
 * @brief The system description: one YAML file declaring a whole system of VMs, their
 * backends and the links between them, parsed and validated into plain structs.
 *
 * The format is documented in docs/system-description.md. Parsing never stops at the
 * first problem: every error found is recorded with the line and column of the node it is
 * about, so `bulkhead check` can report them all at once. References (a disk's backend, a
 * NIC's link, a serial link's ends) are resolved into indices, so later stages (the
 * supervisor) never look names up again. Everything the host contributes to validation
 * (its memory, its CPUs, which files exist) comes through struct desc_host, so the
 * unit tests can fix it.
 */
#ifndef BULKHEAD_SUPERVISOR_DESC_H
#define BULKHEAD_SUPERVISOR_DESC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/** Most VMs in one description. */
#define DESC_MAX_VMS 64
/** Most backends in one description. */
#define DESC_MAX_BACKENDS 128
/** Most devices of one VM: what bulkhead-vmm takes (VMM_MAX_DEVICES). */
#define DESC_MAX_DEVICES 16
/** Most named ports of a VM's virtio-console (hvc0 is one more): bulkhead-vmm's limit. */
#define DESC_MAX_CONSOLE_PORTS 7
/** Most tap uplinks of one switch or point-to-point link. */
#define DESC_MAX_TAPS 8
/** Most ports of one switch, NICs and taps together: bulkhead-net's limit. */
#define DESC_MAX_SWITCH_PORTS 64
/** Most words of an external backend's command. */
#define DESC_MAX_ARGS 64
/** Most serial links. */
#define DESC_MAX_SERIAL_LINKS 64
/** Host CPUs an affinity list can name: CPU numbers go from 0 to this minus one. */
#define DESC_MAX_HOST_CPUS 1024
/** Longest VM or backend name, bytes. */
#define DESC_NAME_MAX 32
/** Errors kept; more are counted in desc::errors_dropped. */
#define DESC_MAX_ERRORS 200
/** Largest description file read, bytes: a description is a page or two, not data. */
#define DESC_MAX_FILE_SIZE (1u << 20)

/** Where a node of the file starts: 1-based line and column; 0 and 0 for a default. */
struct desc_pos {
    unsigned line; /**< Line, from 1. */
    unsigned col;  /**< Column, from 1, in bytes. */
};

/** How a device's backend reaches guest memory (docs/design.md, "The two memory modes"). */
enum desc_mem_mode {
    DESC_MEM_ISOLATED, /**< Only a per-device bounce region (the default). */
    DESC_MEM_SHARED,   /**< All of guest RAM: for trusted backends only. */
};

/** The virtio device a VM's device entry adds, as bulkhead-vmm's device options. */
enum desc_dev_kind {
    DESC_DEV_DISK,    /**< disks: virtio-blk (--disk). */
    DESC_DEV_NIC,     /**< nics: virtio-net (--net). */
    DESC_DEV_VSOCK,   /**< vsock: virtio-vsock (--vsock). */
    DESC_DEV_CONSOLE, /**< console: virtio-console (--console). */
    DESC_DEV_RNG,     /**< rng: virtio-rng (--rng). */
    DESC_DEV_FS,      /**< fs: virtio-fs (--fs), always an external backend (virtiofsd). */
};

/** What program a backend entry runs. */
enum desc_backend_type {
    DESC_BACKEND_BLK,      /**< bulkhead-blk on an image: serves exactly one disk. */
    DESC_BACKEND_SWITCH,   /**< bulkhead-net --mode switch: one port per NIC and tap. */
    DESC_BACKEND_P2P,      /**< bulkhead-net --mode p2p: exactly two ends (NICs or taps). */
    DESC_BACKEND_EXTERNAL, /**< Someone else's vhost-user program: serves one device. */
};

/** When the supervisor starts a component again after it ended. */
enum desc_restart_policy {
    DESC_RESTART_NEVER,      /**< Never. */
    DESC_RESTART_ON_FAILURE, /**< When it ended with a non-zero status or a signal. */
    DESC_RESTART_ALWAYS,     /**< Whenever it ended, a clean exit included. */
};

/** Default back-off before the first restart, milliseconds. */
#define DESC_DEFAULT_BACKOFF_MS 1000
/** Default longest back-off, milliseconds; also how long a run must last to count as
 * healthy (the restart counter starts again). */
#define DESC_DEFAULT_BACKOFF_MAX_MS 60000
/** Default restarts in a row before the supervisor gives up on a component. */
#define DESC_DEFAULT_RESTART_LIMIT 5

/** A component's restart policy: back-off doubles from @c backoff_ms up to
 * @c backoff_max_ms between attempts. */
struct desc_restart {
    enum desc_restart_policy policy; /**< When to restart. */
    unsigned backoff_ms;             /**< Wait before the first restart. */
    unsigned backoff_max_ms;         /**< Longest wait; a run this long resets the count. */
    unsigned limit;                  /**< Restarts in a row before giving up; 0: no limit. */
    struct desc_pos pos;             /**< The restart: key's value, or the component's. */
};

/** Where a console's output goes and whether it takes input (COM1, or a virtio-console's
 * hvc0). The supervisor's multiplexer shows every console; these say what else happens. */
struct desc_route {
    const char *log; /**< A file the output is appended to, or NULL. */
    bool input;      /**< Whether the multiplexer may type into it. */
};

/** How a virtio-console named port reaches the host. */
enum desc_port_kind {
    DESC_PORT_SOCKET, /**< A unix socket the console backend listens on. */
    DESC_PORT_FILE,   /**< A file its output is appended to. */
    DESC_PORT_LINK,   /**< Wired to another VM's port by a serial link. */
};

/** A named port of a VM's virtio-console (/dev/virtio-ports/NAME in the guest). */
struct desc_port {
    const char *name;         /**< The guest-visible name. */
    enum desc_port_kind kind; /**< Its host side. */
    const char *path;         /**< Socket or file path; NULL for a linked port. */
    int link;                 /**< Index in desc::serial_links for a linked port, else -1. */
    struct desc_pos pos;      /**< The port's name in the file. */
};

/** One device of a VM. Which fields apply depends on @c kind. */
struct desc_device {
    enum desc_dev_kind kind; /**< Which virtio device. */
    struct desc_pos pos;     /**< The entry in the file. */
    /** Index in desc::backends; -1: the device's own backend program, started for it alone
     * (vsock, console, rng given without backend:). */
    int backend;
    const char *backend_name;    /**< backend: or link:, as written; NULL for an own backend. */
    struct desc_pos backend_pos; /**< Where that name is written. */
    unsigned port;               /**< NIC: its port number on the switch or link, from 0 (taps
                                      come after the NICs). */
    enum desc_mem_mode mode;     /**< mode:. */
    unsigned poll_us;            /**< poll: microseconds. */
    unsigned timeout;            /**< Disk: timeout: seconds. */
    uint8_t mac[6];              /**< NIC: mac:, when @c mac_given. */
    bool mac_given;              /**< NIC: mac: was given (else bulkhead-vmm's default). */
    uint64_t cid;                /**< vsock: the guest's CID. */
    const char *uds;             /**< vsock: the host side's unix socket path. */
    const char *tag;             /**< fs: the guest's mount tag. */
    struct desc_route route;     /**< console: hvc0's routing. */
    struct desc_port ports[DESC_MAX_CONSOLE_PORTS]; /**< console: named ports. */
    unsigned nr_ports;                              /**< Entries of @c ports. */
};

/** One VM: what becomes one bulkhead-vmm process. */
struct desc_vm {
    const char *name;        /**< Its key under vms:. */
    struct desc_pos pos;     /**< That key in the file. */
    const char *kernel;      /**< Path, resolved against the description's directory. */
    const char *initrd;      /**< Path, resolved likewise, or NULL. */
    const char *cmdline;     /**< Kernel command line. */
    uint64_t mem_bytes;      /**< Guest RAM. */
    struct desc_pos mem_pos; /**< memory: in the file (or the VM's position). */
    unsigned vcpus;          /**< vCPUs. */
    /** host-cpus: bit N set when the VM's threads may run on host CPU N. */
    uint64_t host_cpus[DESC_MAX_HOST_CPUS / 64];
    bool host_cpus_given;        /**< host-cpus: was given (else any CPU). */
    unsigned cpu_max_milli;      /**< cpu-max: in thousandths of a CPU; 0: no limit. */
    unsigned cpu_weight;         /**< cpu-weight: 1 to 10000 (cgroup v2 cpu.weight). */
    unsigned shutdown_timeout;   /**< Seconds to power off after the power button. */
    struct desc_route serial;    /**< COM1's routing. */
    int com2_link;               /**< Index in desc::serial_links of a link on COM2, or -1
                                      (then the VM has no second UART). */
    struct desc_restart restart; /**< Restart policy. */
    struct desc_device devices[DESC_MAX_DEVICES]; /**< Devices, in the order of the file. */
    unsigned nr_devices;                          /**< Entries of @c devices. */
};

/** One backend: a process the supervisor starts, serving devices of VMs. */
struct desc_backend {
    const char *name;                /**< Its key under backends:. */
    struct desc_pos pos;             /**< That key in the file. */
    enum desc_backend_type type;     /**< type:. */
    const char *image;               /**< blk: the image path, resolved. */
    bool readonly;                   /**< blk: readonly:. */
    unsigned queues;                 /**< blk: queues: (1 to 16). */
    uint64_t create_bytes;           /**< blk: create: size of a sparse image made when the file
                                          does not exist; 0: it must exist. */
    const char *taps[DESC_MAX_TAPS]; /**< switch, p2p: host tap interfaces as uplinks. */
    unsigned nr_taps;                /**< Entries of @c taps. */
    enum desc_dev_kind device;       /**< external: the device kind it serves. */
    /** external: the command, NULL-terminated; words containing "{socket}" get the path of
     * the vhost-user socket the supervisor chose in its place. argv[0] is resolved against
     * the description's directory when it contains a slash. */
    const char *argv[DESC_MAX_ARGS + 1];
    unsigned argc;               /**< Words in @c argv. */
    struct desc_restart restart; /**< Restart policy. */
    unsigned nr_users;           /**< Devices using it (ports of a switch, ends of a link). */
};

/** One end of a serial link. */
struct desc_endpoint {
    int vm;              /**< Index in desc::vms. */
    int device;          /**< Index of the console in the VM's devices; -1 for COM2. */
    int port;            /**< Index in that console's ports; -1 for COM2. */
    struct desc_pos pos; /**< The end as written ("vm:port"). */
};

/** Two VMs' serial ports wired together: each one's output is the other's input. */
struct desc_serial_link {
    struct desc_endpoint ends[2]; /**< The two ends. */
    struct desc_pos pos;          /**< The entry in the file. */
};

/** One problem found in the description. */
struct desc_error {
    struct desc_pos pos; /**< Where; 0/0 for the file as a whole. */
    char *msg;           /**< What is wrong, without the position. */
};

struct desc_block;

/** A parsed description. Strings point into memory it owns (desc_free()). */
struct desc {
    const char *file;                 /**< The file name, as given, for messages. */
    const char *base_dir;             /**< Relative paths in the file are relative to this. */
    struct desc_vm vms[DESC_MAX_VMS]; /**< VMs, in the order of the file. */
    unsigned nr_vms;                  /**< Entries of @c vms. */
    struct desc_backend backends[DESC_MAX_BACKENDS]; /**< Backends, in the order of the file. */
    unsigned nr_backends;                            /**< Entries of @c backends. */
    struct desc_serial_link serial_links[DESC_MAX_SERIAL_LINKS]; /**< serial-links:. */
    unsigned nr_serial_links;                                    /**< Entries of @c serial_links. */
    unsigned nr_links; /**< Every device (a VM-to-backend link) plus serial links. */
    struct desc_error errors[DESC_MAX_ERRORS]; /**< Errors, sorted by position. */
    unsigned nr_errors;                        /**< Entries of @c errors. */
    unsigned errors_dropped;                   /**< Errors beyond DESC_MAX_ERRORS. */
    struct desc_block *blocks;                 /**< Memory the strings live in. */
};

/** What a path named in the description must be (desc_host::check_path). */
enum desc_path_kind {
    DESC_PATH_FILE,    /**< A readable regular file (kernel, initrd). */
    DESC_PATH_IMAGE,   /**< A disk image: a regular file or a block device. */
    DESC_PATH_PROGRAM, /**< An executable; a name without '/' is looked up in $PATH. */
    DESC_PATH_DIR,     /**< A directory (where a log file or a created image will go). */
};

/** What validation knows about the host; a zero field is not checked. */
struct desc_host {
    uint64_t mem_bytes; /**< The host's MemTotal, bytes. */
    unsigned cpus;      /**< Host CPUs: vCPUs per VM and affinity lists are checked against it. */
    /**
     * Whether @p path is what @p kind asks for; NULL: paths are not checked.
     * @return 0, or a negative errno (-ENOENT, -EACCES, -EINVAL for the wrong kind of file).
     */
    int (*check_path)(const char *path, enum desc_path_kind kind, void *ctx);
    void *ctx; /**< Passed to @c check_path. */
};

/**
 * The facts of the host this runs on: MemTotal from /proc/meminfo, the online CPUs, and
 * desc_check_path() for paths.
 * @param host receives them (a fact that cannot be read is left 0: not checked).
 * @return 0; -errno when /proc/meminfo cannot be read (the rest is filled in anyway).
 */
int desc_host_probe(struct desc_host *host);

/**
 * The real file system's answer for desc_host::check_path.
 * @param path the path.
 * @param kind what it must be.
 * @param ctx unused.
 * @return 0, -ENOENT, -EACCES, or -EINVAL when it exists but is the wrong kind of file.
 */
int desc_check_path(const char *path, enum desc_path_kind kind, void *ctx);

/**
 * Parse and validate a description held in memory.
 * @param file the file name for messages; its directory is where relative paths start.
 * @param text the YAML text (need not be NUL-terminated).
 * @param len its length.
 * @param host the host's facts.
 * @param out receives the description, valid or not (desc_free() it); NULL on -ENOMEM.
 * @return 0 when it is valid; -EINVAL when it has errors (in (*out)->errors); -ENOMEM.
 */
int desc_parse(const char *file, const char *text, size_t len, const struct desc_host *host,
               struct desc **out);

/**
 * Read a description file and parse it (desc_parse()).
 * @param path the file.
 * @param host the host's facts.
 * @param out receives the description; NULL when the file could not be read.
 * @return as desc_parse(), or the negative errno of reading the file (-EFBIG over
 *         DESC_MAX_FILE_SIZE, -EINVAL for something that is not a regular file).
 */
int desc_load(const char *path, const struct desc_host *host, struct desc **out);

/**
 * Write each error as one line "FILE:LINE:COL: error: MESSAGE" (or "FILE: error: MESSAGE"
 * without a position), then one line for errors beyond DESC_MAX_ERRORS.
 * @param d the description.
 * @param f where to.
 */
void desc_print_errors(const struct desc *d, FILE *f);

/**
 * Free a description and every string in it.
 * @param d the description, or NULL.
 */
void desc_free(struct desc *d);

/**
 * The name of a device kind as the description spells its key (disk, nic, ...).
 * @param kind the kind.
 * @return a static string.
 */
const char *desc_dev_kind_name(enum desc_dev_kind kind);

/**
 * Parse a memory size: a number with K, M, G or T (powers of 1024, an optional "iB" or
 * "B" after it), or a bare number of MiB.
 * @param s the text.
 * @param out receives bytes.
 * @return 0, or -EINVAL for a malformed or overflowing size.
 */
int desc_parse_size(const char *s, uint64_t *out);

#endif
