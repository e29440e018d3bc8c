/* SPDX-License-Identifier: BSD-2-Clause */
#include "backends/blk/blk_engine.h"

#include "core/checked.h"
#include "core/log.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

/*
 * Source of write-zeroes data where the file system cannot zero a range. It is
 * read-only anonymous memory: every page is the kernel's shared zero page, so it
 * costs no RAM however large it is.
 */
#define ZERO_CHUNK (1u << 20)
/*
 * Transient results (-EAGAIN, -EINTR) retried in a row before a request fails, so
 * a file that keeps refusing cannot hold a slot forever.
 */
#define MAX_RETRIES 64
/* End of the slot lists. */
#define NO_REQ UINT32_MAX
/* Largest discard alignment reported (sectors): st_blksize can be huge on some file systems. */
#define MAX_DISCARD_ALIGN 2048u

/**
 * The disk. Immutable after blk_image_open() except the atomic flags, which the
 * queue threads share: each engine learns from another's -EOPNOTSUPP.
 */
struct blk_image {
    int fd;                       /**< The image, O_RDWR or O_RDONLY. */
    bool read_only;               /**< Every write is refused with IOERR. */
    uint64_t capacity;            /**< Sectors. */
    uint64_t size;                /**< Capacity in bytes: every request range lies below it. */
    uint32_t seg_max;             /**< Data segments per request, and iovecs per slot. */
    uint32_t discard_align;       /**< Sectors: the file system's block size. */
    uint64_t features;            /**< Offered bits, fixed at open: an offer cannot change. */
    char id[VIRTIO_BLK_ID_BYTES]; /**< GET_ID answer, NUL-padded. */
    void *zeroes;                 /**< ZERO_CHUNK read-only zero bytes. */
    atomic_bool can_punch;        /**< FALLOC_FL_PUNCH_HOLE works here. */
    atomic_bool can_zero_range;   /**< FALLOC_FL_ZERO_RANGE works here (not on tmpfs). */
    atomic_bool writethrough;     /**< FLUSH not negotiated: writes complete when durable. */
};

/** One validated discard/write-zeroes range, from the engine's own copy of the request. */
struct blk_range {
    uint64_t off; /**< Image offset, bytes. */
    uint64_t len; /**< Bytes; off + len is within the capacity. */
    bool unmap;   /**< Write-zeroes may deallocate. */
};

/** What a request's one outstanding io_uring operation is. */
enum blk_step {
    STEP_NONE,       /**< Nothing in flight (completed, or not started). */
    STEP_RW,         /**< readv/writev of the data segments. */
    STEP_FALLOC,     /**< Punch or zero the current range. */
    STEP_ZERO_WRITE, /**< Write zeroes into the current range, ZERO_CHUNK at a time. */
    STEP_SYNC,       /**< fdatasync. */
};

/** One request slot. Everything the request needs lives here, copied from the chain once. */
struct blk_req {
    void *cookie;       /**< The caller's, for the callback. */
    struct iovec *iov;  /**< This slot's seg_max entries: data segments, or the zero source. */
    uint8_t *status;    /**< The chain's last writable byte; NULL when it has none. */
    uint64_t off;       /**< Image offset of the next transfer. */
    uint64_t left;      /**< Bytes of the current transfer still to move. */
    uint64_t done;      /**< Data bytes written into the chain (the used length minus 1). */
    uint32_t type;      /**< VIRTIO_BLK_T_*, from the header copy. */
    uint32_t next;      /**< Next slot on the free list or the completed list. */
    unsigned nr_iov;    /**< Entries of iov in use. */
    unsigned cur;       /**< First unfinished entry of iov. */
    unsigned nr_range;  /**< Ranges of a discard/write-zeroes. */
    unsigned range_idx; /**< The range being worked on. */
    int falloc_mode;    /**< Mode of the STEP_FALLOC in flight. */
    uint16_t retries;   /**< Transient errors in a row. */
    uint8_t step;       /**< enum blk_step. */
    uint8_t result;     /**< VIRTIO_BLK_S_* to write. */
    struct blk_range range[BLK_MAX_DWZ_SEG]; /**< Validated ranges. */
};

/** The engine of one queue: its ring, its eventfd and its slots. One thread at a time. */
struct blk_engine {
    struct blk_image *img; /**< Shared with the other queues' engines. */
    struct io_uring ring;  /**< One SQ entry per slot. */
    bool ring_ready;       /**< ring was set up (destroy must tear it down). */
    bool in_poll;          /**< Completions found while polling need no eventfd wake-up. */
    int efd;               /**< Registered with the ring; also written for early completions. */
    blk_done_fn *done;     /**< Completion callback. */
    void *opaque;          /**< Its first argument. */
    struct blk_req *reqs;  /**< nr_reqs slots. */
    struct iovec *iovs;    /**< nr_reqs * seg_max iovecs, seg_max per slot. */
    unsigned nr_reqs;      /**< Slots: the Queue Size. */
    unsigned nr_free;      /**< Slots on the free list. */
    uint32_t free_head;    /**< Free list (LIFO). */
    uint32_t done_head;    /**< Completed, callback not yet called; FIFO. */
    uint32_t done_tail;    /**< Last of the completed list. */
};

/* ---- the image ---- */

static bool id_char_ok(unsigned char c)
{
    return c > 0x20 && c < 0x7f;
}

static bool serial_ok(const char *s)
{
    size_t n = strlen(s);
    if (n > VIRTIO_BLK_ID_BYTES)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!id_char_ok((unsigned char)s[i]))
            return false;
    return true;
}

static void derive_id(char id[VIRTIO_BLK_ID_BYTES], const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    for (size_t i = 0; i < VIRTIO_BLK_ID_BYTES && base[i] != '\0'; i++)
        id[i] = id_char_ok((unsigned char)base[i]) ? base[i] : '_';
}

/*
 * Past the end of the file a hole punch has nothing to deallocate, so it tells
 * whether the file system can punch without changing a byte. Any failure counts
 * as "cannot": discard is only a hint, and write-zeroes has other ways.
 */
static bool probe_punch(int fd, uint64_t size)
{
    return fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)size, 4096) == 0;
}

int blk_image_open(struct blk_image **out, const struct blk_image_opts *opts)
{
    if (!out || !opts || !opts->path)
        return -EINVAL;
    *out = NULL;
    const char *path = opts->path;
    uint32_t seg_max = opts->seg_max ? opts->seg_max : BLK_DEFAULT_SEG_MAX;
    if (seg_max > BLK_MAX_SEG_MAX) {
        log_error("disk %s: seg_max %u is more than %u", path, seg_max, BLK_MAX_SEG_MAX);
        return -EINVAL;
    }
    if (opts->serial && !serial_ok(opts->serial)) {
        log_error("disk %s: the serial must be at most %u printable ASCII characters", path,
                  VIRTIO_BLK_ID_BYTES);
        return -EINVAL;
    }

    struct blk_image *img = calloc(1, sizeof(*img));
    if (!img)
        return -ENOMEM;
    img->zeroes = MAP_FAILED;
    int rc;
    img->fd = open(path, (opts->read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    if (img->fd < 0) {
        rc = -errno;
        goto fail;
    }
    struct stat st;
    if (fstat(img->fd, &st) != 0) {
        rc = -errno;
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        log_error("disk image %s is not a regular file", path);
        rc = -EINVAL;
        goto fail;
    }
    uint64_t size = (uint64_t)st.st_size;
    if (size % VIRTIO_BLK_SECTOR_SIZE != 0) {
        log_error("disk image %s: its size, %llu bytes, is not a multiple of %u", path,
                  (unsigned long long)size, VIRTIO_BLK_SECTOR_SIZE);
        rc = -EINVAL;
        goto fail;
    }
    img->zeroes = mmap(NULL, ZERO_CHUNK, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (img->zeroes == MAP_FAILED) {
        rc = -errno;
        goto fail;
    }

    img->read_only = opts->read_only;
    img->size = size;
    img->capacity = size >> VIRTIO_BLK_SECTOR_SHIFT;
    img->seg_max = seg_max;
    uint64_t align = (uint64_t)st.st_blksize / VIRTIO_BLK_SECTOR_SIZE;
    img->discard_align = align < 1                   ? 1
                         : align > MAX_DISCARD_ALIGN ? MAX_DISCARD_ALIGN
                                                     : (uint32_t)align;
    if (opts->serial)
        memcpy(img->id, opts->serial, strlen(opts->serial));
    else
        derive_id(img->id, path);
    bool punch = !img->read_only && probe_punch(img->fd, size);
    atomic_init(&img->can_punch, punch);
    atomic_init(&img->can_zero_range, true);
    atomic_init(&img->writethrough, true);

    img->features = 1ull << VIRTIO_BLK_F_SEG_MAX | 1ull << VIRTIO_BLK_F_BLK_SIZE |
                    1ull << VIRTIO_BLK_F_FLUSH | 1ull << VIRTIO_BLK_F_MQ;
    if (img->read_only)
        img->features |= 1ull << VIRTIO_BLK_F_RO;
    else
        img->features |= 1ull << VIRTIO_BLK_F_WRITE_ZEROES;
    if (punch)
        img->features |= 1ull << VIRTIO_BLK_F_DISCARD;
    *out = img;
    return 0;

fail:
    blk_image_close(img);
    return rc;
}

void blk_image_close(struct blk_image *img)
{
    if (!img)
        return;
    if (img->fd >= 0)
        close(img->fd);
    if (img->zeroes != MAP_FAILED)
        munmap(img->zeroes, ZERO_CHUNK);
    free(img);
}

uint64_t blk_image_capacity(const struct blk_image *img)
{
    return img->capacity;
}

uint64_t blk_image_features(const struct blk_image *img)
{
    return img->features;
}

void blk_image_set_features(struct blk_image *img, uint64_t negotiated)
{
    atomic_store(&img->writethrough, !(negotiated & (1ull << VIRTIO_BLK_F_FLUSH)));
}

void blk_image_config(const struct blk_image *img, uint16_t num_queues,
                      struct virtio_blk_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->capacity = htole64(img->capacity);
    cfg->seg_max = htole32(img->seg_max);
    cfg->blk_size = htole32(VIRTIO_BLK_SECTOR_SIZE);
    cfg->writeback = atomic_load(&img->writethrough) ? 0 : 1;
    cfg->num_queues = htole16(num_queues ? num_queues : 1);
    if (img->features & (1ull << VIRTIO_BLK_F_DISCARD)) {
        cfg->max_discard_sectors = htole32(BLK_MAX_DISCARD_SECTORS);
        cfg->max_discard_seg = htole32(BLK_MAX_DWZ_SEG);
        cfg->discard_sector_alignment = htole32(img->discard_align);
    }
    if (img->features & (1ull << VIRTIO_BLK_F_WRITE_ZEROES)) {
        cfg->max_write_zeroes_sectors = htole32(BLK_MAX_WRITE_ZEROES_SECTORS);
        cfg->max_write_zeroes_seg = htole32(BLK_MAX_DWZ_SEG);
        cfg->write_zeroes_may_unmap = atomic_load(&img->can_punch) ? 1 : 0;
    }
}

/* ---- chain helpers: apart from io_uring and the status byte, only these touch the chain ---- */

static uint32_t le32_at(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64_at(const uint8_t *p)
{
    return le32_at(p) | (uint64_t)le32_at(p + 4) << 32;
}

static bool sum_len(const struct vq_iovec *iov, unsigned n, uint64_t *out)
{
    uint64_t t = 0;
    for (unsigned i = 0; i < n; i++)
        if (checked_add_u64(t, iov[i].len, &t))
            return false;
    *out = t;
    return true;
}

static uint8_t *last_byte(const struct vq_iovec *iov, unsigned n)
{
    for (unsigned i = n; i-- > 0;)
        if (iov[i].len > 0)
            return (uint8_t *)iov[i].base + iov[i].len - 1;
    return NULL;
}

/* Copies @p len bytes found @p skip bytes into the segments; the caller checked they hold them. */
static void gather(uint8_t *dst, const struct vq_iovec *iov, unsigned n, uint64_t skip, size_t len)
{
    for (unsigned i = 0; i < n && len > 0; i++) {
        size_t l = iov[i].len;
        if (skip >= l) {
            skip -= l;
            continue;
        }
        l -= (size_t)skip;
        if (l > len)
            l = len;
        memcpy(dst, (const uint8_t *)iov[i].base + skip, l);
        skip = 0;
        dst += l;
        len -= l;
    }
}

/* Copies @p len bytes to the start of the segments; the caller checked they have room. */
static void scatter(const struct vq_iovec *iov, unsigned n, const void *src, size_t len)
{
    const uint8_t *s = src;
    for (unsigned i = 0; i < n && len > 0; i++) {
        size_t l = iov[i].len < len ? iov[i].len : len;
        memcpy(iov[i].base, s, l);
        s += l;
        len -= l;
    }
}

/*
 * Points the slot's iovecs at @p len bytes found @p skip bytes into the segments.
 * False when that takes more than @p cap segments (the driver broke seg_max).
 */
static bool take_segments(struct blk_req *req, unsigned cap, const struct vq_iovec *iov, unsigned n,
                          uint64_t skip, uint64_t len)
{
    req->nr_iov = 0;
    req->cur = 0;
    for (unsigned i = 0; i < n && len > 0; i++) {
        size_t l = iov[i].len;
        if (skip >= l) {
            skip -= l;
            continue;
        }
        l -= (size_t)skip;
        if (l > len)
            l = (size_t)len;
        if (req->nr_iov == cap)
            return false;
        req->iov[req->nr_iov++] =
            (struct iovec){.iov_base = (uint8_t *)iov[i].base + skip, .iov_len = l};
        skip = 0;
        len -= l;
    }
    return len == 0;
}

/* [sector * 512, + bytes) inside the disk, without any wrap-around; its byte offset in @p off. */
static bool sector_range(const struct blk_image *img, uint64_t sector, uint64_t bytes,
                         uint64_t *off)
{
    uint64_t start;
    if (checked_mul_u64(sector, VIRTIO_BLK_SECTOR_SIZE, &start))
        return false;
    if (!range_within(start, bytes, 0, img->size))
        return false;
    *off = start;
    return true;
}

/* ---- slots and completion ---- */

static void wake(struct blk_engine *e)
{
    uint64_t one = 1;
    /* Only fails when the counter is about to overflow: it is readable then anyway. */
    (void)!write(e->efd, &one, sizeof(one));
}

static struct blk_req *slot_take(struct blk_engine *e)
{
    struct blk_req *req = &e->reqs[e->free_head];
    e->free_head = req->next;
    e->nr_free--;
    struct iovec *iov = req->iov;
    memset(req, 0, offsetof(struct blk_req, range));
    req->iov = iov;
    req->next = NO_REQ;
    return req;
}

static void slot_put(struct blk_engine *e, struct blk_req *req)
{
    req->next = e->free_head;
    e->free_head = (uint32_t)(req - e->reqs);
    e->nr_free++;
}

/* The callback runs from blk_engine_poll() only, whatever context finished the request. */
static void complete(struct blk_engine *e, struct blk_req *req, uint8_t status)
{
    req->result = status;
    req->step = STEP_NONE;
    req->next = NO_REQ;
    uint32_t i = (uint32_t)(req - e->reqs);
    if (e->done_tail == NO_REQ)
        e->done_head = i;
    else
        e->reqs[e->done_tail].next = i;
    e->done_tail = i;
    if (!e->in_poll)
        wake(e);
}

static void refuse(struct blk_engine *e, struct blk_req *req, uint8_t status, const char *why)
{
    log_guest(LOG_DEBUG, "blk: request of type %u refused: %s", req->type, why);
    complete(e, req, status);
}

static const char *step_name(const struct blk_req *req)
{
    switch (req->step) {
    case STEP_RW:
        return req->type == VIRTIO_BLK_T_IN ? "read" : "write";
    case STEP_FALLOC:
        return (req->falloc_mode & FALLOC_FL_PUNCH_HOLE) ? "hole punch" : "zero range";
    case STEP_ZERO_WRITE:
        return "zero write";
    default:
        return "fdatasync";
    }
}

static void io_failed(struct blk_engine *e, struct blk_req *req, int res)
{
    log_guest(LOG_WARN, "blk: %s at byte %llu of the image failed: %s", step_name(req),
              (unsigned long long)req->off, strerror(-res));
    complete(e, req, VIRTIO_BLK_S_IOERR);
}

static void finish(struct blk_engine *e, struct blk_req *req)
{
    uint32_t used = 0;
    if (req->status) {
        *req->status = req->result;
        /* done < the writable bytes, which were checked to fit in 32 bits. */
        used = (uint32_t)req->done + 1;
    }
    void *cookie = req->cookie;
    uint8_t status = req->result;
    /* Freed first, so the callback can queue the next chain into this slot. */
    slot_put(e, req);
    e->done(e->opaque, cookie, used, status);
}

/* ---- submission ---- */

static int submit_pending(struct blk_engine *e)
{
    while (io_uring_sq_ready(&e->ring) > 0) {
        int r = io_uring_submit(&e->ring);
        if (r > 0 || r == -EINTR)
            continue;
        if (r == 0 || r == -EAGAIN || r == -EBUSY) {
            /* The kernel is short of memory: try again at the next poll. */
            wake(e);
            return 0;
        }
        log_error("blk: io_uring submission failed: %s", strerror(-r));
        return r;
    }
    return 0;
}

/* Prepares the SQE of the request's current step. A slot has at most one SQE at a time. */
static void issue(struct blk_engine *e, struct blk_req *req)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&e->ring);
    if (!sqe) {
        /* Cannot happen: the ring has an entry per slot. Stay safe if it does. */
        (void)submit_pending(e);
        sqe = io_uring_get_sqe(&e->ring);
    }
    if (!sqe) {
        log_warn("blk: no free io_uring submission entry");
        complete(e, req, VIRTIO_BLK_S_IOERR);
        return;
    }
    const struct blk_image *img = e->img;
    switch ((enum blk_step)req->step) {
    case STEP_RW:
        if (req->type == VIRTIO_BLK_T_IN)
            io_uring_prep_readv(sqe, img->fd, req->iov + req->cur, req->nr_iov - req->cur,
                                req->off);
        else
            io_uring_prep_writev2(sqe, img->fd, req->iov + req->cur, req->nr_iov - req->cur,
                                  req->off, atomic_load(&img->writethrough) ? RWF_DSYNC : 0);
        break;
    case STEP_FALLOC: {
        const struct blk_range *r = &req->range[req->range_idx];
        io_uring_prep_fallocate(sqe, img->fd, req->falloc_mode, (off_t)r->off, (off_t)r->len);
        break;
    }
    case STEP_ZERO_WRITE:
        req->iov[0] = (struct iovec){.iov_base = img->zeroes,
                                     .iov_len = req->left < ZERO_CHUNK ? req->left : ZERO_CHUNK};
        io_uring_prep_writev(sqe, img->fd, req->iov, 1, req->off);
        break;
    case STEP_SYNC:
    case STEP_NONE:
        io_uring_prep_fsync(sqe, img->fd, IORING_FSYNC_DATASYNC);
        break;
    }
    io_uring_sqe_set_data(sqe, req);
}

/* Starts the next range of a discard or write-zeroes, or ends the request. */
static void dwz_next(struct blk_engine *e, struct blk_req *req)
{
    struct blk_image *img = e->img;
    bool discard = req->type == VIRTIO_BLK_T_DISCARD;
    while (req->range_idx < req->nr_range) {
        const struct blk_range *r = &req->range[req->range_idx];
        bool punch = atomic_load(&img->can_punch);
        if (r->len == 0 || (discard && !punch)) {
            /* A discard the file system cannot do is a hint not taken. */
            req->range_idx++;
            continue;
        }
        if (discard || (r->unmap && punch)) {
            req->falloc_mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
            req->step = STEP_FALLOC;
        } else if (atomic_load(&img->can_zero_range)) {
            req->falloc_mode = FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
            req->step = STEP_FALLOC;
        } else {
            req->step = STEP_ZERO_WRITE;
            req->left = r->len;
        }
        req->off = r->off;
        issue(e, req);
        return;
    }
    if (!discard && atomic_load(&img->writethrough)) {
        req->step = STEP_SYNC;
        issue(e, req);
        return;
    }
    complete(e, req, VIRTIO_BLK_S_OK);
}

static void start_rw(struct blk_engine *e, struct blk_req *req, const struct vq_iovec *iov,
                     unsigned n, uint64_t skip, uint64_t len, uint64_t sector)
{
    uint64_t off;
    if (len % VIRTIO_BLK_SECTOR_SIZE != 0) {
        refuse(e, req, VIRTIO_BLK_S_IOERR, "data length is not a multiple of 512");
        return;
    }
    if (!sector_range(e->img, sector, len, &off)) {
        refuse(e, req, VIRTIO_BLK_S_IOERR, "beyond the capacity");
        return;
    }
    if (!take_segments(req, e->img->seg_max, iov, n, skip, len)) {
        refuse(e, req, VIRTIO_BLK_S_IOERR, "more data segments than seg_max");
        return;
    }
    if (len == 0) {
        complete(e, req, VIRTIO_BLK_S_OK);
        return;
    }
    req->off = off;
    req->left = len;
    req->step = STEP_RW;
    issue(e, req);
}

static void start_dwz(struct blk_engine *e, struct blk_req *req, const struct vq_iovec *iov,
                      unsigned n, uint64_t len)
{
    const struct blk_image *img = e->img;
    bool discard = req->type == VIRTIO_BLK_T_DISCARD;
    if (img->read_only) {
        refuse(e, req, VIRTIO_BLK_S_IOERR, "read-only image");
        return;
    }
    if (len == 0 || len % VIRTIO_BLK_DWZ_SEG_SIZE != 0 ||
        len / VIRTIO_BLK_DWZ_SEG_SIZE > BLK_MAX_DWZ_SEG) {
        refuse(e, req, VIRTIO_BLK_S_IOERR, "bad number of ranges");
        return;
    }
    unsigned nr = (unsigned)(len / VIRTIO_BLK_DWZ_SEG_SIZE);
    uint8_t raw[BLK_MAX_DWZ_SEG * VIRTIO_BLK_DWZ_SEG_SIZE] = {0};
    gather(raw, iov, n, VIRTIO_BLK_REQ_HDR_SIZE, (size_t)len);

    /* Flags first, so an unsupported flag wins over a bad range wherever it is. */
    for (unsigned i = 0; i < nr; i++) {
        uint32_t flags = le32_at(raw + i * VIRTIO_BLK_DWZ_SEG_SIZE + 12);
        if ((flags & ~VIRTIO_BLK_WZ_F_UNMAP) || (discard && flags)) {
            refuse(e, req, VIRTIO_BLK_S_UNSUPP, "unsupported range flag");
            return;
        }
    }
    uint32_t max = discard ? BLK_MAX_DISCARD_SECTORS : BLK_MAX_WRITE_ZEROES_SECTORS;
    for (unsigned i = 0; i < nr; i++) {
        const uint8_t *s = raw + i * VIRTIO_BLK_DWZ_SEG_SIZE;
        uint32_t num = le32_at(s + 8);
        struct blk_range *r = &req->range[i];
        if (num > max ||
            !sector_range(img, le64_at(s), (uint64_t)num << VIRTIO_BLK_SECTOR_SHIFT, &r->off)) {
            refuse(e, req, VIRTIO_BLK_S_IOERR, "range too long or beyond the capacity");
            return;
        }
        r->len = (uint64_t)num << VIRTIO_BLK_SECTOR_SHIFT;
        r->unmap = le32_at(s + 12) & VIRTIO_BLK_WZ_F_UNMAP;
    }
    req->nr_range = nr;
    req->range_idx = 0;
    dwz_next(e, req);
}

static void start(struct blk_engine *e, struct blk_req *req, const struct vq_iovec *iov,
                  unsigned nr_readable, unsigned nr_writable)
{
    const struct vq_iovec *wiov = iov + nr_readable;
    uint64_t rbytes = 0;
    uint64_t wbytes = 0;
    bool sums_ok = sum_len(iov, nr_readable, &rbytes) && sum_len(wiov, nr_writable, &wbytes);

    req->status = last_byte(wiov, nr_writable);
    if (!req->status) {
        refuse(e, req, VIRTIO_BLK_S_IOERR, "no writable byte for the status");
        return;
    }
    /* The used length must fit in 32 bits; the spec caps a chain at 4 GiB anyway. */
    if (!sums_ok || rbytes > UINT32_MAX || wbytes > UINT32_MAX) {
        refuse(e, req, VIRTIO_BLK_S_IOERR, "chain longer than 4 GiB");
        return;
    }
    if (rbytes < VIRTIO_BLK_REQ_HDR_SIZE) {
        refuse(e, req, VIRTIO_BLK_S_IOERR, "header shorter than 16 bytes");
        return;
    }
    uint8_t hdr[VIRTIO_BLK_REQ_HDR_SIZE] = {0};
    gather(hdr, iov, nr_readable, 0, sizeof(hdr));
    req->type = le32_at(hdr);
    uint64_t sector = le64_at(hdr + 8);
    uint64_t wdata = wbytes - 1;
    uint64_t rdata = rbytes - VIRTIO_BLK_REQ_HDR_SIZE;

    switch (req->type) {
    case VIRTIO_BLK_T_IN:
        start_rw(e, req, wiov, nr_writable, 0, wdata, sector);
        return;
    case VIRTIO_BLK_T_OUT:
        if (e->img->read_only) {
            refuse(e, req, VIRTIO_BLK_S_IOERR, "read-only image");
            return;
        }
        start_rw(e, req, iov, nr_readable, VIRTIO_BLK_REQ_HDR_SIZE, rdata, sector);
        return;
    case VIRTIO_BLK_T_FLUSH:
    case VIRTIO_BLK_T_FLUSH_OUT:
        /* Data and sector are ignored: the driver should send none, and they cost nothing. */
        req->step = STEP_SYNC;
        issue(e, req);
        return;
    case VIRTIO_BLK_T_GET_ID: {
        size_t n = wdata < VIRTIO_BLK_ID_BYTES ? (size_t)wdata : VIRTIO_BLK_ID_BYTES;
        scatter(wiov, nr_writable, e->img->id, n);
        req->done = n;
        complete(e, req, VIRTIO_BLK_S_OK);
        return;
    }
    case VIRTIO_BLK_T_DISCARD:
    case VIRTIO_BLK_T_WRITE_ZEROES:
        start_dwz(e, req, iov, nr_readable, rdata);
        return;
    default:
        refuse(e, req, VIRTIO_BLK_S_UNSUPP, "unsupported type");
        return;
    }
}

/* ---- completion of one step ---- */

/* Moves the transfer on by @p n bytes (no more than left). */
static void advance(struct blk_req *req, uint64_t n)
{
    req->off += n;
    req->left -= n;
    while (n > 0 && req->cur < req->nr_iov) {
        struct iovec *v = &req->iov[req->cur];
        if (n < v->iov_len) {
            v->iov_base = (uint8_t *)v->iov_base + n;
            v->iov_len -= n;
            return;
        }
        n -= v->iov_len;
        req->cur++;
    }
}

static void rw_done(struct blk_engine *e, struct blk_req *req, int res)
{
    bool read = req->type == VIRTIO_BLK_T_IN;
    if (res < 0 || (uint64_t)res > req->left) {
        io_failed(e, req, res < 0 ? res : -EIO);
        return;
    }
    if (res == 0) {
        if (!read) {
            io_failed(e, req, -EIO);
            return;
        }
        /* The file shrank under the capacity taken at open: past its end it reads as zeroes. */
        for (unsigned i = req->cur; i < req->nr_iov; i++)
            memset(req->iov[i].iov_base, 0, req->iov[i].iov_len);
        req->done += req->left;
        req->left = 0;
        complete(e, req, VIRTIO_BLK_S_OK);
        return;
    }
    advance(req, (uint64_t)res);
    if (read)
        req->done += (uint64_t)res;
    if (req->left > 0)
        issue(e, req);
    else
        complete(e, req, VIRTIO_BLK_S_OK);
}

static void falloc_done(struct blk_engine *e, struct blk_req *req, int res)
{
    if (res == -EOPNOTSUPP) {
        bool punch = req->falloc_mode & FALLOC_FL_PUNCH_HOLE;
        atomic_bool *flag = punch ? &e->img->can_punch : &e->img->can_zero_range;
        if (atomic_exchange(flag, false))
            log_info("blk: the image's file system cannot %s; %s",
                     punch ? "punch holes" : "zero ranges",
                     punch ? "discard is ignored" : "zeroes are written instead");
        /* A discard is a hint: skip it. Write-zeroes retries the range another way. */
        if (req->type == VIRTIO_BLK_T_DISCARD)
            req->range_idx++;
        dwz_next(e, req);
        return;
    }
    if (res < 0) {
        io_failed(e, req, res);
        return;
    }
    req->range_idx++;
    dwz_next(e, req);
}

static void zero_write_done(struct blk_engine *e, struct blk_req *req, int res)
{
    if (res <= 0 || (uint64_t)res > req->left) {
        io_failed(e, req, res < 0 ? res : -EIO);
        return;
    }
    req->off += (uint64_t)res;
    req->left -= (uint64_t)res;
    if (req->left > 0) {
        issue(e, req);
        return;
    }
    req->range_idx++;
    dwz_next(e, req);
}

static void on_cqe(struct blk_engine *e, struct blk_req *req, int res)
{
    if (res == -EAGAIN || res == -EINTR) {
        if (++req->retries <= MAX_RETRIES)
            issue(e, req);
        else
            io_failed(e, req, res);
        return;
    }
    req->retries = 0;
    switch ((enum blk_step)req->step) {
    case STEP_RW:
        rw_done(e, req, res);
        return;
    case STEP_FALLOC:
        falloc_done(e, req, res);
        return;
    case STEP_ZERO_WRITE:
        zero_write_done(e, req, res);
        return;
    case STEP_SYNC:
    case STEP_NONE:
        if (res < 0)
            io_failed(e, req, res);
        else
            complete(e, req, VIRTIO_BLK_S_OK);
        return;
    }
}

/* ---- the engine ---- */

static void ignore_done(void *opaque, void *cookie, uint32_t used_len, uint8_t status)
{
    (void)opaque;
    (void)cookie;
    (void)used_len;
    (void)status;
}

/*
 * io_uring operations are not system calls: a seccomp filter (--sandbox) never sees
 * them, so a ring could open files or sockets that the filter forbids. The ring is made
 * disabled, limited to the four operations the engine submits (no SQE flags, no further
 * registrations), and only then enabled.
 */
static int restrict_ring(struct io_uring *ring)
{
    static const uint8_t ops[] = {IORING_OP_READV, IORING_OP_WRITEV, IORING_OP_FSYNC,
                                  IORING_OP_FALLOCATE};
    struct io_uring_restriction res[sizeof(ops)];
    memset(res, 0, sizeof(res));
    for (size_t i = 0; i < sizeof(ops); i++) {
        res[i].opcode = IORING_RESTRICTION_SQE_OP;
        res[i].sqe_op = ops[i];
    }
    /* The system call itself: Debian's shared liburing 2.3 lacks these two wrappers. */
    if (syscall(__NR_io_uring_register, ring->ring_fd, IORING_REGISTER_RESTRICTIONS, res,
                (unsigned)sizeof(ops)) < 0 ||
        syscall(__NR_io_uring_register, ring->ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0) < 0)
        return -errno;
    return 0;
}

int blk_engine_create(struct blk_engine **out, struct blk_image *img, unsigned queue_size,
                      blk_done_fn *done, void *opaque)
{
    if (!out || !img || !done || queue_size == 0 || queue_size > BLK_MAX_QUEUE_SIZE)
        return -EINVAL;
    *out = NULL;
    struct blk_engine *e = calloc(1, sizeof(*e));
    if (!e)
        return -ENOMEM;
    e->img = img;
    e->efd = -1;
    e->done = done;
    e->opaque = opaque;
    e->nr_reqs = queue_size;
    e->reqs = calloc(queue_size, sizeof(*e->reqs));
    e->iovs = calloc((size_t)queue_size * img->seg_max, sizeof(*e->iovs));
    int rc = -ENOMEM;
    if (!e->reqs || !e->iovs)
        goto fail;
    for (unsigned i = 0; i < queue_size; i++) {
        e->reqs[i].iov = e->iovs + (size_t)i * img->seg_max;
        e->reqs[i].next = i + 1 < queue_size ? i + 1 : NO_REQ;
    }
    e->free_head = 0;
    e->nr_free = queue_size;
    e->done_head = e->done_tail = NO_REQ;

    /*
     * One SQ entry per slot and a CQ twice that (io_uring's default): a slot has at
     * most one operation outstanding, so neither ring can overflow.
     */
    struct io_uring_params params = {.flags = IORING_SETUP_R_DISABLED};
    rc = io_uring_queue_init_params(queue_size, &e->ring, &params);
    if (rc < 0)
        goto fail;
    e->ring_ready = true;
    e->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (e->efd < 0) {
        rc = -errno;
        goto fail;
    }
    rc = io_uring_register_eventfd(&e->ring, e->efd);
    if (rc == 0)
        rc = restrict_ring(&e->ring);
    if (rc < 0)
        goto fail;
    *out = e;
    return 0;

fail:
    blk_engine_destroy(e);
    return rc;
}

void blk_engine_destroy(struct blk_engine *e)
{
    if (!e)
        return;
    e->done = ignore_done;
    if (e->ring_ready) {
        if (e->efd >= 0)
            (void)blk_engine_drain(e);
        io_uring_queue_exit(&e->ring);
    }
    if (e->efd >= 0)
        close(e->efd);
    free(e->iovs);
    free(e->reqs);
    free(e);
}

int blk_engine_eventfd(const struct blk_engine *e)
{
    return e->efd;
}

int blk_engine_queue(struct blk_engine *e, const struct vq_iovec *iov, unsigned nr_readable,
                     unsigned nr_writable, void *cookie)
{
    if (!e || (!iov && (nr_readable > 0 || nr_writable > 0)))
        return -EINVAL;
    if (e->nr_free == 0)
        return -EBUSY;
    struct blk_req *req = slot_take(e);
    req->cookie = cookie;
    start(e, req, iov, nr_readable, nr_writable);
    return 0;
}

int blk_engine_submit(struct blk_engine *e)
{
    return submit_pending(e);
}

int blk_engine_poll(struct blk_engine *e)
{
    uint64_t count;
    /* Cleared before reaping: a completion posted after the reap signals it again. */
    (void)!read(e->efd, &count, sizeof(count));

    e->in_poll = true;
    /*
     * At most one completion per slot is pending unless a step was submitted early
     * (issue() with a full SQ): the bound keeps one poll's work finite.
     */
    unsigned reaped = 0;
    struct io_uring_cqe *cqe;
    while (reaped < e->nr_reqs && io_uring_peek_cqe(&e->ring, &cqe) == 0) {
        struct blk_req *req = io_uring_cqe_get_data(cqe);
        int res = cqe->res;
        io_uring_cqe_seen(&e->ring, cqe);
        reaped++;
        on_cqe(e, req, res);
    }

    uint32_t i = e->done_head;
    e->done_head = e->done_tail = NO_REQ;
    int called = 0;
    while (i != NO_REQ) {
        struct blk_req *req = &e->reqs[i];
        i = req->next;
        finish(e, req);
        called++;
    }
    e->in_poll = false;
    /* Requests the callbacks refused, or completions beyond the bound, need another poll. */
    if (e->done_head != NO_REQ || reaped == e->nr_reqs)
        wake(e);
    int rc = submit_pending(e);
    return rc < 0 ? rc : called;
}

int blk_engine_drain(struct blk_engine *e)
{
    for (;;) {
        int rc = blk_engine_poll(e);
        if (rc < 0)
            return rc;
        if (e->nr_free == e->nr_reqs)
            return 0;
        if (e->done_head != NO_REQ)
            continue;
        rc = io_uring_submit_and_wait(&e->ring, 1);
        if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
            return rc;
    }
}

unsigned blk_engine_in_flight(const struct blk_engine *e)
{
    return e->nr_reqs - e->nr_free;
}

bool blk_engine_ready(const struct blk_engine *e)
{
    return e->done_head != NO_REQ || io_uring_cq_ready(&e->ring) > 0;
}

unsigned blk_engine_free_slots(const struct blk_engine *e)
{
    return e->nr_free;
}
