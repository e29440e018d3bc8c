/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file options.h
 * @brief The bulkhead-vmm command line.
 */
#ifndef BULKHEAD_VMM_OPTIONS_H
#define BULKHEAD_VMM_OPTIONS_H

#include "core/log.h"
#include "host/console.h"
#include "host/sched.h"
#include "host/seccomp.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** How a device's backend reaches guest memory (docs/design.md, "The two memory modes"). */
enum vmm_mem_mode {
    VMM_MEM_ISOLATED, /**< The backend sees only a per-device bounce region (default). */
    VMM_MEM_SHARED,   /**< Standard vhost-user: the backend maps guest RAM. */
};

/** Which virtio device a device option (--disk, --net, ...) adds. */
enum vmm_dev_kind {
    VMM_DEV_BLK,     /**< --disk: virtio-blk; own backend bulkhead-blk. */
    VMM_DEV_NET,     /**< --net: virtio-net; own backend bulkhead-net. */
    VMM_DEV_VSOCK,   /**< --vsock: virtio-vsock; own backend bulkhead-vsock. */
    VMM_DEV_CONSOLE, /**< --console: virtio-console (hvc0, named ports); bulkhead-console. */
    VMM_DEV_RNG,     /**< --rng: virtio-rng; own backend bulkhead-rng. */
    VMM_DEV_FS,      /**< --fs: virtio-fs; an external backend (virtiofsd) only. */
};

/** Most named ports= of a --console (its hvc0 is one more port). */
#define VMM_MAX_CONSOLE_PORTS 7

/**
 * One device option. Either the VMM starts the device's own backend program for it (the
 * "child" keys: path=, tap=, cid= + uds=, out=, getrandom) or it connects to a vhost-user
 * backend someone else started (socket=). Strings point into @c text.
 */
struct vmm_device {
    enum vmm_dev_kind kind; /**< Which option. */
    const char *socket;     /**< socket=PATH: a backend started elsewhere; NULL: our child. */
    const char *path;       /**< --disk path=IMG. */
    bool readonly;          /**< --disk readonly=on (path= only: the backend enforces it). */
    unsigned queues;        /**< --disk queues=N (path= only), 0: bulkhead-blk's default (1);
                                 --net queues=PAIRS, default (filled in) one per vCPU, at most
                                 VMM_MAX_NET_PAIRS; a backend may offer fewer. */
    unsigned timeout;       /**< --disk timeout=SECONDS: a backend holding requests without
                                 completing any for this long is lost (isolated mode); 0 for
                                 devices whose requests may wait for ever (receive buffers). */
    unsigned poll_us;       /**< poll=MICROSECONDS: how long the device thread (and a child
                                 backend) keep watching the rings after the last work before
                                 sleeping and turning kicks back on; 0: never poll. */
    const char *tap;        /**< --net tap=NAME: bulkhead-net with that tap as uplink. */
    uint8_t mac[6];         /**< --net mac=, or the default (vmm_device_default_mac()). */
    bool mac_given;         /**< mac= was given. */
    uint64_t cid;           /**< --vsock cid=N: the guest's context ID (3 to 2^32-2). */
    const char *uds;        /**< --vsock uds=PATH: the host side's unix socket path. */
    const char *out;        /**< --console out=stdio|file:PATH|unix:PATH: where hvc0 goes. */
    const char *ports[VMM_MAX_CONSOLE_PORTS]; /**< --console port=NAME=unix:PATH|file:PATH. */
    unsigned nr_ports;                        /**< Entries of @c ports. */
    const char *tag;                          /**< --fs tag=TAG: the guest's mount tag. */
    enum vmm_mem_mode mode;                   /**< mode=isolated|shared. */
    unsigned restarts; /**< restarts=N: new backends in a row that may fail (none lasting
                            a minute) before the VMM gives up on the device; 0: never give
                            up (a supervisor that restarts the backend decides). */
    char *text;        /**< The option's text, cut at the commas: owns the strings. */
};

/** Default timeout= of a --disk, seconds: Linux's own default block-request timeout. */
#define VMM_DEFAULT_DISK_TIMEOUT 30
/** Largest timeout= of a --disk, seconds. */
#define VMM_MAX_DISK_TIMEOUT 3600

/** Default poll= of a device, microseconds: long enough to see a backend's completion
 * of a small request come in without sleeping, in the test host's emulated CPU. */
#define VMM_DEFAULT_POLL_US 50
/** Largest poll=, microseconds. */
#define VMM_MAX_POLL_US 1000

/** Most queues= of a --disk: what the VMM's virtio-blk device handles. */
#define VMM_MAX_DISK_QUEUES 16

/** Most queues= (queue pairs) of a --net: with the control queue, 17 virtqueues. */
#define VMM_MAX_NET_PAIRS 8

/** Default restarts= of a device. */
#define VMM_DEFAULT_RESTARTS 5
/** Largest restarts=. */
#define VMM_MAX_RESTARTS 1000000

/** Most device options (--disk, --net, --vsock, --console, --rng, --fs) one VM takes. */
#define VMM_MAX_DEVICES 16

/** Longest virtio-fs tag=, bytes (the tag field of struct virtio_fs_config). */
#define VMM_FS_TAG_MAX 36

/** Parsed command line. */
struct vmm_options {
    const char *kernel;       /**< --kernel PATH (required). */
    const char *initrd;       /**< --initrd PATH, or NULL. */
    const char *cmdline;      /**< --cmdline STRING. */
    uint64_t mem_bytes;       /**< --mem SIZE, in bytes. */
    unsigned cpus;            /**< --cpus N. */
    enum serial_kind serial;  /**< --serial kind. */
    const char *serial_path;  /**< Path for file: and unix:. */
    enum serial_kind serial2; /**< --serial2 kind (file: or unix:), when serial2_path is set. */
    const char *serial2_path; /**< --serial2's path; NULL: the VM has no COM2. */
    bool no_reboot;           /**< --no-reboot: exit instead of rebooting. */
    enum log_level log_level; /**< --log-level LEVEL. */
    /** --shutdown-timeout: seconds a signalled guest has to power off before it is stopped
     * hard; 0 stops at once. */
    unsigned shutdown_timeout;
    const char *control; /**< --control PATH: the control socket, or NULL. */
    const char *name;    /**< --name NAME: the VM's name, for logs and default MACs. */
    /** --sandbox[=kill|trap]: the seccomp filter applied before the vCPUs first run. */
    enum sandbox_seccomp_mode sandbox;
    /** --sched: the scheduling class of every thread and started backend (batch unless given). */
    enum host_sched sched;
    struct vmm_device devices[VMM_MAX_DEVICES]; /**< Device options, in command-line order. */
    unsigned nr_devices;                        /**< Entries of @c devices. */
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
 * The MAC address a --net device gets without mac=: locally administered, derived from the
 * VM's name, the NIC's tap or socket and its position among the VM's NICs, so it is the
 * same on every boot of the same VM and differs between VMs on one switch.
 * @param vm_name --name, or NULL.
 * @param endpoint the tap name or socket path, or NULL.
 * @param nic the NIC's position among the VM's --net options, from 0.
 * @param mac receives the address.
 */
void options_default_mac(const char *vm_name, const char *endpoint, unsigned nic, uint8_t mac[6]);

/**
 * Parse a size: a number with an optional K, M, G or T suffix (powers of 1024); a bare number
 * means MiB, as in QEMU's -m.
 * @param s the text.
 * @param out receives the size in bytes.
 * @return 0, or -EINVAL on a malformed or overflowing size.
 */
int options_parse_size(const char *s, uint64_t *out);

#endif
