/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file blk_engine.h
 * @brief bulkhead-blk's request engine: virtio-blk requests on a raw image, through io_uring.
 *
 * Two objects. A **struct blk_image** is the disk: the open raw file, its capacity,
 * what the device offers (feature bits, configuration space) and the device ID
 * string. A **struct blk_engine** executes requests of one virtqueue: it owns an
 * io_uring, an eventfd the ring signals, and one slot per request in flight.
 * Multiqueue is one engine per queue, each driven by the thread that serves that
 * queue; the engines share the image (one file descriptor: page cache and
 * fdatasync() are per file, so a FLUSH on any queue covers writes completed on
 * every queue). Nothing is locked: an engine is used by one thread at a time; the
 * image's mutable state is atomic.
 *
 * **Request path.** The backend walks a chain with vq_walk_chain() and hands the
 * segments to blk_engine_queue(). The engine copies the 16-byte header (which may
 * be split across segments) and any discard/write-zeroes ranges into its own
 * memory once, validates that copy, and never reads them from the chain again.
 * Data moves with IORING_OP_READV/WRITEV straight between the image and the
 * chain's segments (zero copy). The status byte is the last device-writable byte
 * of the chain. Short transfers, -EAGAIN and -EINTR are resubmitted. Every
 * request, good or malformed, completes through the callback, only ever from
 * blk_engine_poll() (or blk_engine_drain()), after its status byte is written.
 *
 * **Hostile input.** Request type, sector, lengths, segment counts and range flags
 * are checked with overflow-safe arithmetic before any I/O. A request that does
 * not make sense completes with VIRTIO_BLK_S_IOERR (VIRTIO_BLK_S_UNSUPP for an
 * unknown type or flag, as the spec says) and touches no byte outside its own
 * segments: a header shorter than 16 bytes, no device-writable byte for the
 * status, a data length not a multiple of 512, a range beyond the capacity, more
 * data segments than seg_max, discard/write-zeroes data that is empty, not a
 * multiple of 16 bytes or has more ranges than allowed, any write to a read-only
 * image.
 *
 * **Cache mode.** Until blk_image_set_features() says VIRTIO_BLK_F_FLUSH was
 * negotiated the device is writethrough: writes complete only when durable
 * (RWF_DSYNC; write-zeroes end with fdatasync()), as the spec requires when FLUSH
 * was offered but not negotiated. With FLUSH it is writeback and
 * VIRTIO_BLK_T_FLUSH completes only after fdatasync() of the image.
 */
#ifndef BULKHEAD_BACKENDS_BLK_BLK_ENGINE_H
#define BULKHEAD_BACKENDS_BLK_BLK_ENGINE_H

#include "backends/blk/virtio_blk.h"
#include "virtio/virtqueue.h"

#include <stdbool.h>
#include <stdint.h>

/**
 * seg_max when the caller does not choose: a Queue Size of 128 minus the header
 * and status descriptors. A driver may not make a chain longer than the Queue
 * Size, so seg_max should be the smallest Queue Size the frontend uses minus 2.
 */
#define BLK_DEFAULT_SEG_MAX 126u
/** Largest seg_max: one readv/writev takes at most 1024 (UIO_MAXIOV) segments. */
#define BLK_MAX_SEG_MAX 1024u
/** Ranges per DISCARD or WRITE_ZEROES request (max_discard_seg, max_write_zeroes_seg). */
#define BLK_MAX_DWZ_SEG 16u
/** Longest discard range in sectors (2 GiB): one fallocate() each. */
#define BLK_MAX_DISCARD_SECTORS (1u << 22)
/**
 * Longest write-zeroes range in sectors (1 GiB): where the file system cannot
 * zero a range, it is written with zeroes 1 MiB at a time.
 */
#define BLK_MAX_WRITE_ZEROES_SECTORS (1u << 21)
/** Largest queue (and so number of slots) of one engine: io_uring's ring limit. */
#define BLK_MAX_QUEUE_SIZE 32768u

/** How to open an image. */
struct blk_image_opts {
    const char *path; /**< Raw image: a regular file whose size is a multiple of 512. */
    bool read_only;   /**< Open O_RDONLY and offer VIRTIO_BLK_F_RO; writes get IOERR. */
    /**
     * The GET_ID string: at most VIRTIO_BLK_ID_BYTES printable ASCII characters
     * (Linux shows it as /dev/disk/by-id/virtio-SERIAL). NULL: the file's name,
     * non-printable bytes replaced by '_' and cut to 20 bytes, so two images of the
     * same name in different directories get the same ID unless one is given.
     */
    const char *serial;
    uint32_t seg_max; /**< Data segments per request, 1 to BLK_MAX_SEG_MAX; 0: the default. */
};

/** An open disk image shared by the engines of all queues. Opaque. */
struct blk_image;

/**
 * Open an image. A writable image is probed once for hole punching
 * (fallocate(PUNCH_HOLE) past its end, which changes nothing): without it
 * VIRTIO_BLK_F_DISCARD is not offered and write_zeroes_may_unmap is 0.
 * @param out receives the image.
 * @param opts what to open; @c path is not kept.
 * @return 0; -EINVAL for bad options, a file that is not a regular file or whose
 *         size is not a multiple of 512 (each with one error line in the log);
 *         the negative errno of open(), fstat() or an allocation.
 */
int blk_image_open(struct blk_image **out, const struct blk_image_opts *opts);

/**
 * Close an image. Every engine on it must have been destroyed.
 * @param img the image (NULL is ignored).
 */
void blk_image_close(struct blk_image *img);

/**
 * The disk size as the guest sees it, fixed at open: a file that grows later is
 * not seen, one that shrinks reads back zeroes past its new end.
 * @param img the image.
 * @return capacity in 512-byte sectors.
 */
uint64_t blk_image_capacity(const struct blk_image *img);

/**
 * Device-type feature bits (0 to 23) the device offers: SEG_MAX, BLK_SIZE, FLUSH
 * and MQ always; RO for a read-only image; WRITE_ZEROES for a writable one, and
 * DISCARD when it can punch holes. Transport and ring bits (VERSION_1,
 * INDIRECT_DESC, EVENT_IDX...) are the vhost-user layer's to add. The set never
 * changes after open.
 * @param img the image.
 * @return a mask of (1ull << VIRTIO_BLK_F_*).
 */
uint64_t blk_image_features(const struct blk_image *img);

/**
 * Tell the image what the driver accepted (vhost-user SET_FEATURES). Only FLUSH
 * matters: without it every write is made durable before it completes.
 * @param img the image.
 * @param negotiated the negotiated feature bits.
 */
void blk_image_set_features(struct blk_image *img, uint64_t negotiated);

/**
 * Fill the configuration space (vhost-user GET_CONFIG), little-endian. Fields of
 * features that are not offered are 0; @c writeback says the current cache mode.
 * @param img the image.
 * @param num_queues request queues the backend serves (the MQ field), at least 1.
 * @param cfg receives the configuration.
 */
void blk_image_config(const struct blk_image *img, uint16_t num_queues,
                      struct virtio_blk_config *cfg);

/**
 * Completion callback, called once per request accepted by blk_engine_queue(),
 * from blk_engine_poll() or blk_engine_drain() only, after the status byte was
 * written. It may queue new requests; it must not poll, drain or destroy the engine.
 * @param opaque the engine's @c opaque.
 * @param cookie the request's cookie.
 * @param used_len bytes written into the chain, status byte included: the used
 *        element's length. 0 means the chain had no writable byte, so no status
 *        could be given: a malformed chain the backend may treat as such.
 * @param status the VIRTIO_BLK_S_* written (VIRTIO_BLK_S_IOERR when used_len is 0).
 */
typedef void blk_done_fn(void *opaque, void *cookie, uint32_t used_len, uint8_t status);

/** The request engine of one queue. Opaque. */
struct blk_engine;

/**
 * Create the engine of one queue: an io_uring with @p queue_size entries, an
 * eventfd it signals for each completion, and @p queue_size request slots.
 * @param out receives the engine.
 * @param img the image; must outlive the engine.
 * @param queue_size slots: the virtqueue's Queue Size, 1 to BLK_MAX_QUEUE_SIZE.
 * @param done completion callback.
 * @param opaque first argument of @p done.
 * @return 0; -EINVAL for bad arguments; the negative errno of io_uring set-up,
 *         eventfd() or an allocation.
 */
int blk_engine_create(struct blk_engine **out, struct blk_image *img, unsigned queue_size,
                      blk_done_fn *done, void *opaque);

/**
 * Destroy an engine. Waits for the I/O in flight to end first, since the kernel
 * would otherwise still write into the chains' memory afterwards; the callbacks
 * of those requests are not called (blk_engine_drain() first to get them).
 * @param e the engine (NULL is ignored).
 */
void blk_engine_destroy(struct blk_engine *e);

/**
 * The eventfd to wait on (readable when blk_engine_poll() has work). Owned by the
 * engine; non-blocking.
 * @param e the engine.
 * @return the file descriptor.
 */
int blk_engine_eventfd(const struct blk_engine *e);

/**
 * Take a request: validate it and prepare its first I/O, which is handed to the
 * kernel at the next blk_engine_submit() or blk_engine_poll(). The segments are
 * those of one walked chain, as vq_walk_chain() stores them: @p nr_readable
 * device-readable ones, then @p nr_writable device-writable ones. The engine
 * copies the array; the memory it describes must stay mapped until the callback.
 * Call vq_walk_chain() with room for Queue Size segments, so a well-formed chain
 * never gets -ENOBUFS.
 * @param e the engine.
 * @param iov the chain's segments.
 * @param nr_readable device-readable segments at the start of @p iov.
 * @param nr_writable device-writable segments after them.
 * @param cookie passed back to the callback.
 * @return 0 when the request was taken (the callback will come, even for a
 *         malformed request); -EBUSY when every slot is in use (stop taking chains
 *         until a completion frees one: a hostile driver can make more chains
 *         available than its Queue Size); -EINVAL for NULL pointers. On error
 *         nothing was taken and no callback will come.
 */
int blk_engine_queue(struct blk_engine *e, const struct vq_iovec *iov, unsigned nr_readable,
                     unsigned nr_writable, void *cookie);

/**
 * Hand the prepared I/O to the kernel: one system call for everything queued
 * since the last submit.
 * @param e the engine.
 * @return 0; a negative errno from io_uring_submit() that is not transient (for
 *         -EAGAIN/-EBUSY the engine signals its eventfd and retries at the next poll).
 */
int blk_engine_submit(struct blk_engine *e);

/**
 * Do the engine's work without waiting: clear the eventfd, reap completions,
 * start the next step of requests that have one (the rest of a short transfer,
 * the next range), call the callbacks of finished requests, then submit.
 * @param e the engine.
 * @return the number of callbacks called, or a negative errno as blk_engine_submit().
 */
int blk_engine_poll(struct blk_engine *e);

/**
 * Wait until every request taken has completed, calling their callbacks: for
 * vhost-user GET_VRING_BASE (the queue stops) and before destroying.
 * @param e the engine.
 * @return 0; a negative errno when the ring fails (requests may still be in flight).
 */
int blk_engine_drain(struct blk_engine *e);

/**
 * Requests taken and not yet completed.
 * @param e the engine.
 * @return the count, at most the engine's queue size.
 */
unsigned blk_engine_in_flight(const struct blk_engine *e);

/**
 * For a polling caller: whether blk_engine_poll() would find completions now, without
 * a system call (the completion ring is in shared memory).
 * @param e the engine.
 * @return true when completions wait.
 */
bool blk_engine_ready(const struct blk_engine *e);

/**
 * Free request slots: how many more chains blk_engine_queue() will take now.
 * @param e the engine.
 * @return the count.
 */
unsigned blk_engine_free_slots(const struct blk_engine *e);

#endif
