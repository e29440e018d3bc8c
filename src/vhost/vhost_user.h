/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file vhost_user.h
 * @brief vhost-user protocol constants and wire structures (QEMU docs/interop/vhost-user.rst).
 *
 * Only the subset bulkhead speaks is described: the set-up of split virtqueues over
 * shared memory, feature and protocol-feature negotiation, REPLY_ACK, multiqueue and
 * the device configuration space. Numbers travel in the host's byte order (both ends
 * run on the same machine). Every structure below has the exact wire layout, without
 * compiler padding, which the static assertions in vhost_user_msg.c pin down; the
 * codec copies bytes from the socket into them and never interprets a field before
 * the message as a whole has passed its checks.
 */
#ifndef BULKHEAD_VHOST_VHOST_USER_H
#define BULKHEAD_VHOST_VHOST_USER_H

#include <stdint.h>

/** Requests a frontend sends; replies carry the same code with VHOST_USER_FLAG_REPLY. */
enum vhost_user_request {
    VHOST_USER_GET_FEATURES = 1,           /**< Reply: u64 virtio features (+ bit 30). */
    VHOST_USER_SET_FEATURES = 2,           /**< u64: features the driver accepted. */
    VHOST_USER_SET_OWNER = 3,              /**< Session start; no payload. */
    VHOST_USER_RESET_OWNER = 4,            /**< Deprecated; treated as "stop every ring". */
    VHOST_USER_SET_MEM_TABLE = 5,          /**< Memory table, one fd per region. */
    VHOST_USER_SET_VRING_NUM = 8,          /**< Vring state: Queue Size. */
    VHOST_USER_SET_VRING_ADDR = 9,         /**< Vring addresses in the frontend's user space. */
    VHOST_USER_SET_VRING_BASE = 10,        /**< Vring state: next avail index to consume. */
    VHOST_USER_GET_VRING_BASE = 11,        /**< Stops the ring; reply: its next avail index. */
    VHOST_USER_SET_VRING_KICK = 12,        /**< u64 index (+NOFD); fd: kick eventfd; starts it. */
    VHOST_USER_SET_VRING_CALL = 13,        /**< u64 index (+NOFD); fd: used-buffer eventfd. */
    VHOST_USER_SET_VRING_ERR = 14,         /**< u64 index (+NOFD); fd: error eventfd. */
    VHOST_USER_GET_PROTOCOL_FEATURES = 15, /**< Reply: u64 protocol features. */
    VHOST_USER_SET_PROTOCOL_FEATURES = 16, /**< u64: protocol features the frontend uses. */
    VHOST_USER_GET_QUEUE_NUM = 17,         /**< Reply: u64 most queues (needs F_MQ). */
    VHOST_USER_SET_VRING_ENABLE = 18,      /**< Vring state: num 1 enables, 0 disables. */
    VHOST_USER_GET_CONFIG = 24,            /**< Config payload; reply: the same with the bytes. */
    VHOST_USER_SET_CONFIG = 25,            /**< Config payload with the bytes to write. */
    VHOST_USER_RESET_DEVICE = 34,          /**< Stop every ring, forget the negotiation. */
    VHOST_USER_GET_MAX_MEM_SLOTS = 36,     /**< Reply: u64 most memory regions. */
    VHOST_USER_ADD_MEM_REG = 37,           /**< Single region, one fd (decoded only). */
    VHOST_USER_REM_MEM_REG = 38,           /**< Single region, 0 or 1 fd (decoded only). */
};

/** Header flags: the protocol version, in the two low bits; only version 1 exists. */
#define VHOST_USER_VERSION 1u
/** Mask of the version bits in the header flags. */
#define VHOST_USER_VERSION_MASK 3u
/** Header flag: the message is a reply (set by the backend on every reply). */
#define VHOST_USER_FLAG_REPLY (1u << 2)
/** Header flag: the sender wants an acknowledgement (meaningful with F_REPLY_ACK). */
#define VHOST_USER_FLAG_NEED_REPLY (1u << 3)

/**
 * Virtio feature bit 30, unused by virtio itself: a backend sets it in GET_FEATURES
 * when it understands the protocol-feature messages. It is never offered to a guest.
 */
#define VHOST_USER_F_PROTOCOL_FEATURES 30

/** Protocol feature: GET_QUEUE_NUM reports how many queues the backend handles. */
#define VHOST_USER_PROTOCOL_F_MQ 0
/** Protocol feature: NEED_REPLY makes the backend acknowledge any request with a u64. */
#define VHOST_USER_PROTOCOL_F_REPLY_ACK 3
/** Protocol feature: GET_CONFIG / SET_CONFIG reach the device configuration space. */
#define VHOST_USER_PROTOCOL_F_CONFIG 9
/** Protocol feature: RESET_DEVICE is understood. */
#define VHOST_USER_PROTOCOL_F_RESET_DEVICE 13
/** Protocol feature: GET_MAX_MEM_SLOTS and ADD/REM_MEM_REG (not negotiated by bulkhead). */
#define VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS 15

/**
 * Flag in the u64 of SET_VRING_KICK/CALL/ERR: no descriptor comes with the message.
 * Bits 0-7 of that u64 are the vring index, so a connection has at most 256 queues.
 */
#define VHOST_USER_VRING_NOFD (1ull << 8)
/** Mask of the vring index in the u64 of SET_VRING_KICK/CALL/ERR. */
#define VHOST_USER_VRING_IDX_MASK 0xffull
/** Most vrings a connection can address (the index is 8 bits wide in KICK/CALL/ERR). */
#define VHOST_USER_MAX_QUEUES 256u

/** Most regions in one SET_MEM_TABLE (and the fds that come with it). */
#define VHOST_USER_MAX_MEM_REGIONS 8u
/** Most descriptors any message may carry: one per memory region. */
#define VHOST_USER_MAX_FDS VHOST_USER_MAX_MEM_REGIONS
/** Largest device configuration space a GET_CONFIG / SET_CONFIG may move. */
#define VHOST_USER_CONFIG_MAX 256u
/** Bytes of the config payload before the configuration bytes (offset, size, flags). */
#define VHOST_USER_CONFIG_HDR_SIZE 12u
/** SET_CONFIG flag: the write comes from live migration (may touch read-only fields). */
#define VHOST_USER_CONFIG_F_MIGRATION 1u

/** The header of every message: request, flags, then payload size in bytes. */
struct vhost_user_hdr {
    uint32_t request; /**< An enum vhost_user_request value. */
    uint32_t flags;   /**< Version and VHOST_USER_FLAG_* bits. */
    uint32_t size;    /**< Payload bytes that follow the header. */
};

/** Vring state: SET_VRING_NUM/BASE/ENABLE, GET_VRING_BASE and its reply. */
struct vhost_user_vring_state {
    uint32_t index; /**< Vring index. */
    uint32_t num;   /**< Size, base index or enable flag, depending on the request. */
};

/**
 * Vring addresses, in the frontend's user address space (bulkhead's frontend sends
 * synthetic ones; see frontend.h), not guest-physical addresses.
 */
struct vhost_user_vring_addr {
    uint32_t index;    /**< Vring index. */
    uint32_t flags;    /**< Bit 0: log used-ring writes (never set: bulkhead does not log). */
    uint64_t desc;     /**< Descriptor table. */
    uint64_t used;     /**< Used ring. */
    uint64_t avail;    /**< Available ring. */
    uint64_t log_addr; /**< Guest address for dirty logging; ignored. */
};

/** One region of a memory table: a guest-physical range, its user address and its file. */
struct vhost_user_mem_region {
    uint64_t guest_phys_addr; /**< Guest-physical start. */
    uint64_t memory_size;     /**< Bytes. */
    uint64_t
        userspace_addr;   /**< Frontend user address of guest_phys_addr (ring addresses use it). */
    uint64_t mmap_offset; /**< Offset of guest_phys_addr in the region's file. */
};

/**
 * SET_MEM_TABLE payload. On the wire only the first num_regions regions are present:
 * its size is 8 + 32 * num_regions.
 */
struct vhost_user_mem_table {
    uint32_t num_regions;                                             /**< 1 to 8. */
    uint32_t padding;                                                 /**< Ignored. */
    struct vhost_user_mem_region regions[VHOST_USER_MAX_MEM_REGIONS]; /**< The regions. */
};

/** ADD_MEM_REG / REM_MEM_REG payload (understood by the codec; not used yet). */
struct vhost_user_mem_single {
    uint64_t padding;                    /**< Ignored. */
    struct vhost_user_mem_region region; /**< The region. */
};

/**
 * GET_CONFIG / SET_CONFIG payload. On the wire only @c size bytes of @c data follow
 * the three words: the payload is 12 + size bytes.
 */
struct vhost_user_config {
    uint32_t offset;                     /**< Offset in the device configuration space. */
    uint32_t size;                       /**< Bytes of @c data, at most 256. */
    uint32_t flags;                      /**< SET_CONFIG: VHOST_USER_CONFIG_F_MIGRATION or 0. */
    uint8_t data[VHOST_USER_CONFIG_MAX]; /**< The configuration bytes. */
};

/** Every payload bulkhead sends or accepts. */
union vhost_user_payload {
    uint64_t u64;                        /**< Features, acks, KICK/CALL/ERR index word, counts. */
    struct vhost_user_vring_state state; /**< Vring state. */
    struct vhost_user_vring_addr addr;   /**< Vring addresses. */
    struct vhost_user_mem_table mem;     /**< Memory table. */
    struct vhost_user_mem_single single; /**< Single memory region. */
    struct vhost_user_config config;     /**< Device configuration. */
};

/**
 * Largest payload accepted: a config message with 256 bytes (the memory table with 8
 * regions is 264). A header announcing more is refused before any payload is read.
 */
#define VHOST_USER_PAYLOAD_MAX (VHOST_USER_CONFIG_HDR_SIZE + VHOST_USER_CONFIG_MAX)

#endif
