/* SPDX-License-Identifier: BSD-2-Clause */
#include "arch/x86/boot.h"

#include "arch/x86/boot_priv.h"
#include "arch/x86/layout.h"
#include "core/checked.h"
#include "core/log.h"

#include <errno.h>
#include <string.h>

static const uint8_t elf_magic[4] = {0x7f, 'E', 'L', 'F'};

int x86_boot_write(const struct guest_mem *mem, uint64_t gpa, const void *src, size_t len,
                   const char *what)
{
    int rc = guest_mem_write(mem, gpa, src, len);
    if (rc < 0)
        log_error("boot: cannot write the %s (%zu bytes at %#llx) to guest RAM", what, len,
                  (unsigned long long)gpa);
    return rc;
}

/* The file may have changed since the load began: a short read says so, not "No data". */
static int read_image(const struct boot_image *img, uint64_t size, uint64_t offset, void *dst,
                      size_t len, const char *what)
{
    if (len == 0)
        return 0;
    if (!range_within(offset, len, 0, size)) {
        /* The format loaders check every range first: this is a bug, not a bad file. */
        log_error("boot: internal error: the %s (%zu bytes at offset %#llx) lies outside the "
                  "%llu-byte file",
                  what, len, (unsigned long long)offset, (unsigned long long)size);
        return -EINVAL;
    }
    int rc = img->read(img->ctx, offset, dst, len);
    if (rc < 0)
        log_error("boot: cannot read the %s (%zu bytes at offset %#llx) from its file: %s", what,
                  len, (unsigned long long)offset,
                  rc == -ENODATA ? "the file is now shorter (it changed during the boot)"
                                 : strerror(-rc));
    return rc < 0 ? rc : 0;
}

int x86_boot_read_kernel(const struct x86_boot_ctx *ctx, uint64_t offset, void *dst, size_t len,
                         const char *what)
{
    uint8_t *out = dst;
    if (offset < ctx->head_len && len != 0) {
        size_t n = ctx->head_len - (size_t)offset;
        if (n > len)
            n = len;
        memcpy(out, ctx->head + offset, n);
        out += n;
        offset += n;
        len -= n;
    }
    return read_image(&ctx->spec->kernel, ctx->kernel_size, offset, out, len, what);
}

int x86_boot_load_payload(const struct x86_boot_ctx *ctx, bool initrd, uint64_t offset,
                          uint64_t len, uint64_t gpa, const char *what)
{
    if (len == 0)
        return 0;
    void *dst = len <= SIZE_MAX ? guest_mem_ptr(ctx->mem, gpa, len) : NULL;
    if (dst == NULL) {
        log_error("boot: cannot write the %s (%llu bytes at %#llx) to guest RAM", what,
                  (unsigned long long)len, (unsigned long long)gpa);
        return -EFAULT;
    }
    if (initrd)
        return read_image(&ctx->spec->initrd, ctx->initrd_size, offset, dst, (size_t)len, what);
    return x86_boot_read_kernel(ctx, offset, dst, (size_t)len, what);
}

int x86_boot_check_cmdline(const struct x86_boot_ctx *ctx, uint64_t kernel_max)
{
    if (ctx->cmdline_len > kernel_max) {
        log_error("boot: command line is %zu bytes, the kernel accepts at most %llu",
                  ctx->cmdline_len, (unsigned long long)kernel_max);
        return -E2BIG;
    }
    return 0;
}

int x86_boot_place_initrd(const struct x86_boot_ctx *ctx, uint64_t floor, uint64_t limit,
                          uint64_t *gpa)
{
    uint64_t size = ctx->initrd_size;
    *gpa = 0;
    if (size == 0)
        return 0;
    int rc = e820_find_highest(&ctx->ram, size, X86_INITRD_ALIGN, floor, limit, gpa);
    if (rc < 0) {
        log_error("boot: initrd of %llu bytes does not fit in guest RAM between the kernel end "
                  "%#llx and %#llx",
                  (unsigned long long)size, (unsigned long long)floor, (unsigned long long)limit);
        return -ENOMEM;
    }
    return 0;
}

int x86_boot_write_cmdline_initrd(const struct x86_boot_ctx *ctx, uint64_t initrd_gpa)
{
    int rc = x86_boot_write(ctx->mem, X86_CMDLINE_GPA, ctx->cmdline, ctx->cmdline_len + 1,
                            "command line");
    if (rc < 0)
        return rc;
    return x86_boot_load_payload(ctx, true, 0, ctx->initrd_size, initrd_gpa, "initrd");
}

/* Everything about the load that does not depend on the kernel's format. */
static int prepare(const struct x86_boot_spec *spec, struct x86_boot_ctx *ctx)
{
    memset(ctx, 0, sizeof(*ctx));
    ctx->spec = spec;
    ctx->mem = spec->mem;
    ctx->kernel_size = spec->kernel.size;
    ctx->initrd_size = spec->initrd.read != NULL ? spec->initrd.size : 0;
    if (ctx->kernel_size == 0) {
        log_error("boot: the kernel file is empty: not a bzImage or ELF");
        return -ENOEXEC;
    }
    if (spec->initrd.read != NULL && ctx->initrd_size == 0) {
        log_error("boot: the initrd file is empty");
        return -EINVAL;
    }
    ctx->cmdline = spec->cmdline != NULL ? spec->cmdline : "";
    ctx->cmdline_len = strnlen(ctx->cmdline, X86_CMDLINE_MAX);
    if (ctx->cmdline_len >= X86_CMDLINE_MAX) {
        log_error("boot: command line is longer than the %d bytes bulkhead passes (NUL included)",
                  X86_CMDLINE_MAX);
        return -E2BIG;
    }

    int rc = x86_e820_build(spec->mem, &ctx->map);
    if (rc == 0)
        rc = e820_split_at_regions(&ctx->map, spec->mem, &ctx->ram);
    if (rc < 0) {
        log_error("boot: cannot build the guest memory map: %s", strerror(-rc));
        return rc;
    }
    /* GDT, IDT, start_info, zero page, page tables and command line all live down here. */
    if (!e820_is_ram(&ctx->ram, X86_BOOT_GDT_GPA,
                     X86_CMDLINE_GPA + X86_CMDLINE_MAX - X86_BOOT_GDT_GPA)) {
        log_error("boot: guest RAM does not cover the boot data area %#llx-%#llx",
                  (unsigned long long)X86_BOOT_GDT_GPA,
                  (unsigned long long)(X86_CMDLINE_GPA + X86_CMDLINE_MAX));
        return -ENOMEM;
    }

    ctx->head_len =
        ctx->kernel_size < X86_BOOT_HEAD_LEN ? (size_t)ctx->kernel_size : X86_BOOT_HEAD_LEN;
    return read_image(&spec->kernel, ctx->kernel_size, 0, ctx->head, ctx->head_len,
                      "kernel header");
}

int x86_boot_load(const struct x86_boot_spec *spec, struct x86_boot_state *state)
{
    struct x86_boot_ctx ctx;

    if (spec == NULL || spec->mem == NULL || state == NULL || spec->kernel.read == NULL ||
        (spec->initrd.read == NULL && spec->initrd.size != 0)) {
        log_error("boot: invalid boot specification (missing memory, kernel or initrd data)");
        return -EINVAL;
    }
    int rc = prepare(spec, &ctx);
    if (rc < 0)
        return rc;
    if (ctx.head_len >= sizeof(elf_magic) && memcmp(ctx.head, elf_magic, sizeof(elf_magic)) == 0)
        return x86_boot_pvh(&ctx, state);
    return x86_boot_bzimage(&ctx, state);
}
