/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * bulkhead-blk's request engine against a real image file and a real io_uring.
 * Chains are built in an arena filled with a canary byte: every test ends by
 * checking that no byte outside the segments it handed to the engine changed, and
 * the arena sits between PROT_NONE guards. The image is a 4 MiB temporary file
 * whose every byte starts as a known function of its offset.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "backends/blk/blk_engine.h"
#include "backends/blk/virtio_blk.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#define IMG_SIZE   (4u << 20)
#define SECTORS    (IMG_SIZE / 512)
#define QSIZE      128
#define ARENA_SIZE (16u << 20)
#define GUARD      0x10000u
#define CANARY     0xa5
#define GAP        24 /* canary bytes left between two allocations */
#define MAX_ALLOCS 4096
#define MAX_IOV    600

#define F(bit) (1ull << (bit))

static uint8_t *arena;
static size_t arena_used;
static struct {
    uint8_t *p;
    size_t len;
} allocs[MAX_ALLOCS];
static unsigned nr_allocs;

struct done_rec {
    int calls;
    uint32_t used;
    uint8_t status;
};

/* One test's image and engine. */
static char path[256];
static struct blk_image *img;
static struct blk_engine *eng;
static uint64_t total_used;
static unsigned total_calls;

struct chain {
    struct vq_iovec iov[MAX_IOV];
    unsigned nr;
    unsigned nw;
};

/* ---- arena ---- */

static void *abuf(size_t len)
{
    assert_true(nr_allocs < MAX_ALLOCS);
    assert_true(arena_used + len + GAP <= ARENA_SIZE);
    uint8_t *p = arena + arena_used + GAP;
    arena_used += len + GAP;
    allocs[nr_allocs].p = p;
    allocs[nr_allocs].len = len;
    nr_allocs++;
    return p;
}

/* Every byte not handed out is still the canary. */
static void check_canaries(void)
{
    size_t pos = 0;
    for (unsigned i = 0; i <= nr_allocs; i++) {
        size_t end = i < nr_allocs ? (size_t)(allocs[i].p - arena) : ARENA_SIZE;
        for (; pos < end; pos++)
            if (arena[pos] != CANARY)
                fail_msg("arena byte %zu outside every segment changed", pos);
        if (i < nr_allocs)
            pos = end + allocs[i].len;
    }
}

/* ---- image ---- */

static uint8_t pattern(uint64_t off)
{
    return (uint8_t)(off ^ (off >> 9) ^ 0x3c);
}

static void fill_pattern(int fd, uint64_t size)
{
    static uint8_t buf[1 << 16];
    for (uint64_t off = 0; off < size; off += sizeof(buf)) {
        for (size_t i = 0; i < sizeof(buf); i++)
            buf[i] = pattern(off + i);
        assert_int_equal(pwrite(fd, buf, sizeof(buf), (off_t)off), (ssize_t)sizeof(buf));
    }
}

static void make_image(const char *dir, uint64_t size)
{
    snprintf(path, sizeof(path), "%s/bulkhead-blk-XXXXXX", dir);
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fill_pattern(fd, size);
    assert_int_equal(fsync(fd), 0);
    close(fd);
}

static const char *tmpdir(void)
{
    const char *d = getenv("TMPDIR");
    return d && *d ? d : "/tmp";
}

static void read_file(uint64_t off, void *buf, size_t len)
{
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, buf, len, (off_t)off), (ssize_t)len);
    close(fd);
}

/* The file still holds the initial pattern in [off, off + len). */
static void assert_pattern(uint64_t off, size_t len)
{
    uint8_t *buf = malloc(len);
    assert_non_null(buf);
    read_file(off, buf, len);
    for (size_t i = 0; i < len; i++)
        if (buf[i] != pattern(off + i))
            fail_msg("image byte %llu changed", (unsigned long long)(off + i));
    free(buf);
}

static void assert_zero(const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] != 0)
            fail_msg("byte %zu is %#x, not zero", i, p[i]);
}

/* [off, off + len) of the image is a hole: deallocated, whatever the file system needed in
 * metadata to record it (ext4 may allocate an extent block while punching, so st_blocks
 * alone drops by a little less than the range). */
static void assert_hole(uint64_t off, uint64_t len)
{
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(lseek(fd, (off_t)off, SEEK_HOLE), (off_t)off);
    off_t data = lseek(fd, (off_t)off, SEEK_DATA);
    assert_true(data < 0 || (uint64_t)data >= off + len);
    close(fd);
}

static uint64_t file_blocks(void)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (uint64_t)st.st_blocks;
}

/* ---- engine ---- */

static void on_done(void *opaque, void *cookie, uint32_t used, uint8_t status)
{
    assert_ptr_equal(opaque, &total_used);
    struct done_rec *d = cookie;
    d->calls++;
    d->used = used;
    d->status = status;
    total_used += used;
    total_calls++;
}

static void open_image(bool ro, const char *serial, uint32_t seg_max)
{
    struct blk_image_opts o = {.path = path, .read_only = ro, .serial = serial, .seg_max = seg_max};
    assert_int_equal(blk_image_open(&img, &o), 0);
    blk_image_set_features(img, F(VIRTIO_BLK_F_FLUSH));
    assert_int_equal(blk_engine_create(&eng, img, QSIZE, on_done, &total_used), 0);
}

static void close_image(void)
{
    blk_engine_destroy(eng);
    blk_image_close(img);
    eng = NULL;
    img = NULL;
}

/* Polls until nothing is in flight, waiting on the engine's eventfd (a lost wake-up fails). */
static void wait_all(struct blk_engine *e)
{
    while (blk_engine_in_flight(e) > 0) {
        struct pollfd p = {.fd = blk_engine_eventfd(e), .events = POLLIN};
        assert_int_equal(poll(&p, 1, 10000), 1);
        assert_true(blk_engine_poll(e) >= 0);
    }
}

static void run(struct chain *c, struct done_rec *d)
{
    memset(d, 0, sizeof(*d));
    assert_int_equal(blk_engine_queue(eng, c->iov, c->nr, c->nw, d), 0);
    assert_int_equal(blk_engine_submit(eng), 0);
    wait_all(eng);
    assert_int_equal(d->calls, 1);
}

/* ---- chains ---- */

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
    put_le32(p, (uint32_t)v);
    put_le32(p + 4, (uint32_t)(v >> 32));
}

static void add(struct chain *c, bool writable, void *p, size_t len)
{
    assert_true(c->nr + c->nw < MAX_IOV);
    if (!writable)
        assert_int_equal(c->nw, 0);
    c->iov[c->nr + c->nw] = (struct vq_iovec){.base = p, .len = len};
    if (writable)
        c->nw++;
    else
        c->nr++;
}

/* Adds @p len bytes at @p p as segments whose lengths cycle through @p cuts. */
static void add_split(struct chain *c, bool writable, uint8_t *p, size_t len, const size_t *cuts,
                      unsigned ncuts)
{
    for (unsigned i = 0; len > 0; i++) {
        size_t l = ncuts ? cuts[i % ncuts] : len;
        if (l > len)
            l = len;
        add(c, writable, p, l);
        p += l;
        len -= l;
    }
}

static uint8_t *header(uint32_t type, uint64_t sector)
{
    uint8_t *h = abuf(16);
    put_le32(h, type);
    put_le32(h + 4, 0);
    put_le64(h + 8, sector);
    return h;
}

static const size_t hdr_cuts[] = {5, 7, 4};
static const size_t odd_cuts[] = {1, 511, 3, 1000, 7, 2, 4096, 333};

/* A header split 5/7/4, the way a driver may legally lay it out. */
static void add_header(struct chain *c, uint32_t type, uint64_t sector)
{
    add_split(c, false, header(type, sector), 16, hdr_cuts, 3);
}

static uint8_t *status_byte(struct chain *c)
{
    uint8_t *s = abuf(1);
    *s = 0xee;
    add(c, true, s, 1);
    return s;
}

/* OUT of @p data at @p sector, data split at odd places. */
static struct done_rec write_data(uint64_t sector, const uint8_t *data, size_t len)
{
    static struct chain c;
    memset(&c, 0, sizeof(c));
    add_header(&c, VIRTIO_BLK_T_OUT, sector);
    uint8_t *buf = abuf(len);
    memcpy(buf, data, len);
    add_split(&c, false, buf, len, odd_cuts, 8);
    uint8_t *s = status_byte(&c);
    struct done_rec d;
    run(&c, &d);
    assert_int_equal(*s, d.status);
    assert_memory_equal(buf, data, len); /* readable data is never written */
    return d;
}

/*
 * IN of @p len bytes at @p sector into @p out, split at odd places, the status byte
 * sharing the last data segment.
 */
static struct done_rec read_data(uint64_t sector, uint8_t *out, size_t len)
{
    static struct chain c;
    memset(&c, 0, sizeof(c));
    add_header(&c, VIRTIO_BLK_T_IN, sector);
    uint8_t *buf = abuf(len + 1);
    memset(buf, 0xee, len + 1);
    add_split(&c, true, buf, len + 1, odd_cuts, 8);
    struct done_rec d;
    run(&c, &d);
    assert_int_equal(buf[len], d.status);
    memcpy(out, buf, len);
    return d;
}

/* A DISCARD or WRITE_ZEROES of @p nr ranges; @p data_len overrides the data length. */
static struct done_rec dwz(uint32_t type, const uint64_t *sector, const uint32_t *num,
                           const uint32_t *flags, unsigned nr)
{
    static struct chain c;
    memset(&c, 0, sizeof(c));
    add_header(&c, type, 0);
    uint8_t *segs = abuf(16u * nr + 1);
    for (unsigned i = 0; i < nr; i++) {
        put_le64(segs + 16 * i, sector[i]);
        put_le32(segs + 16 * i + 8, num[i]);
        put_le32(segs + 16 * i + 12, flags ? flags[i] : 0);
    }
    /* Ranges split across segments at odd places, as a header may be. */
    add_split(&c, false, segs, 16u * nr, odd_cuts, 4);
    uint8_t *s = status_byte(&c);
    struct done_rec d;
    run(&c, &d);
    assert_int_equal(*s, d.status);
    assert_int_equal(d.used, 1);
    return d;
}

static struct done_rec dwz1(uint32_t type, uint64_t sector, uint32_t num, uint32_t flags)
{
    return dwz(type, &sector, &num, &flags, 1);
}

/* A request with only a header and a status byte. */
static struct done_rec simple(uint32_t type, uint64_t sector)
{
    static struct chain c;
    memset(&c, 0, sizeof(c));
    add_header(&c, type, sector);
    uint8_t *s = status_byte(&c);
    struct done_rec d;
    run(&c, &d);
    assert_int_equal(*s, d.status);
    return d;
}

/* ---- fixtures ---- */

static int group_setup(void **state)
{
    (void)state;
    uint8_t *map =
        mmap(NULL, GUARD + ARENA_SIZE + GUARD, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED)
        return -1;
    arena = map + GUARD;
    return mprotect(arena, ARENA_SIZE, PROT_READ | PROT_WRITE);
}

static int group_teardown(void **state)
{
    (void)state;
    return munmap(arena - GUARD, GUARD + ARENA_SIZE + GUARD);
}

static void reset_arena(void)
{
    memset(arena, CANARY, ARENA_SIZE);
    arena_used = 0;
    nr_allocs = 0;
    total_used = 0;
    total_calls = 0;
}

static int setup(void **state)
{
    (void)state;
    reset_arena();
    make_image(tmpdir(), IMG_SIZE);
    open_image(false, NULL, 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    close_image();
    unlink(path);
    check_canaries();
    return 0;
}

/* ---- tests ---- */

static void test_open_and_config(void **state)
{
    (void)state;
    assert_int_equal(blk_image_capacity(img), SECTORS);
    uint64_t f = blk_image_features(img);
    uint64_t want = F(VIRTIO_BLK_F_SEG_MAX) | F(VIRTIO_BLK_F_BLK_SIZE) | F(VIRTIO_BLK_F_FLUSH) |
                    F(VIRTIO_BLK_F_MQ) | F(VIRTIO_BLK_F_WRITE_ZEROES) | F(VIRTIO_BLK_F_DISCARD);
    assert_int_equal(f, want); /* the temp dir's file system punches holes (ext4, tmpfs, xfs) */

    struct virtio_blk_config cfg;
    memset(&cfg, 0xff, sizeof(cfg));
    blk_image_config(img, 4, &cfg);
    const uint8_t *b = (const uint8_t *)&cfg;
    /* Little-endian at the spec's offsets, whatever the host. */
    assert_int_equal(b[0] | b[1] << 8 | b[2] << 16, SECTORS);
    assert_int_equal(b[12], BLK_DEFAULT_SEG_MAX);
    assert_int_equal(b[20] | b[21] << 8, 512);
    assert_int_equal(b[32], 1); /* writeback: FLUSH was negotiated */
    assert_int_equal(b[33], 0);
    assert_int_equal(b[34] | b[35] << 8, 4);
    assert_int_equal(b[36] | b[37] << 8 | b[38] << 16 | b[39] << 24, BLK_MAX_DISCARD_SECTORS);
    assert_int_equal(b[40], BLK_MAX_DWZ_SEG);
    assert_true(b[44] >= 1);
    assert_int_equal(b[48] | b[49] << 8 | b[50] << 16 | b[51] << 24, BLK_MAX_WRITE_ZEROES_SECTORS);
    assert_int_equal(b[52], BLK_MAX_DWZ_SEG);
    assert_int_equal(b[56], 1);
    for (size_t i = 57; i < sizeof(cfg); i++)
        assert_int_equal(b[i], 0);

    /* Without FLUSH the device is writethrough, and says so. */
    blk_image_set_features(img, 0);
    blk_image_config(img, 1, &cfg);
    assert_int_equal(cfg.writeback, 0);
}

static void test_open_refuses(void **state)
{
    (void)state;
    struct blk_image *i2 = img;
    struct blk_image_opts o = {.path = path};

    /* A size that is not a multiple of 512. */
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, IMG_SIZE + 100), 0);
    assert_int_equal(blk_image_open(&i2, &o), -EINVAL);
    assert_null(i2);
    assert_int_equal(ftruncate(fd, IMG_SIZE), 0);
    close(fd);

    o.path = tmpdir(); /* a directory: open() refuses it for writing, the engine for reading */
    assert_int_equal(blk_image_open(&i2, &o), -EISDIR);
    o.read_only = true;
    assert_int_equal(blk_image_open(&i2, &o), -EINVAL);
    o.read_only = false;
    o.path = "/nonexistent/bulkhead.img";
    assert_int_equal(blk_image_open(&i2, &o), -ENOENT);
    o.path = path;
    o.serial = "123456789012345678901"; /* 21 bytes */
    assert_int_equal(blk_image_open(&i2, &o), -EINVAL);
    o.serial = "has space";
    assert_int_equal(blk_image_open(&i2, &o), -EINVAL);
    o.serial = "ctl\x01";
    assert_int_equal(blk_image_open(&i2, &o), -EINVAL);
    o.serial = NULL;
    o.seg_max = BLK_MAX_SEG_MAX + 1;
    assert_int_equal(blk_image_open(&i2, &o), -EINVAL);
    assert_int_equal(blk_image_open(NULL, &o), -EINVAL);

    struct blk_engine *e2 = NULL;
    assert_int_equal(blk_engine_create(&e2, img, 0, on_done, NULL), -EINVAL);
    assert_int_equal(blk_engine_create(&e2, img, BLK_MAX_QUEUE_SIZE + 1, on_done, NULL), -EINVAL);
    assert_int_equal(blk_engine_create(&e2, img, 8, NULL, NULL), -EINVAL);
    assert_int_equal(blk_engine_queue(eng, NULL, 1, 0, NULL), -EINVAL);
}

static void test_write_read_split(void **state)
{
    (void)state;
    size_t len = 24 * 512;
    uint8_t *data = malloc(len);
    uint8_t *back = malloc(len);
    assert_non_null(data);
    assert_non_null(back);
    for (size_t i = 0; i < len; i++)
        data[i] = (uint8_t)(i * 13 + 1);

    struct done_rec d = write_data(1000, data, len);
    assert_int_equal(d.status, VIRTIO_BLK_S_OK);
    assert_int_equal(d.used, 1);
    read_file(1000 * 512, back, len);
    assert_memory_equal(back, data, len);
    assert_pattern(999 * 512, 512); /* neighbours untouched */
    assert_pattern(1024 * 512, 512);

    memset(back, 0, len);
    d = read_data(1000, back, len);
    assert_int_equal(d.status, VIRTIO_BLK_S_OK);
    assert_int_equal(d.used, len + 1);
    assert_memory_equal(back, data, len);

    /* Last sector of the disk, and a read of the untouched pattern. */
    d = write_data(SECTORS - 1, data, 512);
    assert_int_equal(d.status, VIRTIO_BLK_S_OK);
    d = read_data(SECTORS - 1, back, 512);
    assert_int_equal(d.status, VIRTIO_BLK_S_OK);
    assert_memory_equal(back, data, 512);
    d = read_data(7, back, 1024);
    assert_int_equal(d.status, VIRTIO_BLK_S_OK);
    for (size_t i = 0; i < 1024; i++)
        assert_int_equal(back[i], pattern(7 * 512 + i));
    free(data);
    free(back);
}

/* Header and data in one readable segment, status alone; a header in 16 one-byte pieces. */
static void test_layouts(void **state)
{
    (void)state;
    static struct chain c;
    struct done_rec d;
    uint8_t *one = abuf(16 + 1024);
    memcpy(one, header(VIRTIO_BLK_T_OUT, 64), 16);
    memset(one + 16, 0x42, 1024);
    add(&c, false, one, 16 + 1024);
    uint8_t *s = status_byte(&c);
    run(&c, &d);
    assert_int_equal(d.status, VIRTIO_BLK_S_OK);
    assert_int_equal(*s, VIRTIO_BLK_S_OK);

    memset(&c, 0, sizeof(c));
    uint8_t *h = header(VIRTIO_BLK_T_IN, 64);
    for (int i = 0; i < 16; i++)
        add(&c, false, h + i, 1);
    uint8_t *buf = abuf(1024);
    add(&c, true, buf, 1024);
    s = status_byte(&c);
    run(&c, &d);
    assert_int_equal(d.status, VIRTIO_BLK_S_OK);
    assert_int_equal(*s, VIRTIO_BLK_S_OK);
    assert_int_equal(d.used, 1025);
    for (int i = 0; i < 1024; i++)
        assert_int_equal(buf[i], 0x42);
}

static void test_zero_length(void **state)
{
    (void)state;
    uint8_t b[1];
    struct done_rec d = read_data(5, b, 0);
    assert_int_equal(d.status, VIRTIO_BLK_S_OK);
    assert_int_equal(d.used, 1);
    d = read_data(SECTORS, b, 0); /* the end of the disk is inside it */
    assert_int_equal(d.status, VIRTIO_BLK_S_OK);
}

static void test_flush(void **state)
{
    (void)state;
    uint8_t data[512];
    memset(data, 7, sizeof(data));
    assert_int_equal(write_data(3, data, sizeof(data)).status, VIRTIO_BLK_S_OK);
    struct done_rec d = simple(VIRTIO_BLK_T_FLUSH, 0);
    assert_int_equal(d.status, VIRTIO_BLK_S_OK);
    assert_int_equal(d.used, 1);

    /* Writethrough (FLUSH not negotiated): writes and write-zeroes sync before completing. */
    blk_image_set_features(img, 0);
    assert_int_equal(write_data(4, data, sizeof(data)).status, VIRTIO_BLK_S_OK);
    assert_int_equal(dwz1(VIRTIO_BLK_T_WRITE_ZEROES, 4, 1, 0).status, VIRTIO_BLK_S_OK);
    uint8_t back[512];
    read_file(4 * 512, back, sizeof(back));
    assert_zero(back, sizeof(back));
    assert_int_equal(simple(VIRTIO_BLK_T_FLUSH, 0).status, VIRTIO_BLK_S_OK);
}

static struct done_rec get_id(uint8_t *out, size_t len)
{
    static struct chain c;
    memset(&c, 0, sizeof(c));
    add_header(&c, VIRTIO_BLK_T_GET_ID, 0);
    uint8_t *buf = abuf(len);
    memset(buf, 0xee, len);
    add_split(&c, true, buf, len, odd_cuts, 3);
    uint8_t *s = status_byte(&c);
    struct done_rec d;
    run(&c, &d);
    assert_int_equal(*s, d.status);
    memcpy(out, buf, len);
    return d;
}

static void test_get_id(void **state)
{
    (void)state;
    uint8_t id[32];
    /* From the file name (19 characters): NUL-padded to 20. */
    struct done_rec d = get_id(id, 20);
    assert_int_equal(d.status, VIRTIO_BLK_S_OK);
    assert_int_equal(d.used, 21);
    const char *base = strrchr(path, '/') + 1;
    assert_int_equal(strlen(base), 19);
    assert_memory_equal(id, base, 19);
    assert_int_equal(id[19], 0);

    /* A shorter buffer gets what fits; a longer one only the 20 ID bytes. */
    d = get_id(id, 8);
    assert_int_equal(d.used, 9);
    assert_memory_equal(id, base, 8);
    d = get_id(id, 32);
    assert_int_equal(d.used, 21);
    assert_int_equal(id[20], 0xee);

    close_image();
    open_image(false, "ABCDEFGHIJKLMNOPQRST", 0); /* exactly 20: no terminator */
    d = get_id(id, 20);
    assert_int_equal(d.used, 21);
    assert_memory_equal(id, "ABCDEFGHIJKLMNOPQRST", 20);
    close_image();
    open_image(false, "disk-7", 0);
    d = get_id(id, 20);
    assert_int_equal(d.used, 21);
    assert_memory_equal(id, "disk-7\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 20);
}

static void test_discard(void **state)
{
    (void)state;
    uint64_t before = file_blocks();
    uint64_t sectors[2] = {2048, 6000};
    uint32_t nums[2] = {2048, 8}; /* 1 MiB and 4 KiB */
    struct done_rec d = dwz(VIRTIO_BLK_T_DISCARD, sectors, nums, NULL, 2);
    assert_int_equal(d.status, VIRTIO_BLK_S_OK);
    uint64_t after = file_blocks();
    assert_true(after + 1024 <= before); /* st_blocks counts 512-byte units */
    assert_hole(2048 * 512, 1 << 20);

    static uint8_t back[1 << 20];
    read_file(2048 * 512, back, sizeof(back));
    assert_zero(back, sizeof(back));
    assert_pattern(2047 * 512, 512);
    assert_pattern(4096 * 512, 512);
    uint8_t small[4096];
    read_data(6000, small, sizeof(small));
    assert_zero(small, sizeof(small));
}

static void test_discard_refused(void **state)
{
    (void)state;
    /* The spec: UNSUPP for UNMAP on a discard and for any reserved flag. */
    assert_int_equal(dwz1(VIRTIO_BLK_T_DISCARD, 8, 8, VIRTIO_BLK_WZ_F_UNMAP).status,
                     VIRTIO_BLK_S_UNSUPP);
    assert_int_equal(dwz1(VIRTIO_BLK_T_DISCARD, 8, 8, 2).status, VIRTIO_BLK_S_UNSUPP);
    assert_int_equal(dwz1(VIRTIO_BLK_T_WRITE_ZEROES, 8, 8, 0x80000000u).status,
                     VIRTIO_BLK_S_UNSUPP);
    /* An unsupported flag wins over a bad range before it. */
    uint64_t sec[2] = {UINT64_MAX, 8};
    uint32_t num[2] = {8, 8};
    uint32_t flags[2] = {0, 4};
    assert_int_equal(dwz(VIRTIO_BLK_T_DISCARD, sec, num, flags, 2).status, VIRTIO_BLK_S_UNSUPP);

    /* Ranges beyond the capacity, wrapping, or too long. */
    assert_int_equal(dwz1(VIRTIO_BLK_T_DISCARD, SECTORS - 4, 8, 0).status, VIRTIO_BLK_S_IOERR);
    assert_int_equal(dwz1(VIRTIO_BLK_T_DISCARD, UINT64_MAX / 512 + 1, 1, 0).status,
                     VIRTIO_BLK_S_IOERR);
    assert_int_equal(dwz1(VIRTIO_BLK_T_DISCARD, UINT64_MAX, 1, 0).status, VIRTIO_BLK_S_IOERR);
    assert_int_equal(dwz1(VIRTIO_BLK_T_WRITE_ZEROES, 0, BLK_MAX_WRITE_ZEROES_SECTORS + 1, 0).status,
                     VIRTIO_BLK_S_IOERR);
    assert_int_equal(dwz1(VIRTIO_BLK_T_DISCARD, 0, UINT32_MAX, 0).status, VIRTIO_BLK_S_IOERR);

    /* Too many ranges; none at all; a length that is not a multiple of 16. */
    uint64_t many_s[BLK_MAX_DWZ_SEG + 1];
    uint32_t many_n[BLK_MAX_DWZ_SEG + 1];
    for (unsigned i = 0; i <= BLK_MAX_DWZ_SEG; i++) {
        many_s[i] = 8 * i;
        many_n[i] = 8;
    }
    assert_int_equal(dwz(VIRTIO_BLK_T_DISCARD, many_s, many_n, NULL, BLK_MAX_DWZ_SEG + 1).status,
                     VIRTIO_BLK_S_IOERR);
    assert_int_equal(dwz(VIRTIO_BLK_T_DISCARD, many_s, many_n, NULL, 0).status, VIRTIO_BLK_S_IOERR);
    static struct chain c;
    add_header(&c, VIRTIO_BLK_T_WRITE_ZEROES, 0);
    add(&c, false, abuf(20), 20);
    status_byte(&c);
    struct done_rec d;
    run(&c, &d);
    assert_int_equal(d.status, VIRTIO_BLK_S_IOERR);

    /* Nothing refused changed the image; the most ranges allowed is fine. */
    assert_pattern(0, IMG_SIZE);
    assert_int_equal(dwz(VIRTIO_BLK_T_DISCARD, many_s, many_n, NULL, BLK_MAX_DWZ_SEG).status,
                     VIRTIO_BLK_S_OK);
    assert_int_equal(dwz1(VIRTIO_BLK_T_DISCARD, 8, 0, 0).status, VIRTIO_BLK_S_OK);
}

static void test_write_zeroes(void **state)
{
    (void)state;
    static uint8_t back[1 << 20];
    /* Without UNMAP: zeroed in place (FALLOC_FL_ZERO_RANGE, or written). */
    struct done_rec d = dwz1(VIRTIO_BLK_T_WRITE_ZEROES, 100, 37, 0);
    assert_int_equal(d.status, VIRTIO_BLK_S_OK);
    read_file(100 * 512, back, 37 * 512);
    assert_zero(back, 37 * 512);
    assert_pattern(99 * 512, 512);
    assert_pattern(137 * 512, 512);

    /* With UNMAP: the range is deallocated and reads as zeroes. */
    uint64_t before = file_blocks();
    d = dwz1(VIRTIO_BLK_T_WRITE_ZEROES, 4096, 2048, VIRTIO_BLK_WZ_F_UNMAP);
    assert_int_equal(d.status, VIRTIO_BLK_S_OK);
    assert_true(file_blocks() + 1024 <= before);
    assert_hole(4096 * 512, 1 << 20);
    read_file(4096 * 512, back, sizeof(back));
    assert_zero(back, sizeof(back));
    assert_pattern(6144 * 512, 512);
}

/* tmpfs punches holes but cannot zero a range: write-zeroes falls back to writing zeroes. */
static void test_write_zeroes_fallback(void **state)
{
    (void)state;
    struct statfs sf;
    if (statfs("/dev/shm", &sf) != 0 || (unsigned long)sf.f_type != TMPFS_MAGIC)
        skip();
    close_image();
    unlink(path);
    make_image("/dev/shm", IMG_SIZE);
    open_image(false, NULL, 0);
    assert_true(blk_image_features(img) & F(VIRTIO_BLK_F_DISCARD));

    static uint8_t back[3 << 20];
    /* Longer than the 1 MiB zero source: several writes. */
    uint32_t n = (3u << 20) / 512 - 1;
    struct done_rec d = dwz1(VIRTIO_BLK_T_WRITE_ZEROES, 1, n, 0);
    assert_int_equal(d.status, VIRTIO_BLK_S_OK);
    read_file(512, back, (size_t)n * 512);
    assert_zero(back, (size_t)n * 512);
    assert_pattern(0, 512);
    assert_pattern(512 + (uint64_t)n * 512, 512);
    /* Again, now that the engine knows. */
    d = dwz1(VIRTIO_BLK_T_WRITE_ZEROES, SECTORS - 3, 3, 0);
    assert_int_equal(d.status, VIRTIO_BLK_S_OK);
    read_file((SECTORS - 3) * 512ull, back, 3 * 512);
    assert_zero(back, 3 * 512);
    /* UNMAP and discard still punch. */
    assert_int_equal(dwz1(VIRTIO_BLK_T_WRITE_ZEROES, 0, 1, VIRTIO_BLK_WZ_F_UNMAP).status,
                     VIRTIO_BLK_S_OK);
    assert_int_equal(dwz1(VIRTIO_BLK_T_DISCARD, SECTORS - 8, 8, 0).status, VIRTIO_BLK_S_OK);
    read_file(0, back, 512);
    assert_zero(back, 512);
}

static void test_read_only(void **state)
{
    (void)state;
    close_image();
    open_image(true, NULL, 0);
    uint64_t f = blk_image_features(img);
    assert_true(f & F(VIRTIO_BLK_F_RO));
    assert_false(f & (F(VIRTIO_BLK_F_DISCARD) | F(VIRTIO_BLK_F_WRITE_ZEROES)));
    struct virtio_blk_config cfg;
    blk_image_config(img, 1, &cfg);
    assert_int_equal(cfg.max_discard_sectors, 0);
    assert_int_equal(cfg.max_write_zeroes_sectors, 0);

    uint8_t data[1024];
    memset(data, 0x11, sizeof(data));
    struct done_rec d = write_data(0, data, sizeof(data));
    assert_int_equal(d.status, VIRTIO_BLK_S_IOERR);
    assert_int_equal(d.used, 1);
    assert_int_equal(dwz1(VIRTIO_BLK_T_DISCARD, 0, 8, 0).status, VIRTIO_BLK_S_IOERR);
    assert_int_equal(dwz1(VIRTIO_BLK_T_WRITE_ZEROES, 0, 8, 0).status, VIRTIO_BLK_S_IOERR);
    assert_pattern(0, IMG_SIZE);

    d = read_data(0, data, sizeof(data));
    assert_int_equal(d.status, VIRTIO_BLK_S_OK);
    for (size_t i = 0; i < sizeof(data); i++)
        assert_int_equal(data[i], pattern(i));
    assert_int_equal(simple(VIRTIO_BLK_T_FLUSH, 0).status, VIRTIO_BLK_S_OK);
    uint8_t id[20];
    assert_int_equal(get_id(id, 20).status, VIRTIO_BLK_S_OK);
}

static void test_out_of_range(void **state)
{
    (void)state;
    uint8_t buf[1024];
    memset(buf, 0x77, sizeof(buf));
    const uint64_t bad[] = {SECTORS,          SECTORS - 1,          SECTORS + 1,
                            UINT64_MAX / 512, UINT64_MAX / 512 + 1, UINT64_MAX,
                            1ull << 63};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct done_rec d = read_data(bad[i], buf, 1024);
        assert_int_equal(d.status, VIRTIO_BLK_S_IOERR);
        assert_int_equal(d.used, 1);
        for (size_t j = 0; j < sizeof(buf); j++)
            assert_int_equal(buf[j], 0xee); /* nothing was read into the chain */
        d = write_data(bad[i], buf, 1024);
        assert_int_equal(d.status, VIRTIO_BLK_S_IOERR);
    }
    assert_pattern(0, IMG_SIZE);
}

static void test_length_not_multiple(void **state)
{
    (void)state;
    uint8_t buf[1024];
    memset(buf, 1, sizeof(buf));
    const size_t lens[] = {1, 100, 511, 513, 1023};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        struct done_rec d = read_data(0, buf, lens[i]);
        assert_int_equal(d.status, VIRTIO_BLK_S_IOERR);
        assert_int_equal(d.used, 1);
        d = write_data(0, buf, lens[i]);
        assert_int_equal(d.status, VIRTIO_BLK_S_IOERR);
    }
    assert_pattern(0, 4096);
}

static void test_malformed_chains(void **state)
{
    (void)state;
    static struct chain c;
    struct done_rec d;

    /* No writable byte: nowhere to put a status; used 0, nothing written. */
    add_header(&c, VIRTIO_BLK_T_IN, 0);
    add(&c, false, abuf(512), 512);
    run(&c, &d);
    assert_int_equal(d.used, 0);
    assert_int_equal(d.status, VIRTIO_BLK_S_IOERR);

    /* No segment at all. */
    memset(&c, 0, sizeof(c));
    run(&c, &d);
    assert_int_equal(d.used, 0);

    /* A 15-byte header. */
    memset(&c, 0, sizeof(c));
    add(&c, false, header(VIRTIO_BLK_T_IN, 0), 15);
    uint8_t *data = abuf(512);
    memset(data, 0xee, 512);
    add(&c, true, data, 512);
    uint8_t *s = status_byte(&c);
    run(&c, &d);
    assert_int_equal(d.status, VIRTIO_BLK_S_IOERR);
    assert_int_equal(*s, VIRTIO_BLK_S_IOERR);
    assert_int_equal(d.used, 1);
    for (int i = 0; i < 512; i++)
        assert_int_equal(data[i], 0xee);

    /* Only writable segments: the header would have to be read from them. */
    memset(&c, 0, sizeof(c));
    add(&c, true, header(VIRTIO_BLK_T_IN, 0), 16);
    s = status_byte(&c);
    run(&c, &d);
    assert_int_equal(d.status, VIRTIO_BLK_S_IOERR);
    assert_int_equal(*s, VIRTIO_BLK_S_IOERR);

    /* The status byte alone in a writable segment after zero-length ones. */
    memset(&c, 0, sizeof(c));
    add_header(&c, VIRTIO_BLK_T_FLUSH, 0);
    s = status_byte(&c);
    add(&c, true, abuf(0), 0);
    run(&c, &d);
    assert_int_equal(*s, VIRTIO_BLK_S_OK);
    assert_int_equal(d.used, 1);
}

static void test_seg_max(void **state)
{
    (void)state;
    close_image();
    open_image(false, NULL, 8);
    struct virtio_blk_config cfg;
    blk_image_config(img, 1, &cfg);
    assert_int_equal(cfg.seg_max, 8);

    for (unsigned nseg = 8; nseg <= 9; nseg++) {
        static struct chain c;
        memset(&c, 0, sizeof(c));
        add_header(&c, VIRTIO_BLK_T_IN, 0);
        for (unsigned i = 0; i < nseg; i++)
            add(&c, true, abuf(512), 512);
        uint8_t *s = status_byte(&c);
        struct done_rec d;
        run(&c, &d);
        assert_int_equal(*s, nseg == 8 ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR);
    }
}

static void test_unknown_types(void **state)
{
    (void)state;
    const uint32_t types[] = {2,
                              3,
                              VIRTIO_BLK_T_GET_LIFETIME,
                              VIRTIO_BLK_T_SECURE_ERASE,
                              VIRTIO_BLK_T_ZONE_APPEND,
                              VIRTIO_BLK_T_ZONE_REPORT,
                              VIRTIO_BLK_T_ZONE_RESET_ALL,
                              0x80000000u,
                              UINT32_MAX};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        struct done_rec d = simple(types[i], 0);
        assert_int_equal(d.status, VIRTIO_BLK_S_UNSUPP);
        assert_int_equal(d.used, 1);
    }
}

/* The file shrinks under the engine: a read past its new end within the capacity gets zeroes. */
static void test_short_read_at_eof(void **state)
{
    (void)state;
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, IMG_SIZE / 2), 0);
    close(fd);
    static uint8_t back[8192];
    struct done_rec d = read_data(SECTORS / 2 - 8, back, sizeof(back));
    assert_int_equal(d.status, VIRTIO_BLK_S_OK);
    assert_int_equal(d.used, sizeof(back) + 1);
    for (size_t i = 0; i < 4096; i++)
        assert_int_equal(back[i], pattern(IMG_SIZE / 2 - 4096 + i));
    assert_zero(back + 4096, 4096);
    d = read_data(SECTORS - 1, back, 512);
    assert_int_equal(d.status, VIRTIO_BLK_S_OK);
    assert_zero(back, 512);
}

static void test_many_in_flight(void **state)
{
    (void)state;
    enum { N = 64, LEN = 4096 };
    static struct chain c[N];
    static struct done_rec d[N];
    uint8_t *bufs[N];
    memset(c, 0, sizeof(c));
    memset(d, 0, sizeof(d));
    static const size_t cuts[] = {1000, 3000, 96};

    for (int i = 0; i < N; i++) {
        add_header(&c[i], VIRTIO_BLK_T_OUT, 16ull * i + 3);
        bufs[i] = abuf(LEN);
        memset(bufs[i], i + 1, LEN);
        add_split(&c[i], false, bufs[i], LEN, cuts, 3);
        status_byte(&c[i]);
        assert_int_equal(blk_engine_queue(eng, c[i].iov, c[i].nr, c[i].nw, &d[i]), 0);
    }
    assert_int_equal(blk_engine_in_flight(eng), N);
    assert_int_equal(blk_engine_submit(eng), 0);
    wait_all(eng);
    for (int i = 0; i < N; i++) {
        assert_int_equal(d[i].calls, 1);
        assert_int_equal(d[i].status, VIRTIO_BLK_S_OK);
    }
    assert_int_equal(total_used, N);

    memset(c, 0, sizeof(c));
    memset(d, 0, sizeof(d));
    for (int i = 0; i < N; i++) {
        add_header(&c[i], VIRTIO_BLK_T_IN, 16ull * i + 3);
        bufs[i] = abuf(LEN + 1);
        add_split(&c[i], true, bufs[i], LEN + 1, cuts, 3);
        assert_int_equal(blk_engine_queue(eng, c[i].iov, c[i].nr, c[i].nw, &d[i]), 0);
    }
    assert_int_equal(blk_engine_submit(eng), 0);
    wait_all(eng);
    for (int i = 0; i < N; i++) {
        assert_int_equal(d[i].status, VIRTIO_BLK_S_OK);
        assert_int_equal(d[i].used, LEN + 1);
        for (int j = 0; j < LEN; j++)
            assert_int_equal(bufs[i][j], i + 1);
        assert_int_equal(bufs[i][LEN], VIRTIO_BLK_S_OK);
    }
    assert_int_equal(total_used, N + N * (LEN + 1));
    assert_int_equal(total_calls, 2 * N);
}

/* Every slot in use: -EBUSY and nothing taken; completions free the slots again. */
static void test_slots_exhausted(void **state)
{
    (void)state;
    struct blk_engine *small = NULL;
    assert_int_equal(blk_engine_create(&small, img, 4, on_done, &total_used), 0);
    static struct chain c[5];
    static struct done_rec d[5];
    memset(c, 0, sizeof(c));
    memset(d, 0, sizeof(d));
    for (int i = 0; i < 5; i++) {
        add_header(&c[i], VIRTIO_BLK_T_IN, (uint64_t)i);
        add(&c[i], true, abuf(513), 513);
        int rc = blk_engine_queue(small, c[i].iov, c[i].nr, c[i].nw, &d[i]);
        assert_int_equal(rc, i < 4 ? 0 : -EBUSY);
    }
    assert_int_equal(blk_engine_free_slots(small), 0);
    assert_int_equal(blk_engine_submit(small), 0);
    wait_all(small);
    assert_int_equal(blk_engine_free_slots(small), 4);
    assert_int_equal(d[4].calls, 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(d[i].used, 513);
    blk_engine_destroy(small);
}

/* drain() calls every callback; destroy() with I/O in flight calls none and does not crash. */
static void test_drain_and_destroy(void **state)
{
    (void)state;
    static struct chain c[16];
    static struct done_rec d[16];
    memset(c, 0, sizeof(c));
    memset(d, 0, sizeof(d));
    for (int i = 0; i < 16; i++) {
        add_header(&c[i], i % 4 == 3 ? 2u : VIRTIO_BLK_T_IN, 64ull * i);
        add(&c[i], true, abuf(32 * 1024 + 1), 32 * 1024 + 1);
        assert_int_equal(blk_engine_queue(eng, c[i].iov, c[i].nr, c[i].nw, &d[i]), 0);
    }
    assert_int_equal(blk_engine_drain(eng), 0);
    assert_int_equal(blk_engine_in_flight(eng), 0);
    for (int i = 0; i < 16; i++)
        assert_int_equal(d[i].calls, 1);

    memset(d, 0, sizeof(d));
    for (int i = 0; i < 16; i++)
        assert_int_equal(blk_engine_queue(eng, c[i].iov, c[i].nr, c[i].nw, &d[i]), 0);
    assert_int_equal(blk_engine_submit(eng), 0);
    blk_engine_destroy(eng);
    eng = NULL;
    for (int i = 0; i < 16; i++)
        assert_int_equal(d[i].calls, 0);
    assert_int_equal(blk_engine_create(&eng, img, QSIZE, on_done, &total_used), 0);
}

/* Two engines (two queues) on one image: a write on one is read back on the other. */
static void test_two_queues(void **state)
{
    (void)state;
    struct blk_engine *q0 = eng;
    struct blk_engine *q1 = NULL;
    assert_int_equal(blk_engine_create(&q1, img, 16, on_done, &total_used), 0);
    uint8_t data[2048];
    memset(data, 0x5d, sizeof(data));
    assert_int_equal(write_data(77, data, sizeof(data)).status, VIRTIO_BLK_S_OK);
    eng = q1;
    uint8_t back[2048];
    struct done_rec d = read_data(77, back, sizeof(back));
    assert_int_equal(d.status, VIRTIO_BLK_S_OK);
    assert_memory_equal(back, data, sizeof(back));
    assert_int_equal(simple(VIRTIO_BLK_T_FLUSH, 0).status, VIRTIO_BLK_S_OK);
    eng = q0;
    blk_engine_destroy(q1);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_open_and_config),
        T(test_open_refuses),
        T(test_write_read_split),
        T(test_layouts),
        T(test_zero_length),
        T(test_flush),
        T(test_get_id),
        T(test_discard),
        T(test_discard_refused),
        T(test_write_zeroes),
        T(test_write_zeroes_fallback),
        T(test_read_only),
        T(test_out_of_range),
        T(test_length_not_multiple),
        T(test_malformed_chains),
        T(test_seg_max),
        T(test_unknown_types),
        T(test_short_read_at_eof),
        T(test_many_in_flight),
        T(test_slots_exhausted),
        T(test_drain_and_destroy),
        T(test_two_queues),
    };
#undef T
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
