/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file virtio_blk.h
 * @brief Block device layout and constants, from the virtio 1.2 specification (§5.2).
 *
 * Every multi-byte field is little-endian (virtio 1.x). The request structures
 * describe bytes in guest buffers: bulkhead-blk copies such bytes into its own
 * memory once and decodes that copy byte by byte, never dereferences them in
 * place. The configuration structure is what the device hands out through
 * GET_CONFIG, filled in little-endian by blk_image_config(). Zoned-device
 * request types and statuses are listed only so that they are refused by name.
 */
#ifndef BULKHEAD_BACKENDS_BLK_VIRTIO_BLK_H
#define BULKHEAD_BACKENDS_BLK_VIRTIO_BLK_H

#include <stddef.h>
#include <stdint.h>

/** Virtio device ID of a block device. */
#define VIRTIO_ID_BLOCK 2u

/** Sector size of the protocol: @c sector and @c capacity count 512-byte units, always. */
#define VIRTIO_BLK_SECTOR_SIZE 512u
/** log2(VIRTIO_BLK_SECTOR_SIZE), for shifts. */
#define VIRTIO_BLK_SECTOR_SHIFT 9u

/** @name Feature bits (device-type bits 0 to 23)
 * @{ */
/** Legacy only: request barriers. Never offered. */
#define VIRTIO_BLK_F_BARRIER 0
/** @c size_max bounds the length of any one data segment. */
#define VIRTIO_BLK_F_SIZE_MAX 1
/** @c seg_max bounds the number of data segments in a request. */
#define VIRTIO_BLK_F_SEG_MAX 2
/** @c geometry holds a disk-style geometry. */
#define VIRTIO_BLK_F_GEOMETRY 4
/** The device is read-only: writes fail with VIRTIO_BLK_S_IOERR. */
#define VIRTIO_BLK_F_RO 5
/** @c blk_size holds the optimal block size (the protocol still counts 512-byte sectors). */
#define VIRTIO_BLK_F_BLK_SIZE 6
/** Legacy only: SCSI packet commands. Never offered. */
#define VIRTIO_BLK_F_SCSI 7
/**
 * VIRTIO_BLK_T_FLUSH exists. When offered but not negotiated, every completed write
 * must already be durable (the device runs as writethrough).
 */
#define VIRTIO_BLK_F_FLUSH 9
/** @c topology holds alignment hints. */
#define VIRTIO_BLK_F_TOPOLOGY 10
/** @c writeback is writable by the driver (cache mode toggle). */
#define VIRTIO_BLK_F_CONFIG_WCE 11
/** @c num_queues request queues instead of one. */
#define VIRTIO_BLK_F_MQ 12
/** VIRTIO_BLK_T_DISCARD exists; limits in @c max_discard_*. */
#define VIRTIO_BLK_F_DISCARD 13
/** VIRTIO_BLK_T_WRITE_ZEROES exists; limits in @c max_write_zeroes_*. */
#define VIRTIO_BLK_F_WRITE_ZEROES 14
/** VIRTIO_BLK_T_GET_LIFETIME exists (eMMC/UFS wear figures). */
#define VIRTIO_BLK_F_LIFETIME 15
/** VIRTIO_BLK_T_SECURE_ERASE exists. */
#define VIRTIO_BLK_F_SECURE_ERASE 16
/** The device is a zoned block device. */
#define VIRTIO_BLK_F_ZONED 17
/** @} */

/** @name Request types (le32 @c type of the request header)
 * @{ */
/** Read @c data from the disk at @c sector. */
#define VIRTIO_BLK_T_IN 0u
/** Write @c data to the disk at @c sector. */
#define VIRTIO_BLK_T_OUT 1u
/** Make every write completed before this request durable. */
#define VIRTIO_BLK_T_FLUSH 4u
/** Legacy synonym of VIRTIO_BLK_T_FLUSH that drivers may still send. */
#define VIRTIO_BLK_T_FLUSH_OUT 5u
/** Fetch the device ID string (VIRTIO_BLK_ID_BYTES) into @c data. */
#define VIRTIO_BLK_T_GET_ID 8u
/** Fetch struct virtio_blk_lifetime. */
#define VIRTIO_BLK_T_GET_LIFETIME 10u
/** Discard the ranges listed as struct virtio_blk_discard_write_zeroes in @c data. */
#define VIRTIO_BLK_T_DISCARD 11u
/** Make the listed ranges read back as zeroes. */
#define VIRTIO_BLK_T_WRITE_ZEROES 13u
/** Securely erase the listed ranges. */
#define VIRTIO_BLK_T_SECURE_ERASE 14u
/** Zoned devices only. */
#define VIRTIO_BLK_T_ZONE_APPEND 15u
/** Zoned devices only. */
#define VIRTIO_BLK_T_ZONE_REPORT 16u
/** Zoned devices only. */
#define VIRTIO_BLK_T_ZONE_OPEN 18u
/** Zoned devices only. */
#define VIRTIO_BLK_T_ZONE_CLOSE 20u
/** Zoned devices only. */
#define VIRTIO_BLK_T_ZONE_FINISH 22u
/** Zoned devices only. */
#define VIRTIO_BLK_T_ZONE_RESET 24u
/** Zoned devices only. */
#define VIRTIO_BLK_T_ZONE_RESET_ALL 26u
/** @} */

/** @name Status byte (the last device-writable byte of a request)
 * @{ */
/** Success. */
#define VIRTIO_BLK_S_OK 0u
/** Device or driver error (also: a write to a read-only device, a malformed request). */
#define VIRTIO_BLK_S_IOERR 1u
/** Request type or flag the device does not support. */
#define VIRTIO_BLK_S_UNSUPP 2u
/** @} */

/** Length of the GET_ID string: NUL-padded, no terminator when it is 20 bytes long. */
#define VIRTIO_BLK_ID_BYTES 20u

/**
 * The device-readable header every request starts with (16 bytes). A driver may
 * split it across descriptors; the device reads it as one byte string.
 */
struct virtio_blk_req_hdr {
    uint32_t type;     /**< VIRTIO_BLK_T_*. */
    uint32_t reserved; /**< Formerly ioprio; ignored. */
    uint64_t sector;   /**< Offset in 512-byte sectors (IN/OUT; 0 for the others). */
};

/** Size of struct virtio_blk_req_hdr in guest memory. */
#define VIRTIO_BLK_REQ_HDR_SIZE 16u

/** Flag of a discard/write-zeroes segment: the device may deallocate (write zeroes only). */
#define VIRTIO_BLK_WZ_F_UNMAP 1u

/**
 * One range of a DISCARD, WRITE_ZEROES or SECURE_ERASE request (16 bytes). The
 * request's data is an array of these; flags other than VIRTIO_BLK_WZ_F_UNMAP are
 * reserved and make the device answer VIRTIO_BLK_S_UNSUPP, as does UNMAP on a discard.
 */
struct virtio_blk_discard_write_zeroes {
    uint64_t sector;      /**< First sector of the range. */
    uint32_t num_sectors; /**< Sectors in the range. */
    uint32_t flags;       /**< VIRTIO_BLK_WZ_F_UNMAP, the rest reserved. */
};

/** Size of struct virtio_blk_discard_write_zeroes in guest memory. */
#define VIRTIO_BLK_DWZ_SEG_SIZE 16u

/** VIRTIO_BLK_F_GEOMETRY: legacy disk-style geometry (4 bytes). */
struct virtio_blk_geometry {
    uint16_t cylinders; /**< Cylinders. */
    uint8_t heads;      /**< Heads. */
    uint8_t sectors;    /**< Sectors per track. */
};

/** VIRTIO_BLK_F_TOPOLOGY: alignment hints, in logical blocks (8 bytes). */
struct virtio_blk_topology {
    uint8_t physical_block_exp; /**< log2 of logical blocks per physical block. */
    uint8_t alignment_offset;   /**< First aligned logical block. */
    uint16_t min_io_size;       /**< Suggested minimum I/O size. */
    uint32_t opt_io_size;       /**< Optimal (suggested maximum) I/O size. */
};

/** VIRTIO_BLK_F_ZONED: zone characteristics (24 bytes). */
struct virtio_blk_zoned_characteristics {
    uint32_t zone_sectors;       /**< Zone size in sectors. */
    uint32_t max_open_zones;     /**< Open-zone limit, 0 none. */
    uint32_t max_active_zones;   /**< Active-zone limit, 0 none. */
    uint32_t max_append_sectors; /**< Longest ZONE_APPEND. */
    uint32_t write_granularity;  /**< Write alignment in sequential zones, bytes. */
    uint8_t model;               /**< VIRTIO_BLK_Z_*: none, host-managed, host-aware. */
    uint8_t unused2[3];          /**< Padding, must be 0. */
};

/**
 * Device configuration space (96 bytes in virtio 1.2). Only @c capacity is always
 * meaningful; every other field counts only when its feature bit is negotiated.
 * Sector counts and alignments are in 512-byte units; @c blk_size is in bytes.
 * Little-endian: struct members hold little-endian values, not host values.
 */
struct virtio_blk_config {
    uint64_t capacity;                      /**< Disk size in 512-byte sectors. */
    uint32_t size_max;                      /**< SIZE_MAX: longest data segment, bytes. */
    uint32_t seg_max;                       /**< SEG_MAX: most data segments per request. */
    struct virtio_blk_geometry geometry;    /**< GEOMETRY. */
    uint32_t blk_size;                      /**< BLK_SIZE: optimal logical block size. */
    struct virtio_blk_topology topology;    /**< TOPOLOGY. */
    uint8_t writeback;                      /**< 1 writeback cache, 0 writethrough. */
    uint8_t unused0;                        /**< Padding, must be 0. */
    uint16_t num_queues;                    /**< MQ: request queues. */
    uint32_t max_discard_sectors;           /**< DISCARD: longest range. */
    uint32_t max_discard_seg;               /**< DISCARD: most ranges per request. */
    uint32_t discard_sector_alignment;      /**< DISCARD: splitting hint for the driver. */
    uint32_t max_write_zeroes_sectors;      /**< WRITE_ZEROES: longest range. */
    uint32_t max_write_zeroes_seg;          /**< WRITE_ZEROES: most ranges per request. */
    uint8_t write_zeroes_may_unmap;         /**< 1 when WRITE_ZEROES with UNMAP may deallocate. */
    uint8_t unused1[3];                     /**< Padding, must be 0. */
    uint32_t max_secure_erase_sectors;      /**< SECURE_ERASE: longest range. */
    uint32_t max_secure_erase_seg;          /**< SECURE_ERASE: most ranges per request. */
    uint32_t secure_erase_sector_alignment; /**< SECURE_ERASE: splitting hint. */
    struct virtio_blk_zoned_characteristics zoned; /**< ZONED. */
};

/* The layout is the spec's byte layout with no compiler padding anywhere. */
/** @cond LAYOUT_CHECKS */
_Static_assert(offsetof(struct virtio_blk_config, seg_max) == 12, "seg_max");
_Static_assert(offsetof(struct virtio_blk_config, blk_size) == 20, "blk_size");
_Static_assert(offsetof(struct virtio_blk_config, writeback) == 32, "writeback");
_Static_assert(offsetof(struct virtio_blk_config, num_queues) == 34, "num_queues");
_Static_assert(offsetof(struct virtio_blk_config, max_discard_sectors) == 36, "discard");
_Static_assert(offsetof(struct virtio_blk_config, max_write_zeroes_sectors) == 48, "wz");
_Static_assert(offsetof(struct virtio_blk_config, write_zeroes_may_unmap) == 56, "may_unmap");
_Static_assert(offsetof(struct virtio_blk_config, max_secure_erase_sectors) == 60, "erase");
_Static_assert(offsetof(struct virtio_blk_config, zoned) == 72, "zoned");
_Static_assert(sizeof(struct virtio_blk_config) == 96, "virtio_blk_config is 96 bytes");
/** @endcond */

#endif
