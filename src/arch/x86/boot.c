/* SPDX-License-Identifier: BSD-2-Clause */
#include "arch/x86/boot.h"

#include "arch/x86/boot_priv.h"
#include "arch/x86/layout.h"
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
    size_t size = ctx->spec->initrd_size;
    *gpa = 0;
    if (size == 0)
        return 0;
    int rc = e820_find_highest(&ctx->map, size, X86_INITRD_ALIGN, floor, limit, gpa);
    if (rc < 0) {
        log_error("boot: initrd of %zu bytes does not fit in guest RAM between the kernel end "
                  "%#llx and %#llx",
                  size, (unsigned long long)floor, (unsigned long long)limit);
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
    if (ctx->spec->initrd_size == 0)
        return 0;
    return x86_boot_write(ctx->mem, initrd_gpa, ctx->spec->initrd, ctx->spec->initrd_size,
                          "initrd");
}

int x86_boot_load(const struct x86_boot_spec *spec, struct x86_boot_state *state)
{
    struct x86_boot_ctx ctx;

    if (spec == NULL || spec->mem == NULL || state == NULL ||
        (spec->kernel == NULL && spec->kernel_size != 0) ||
        (spec->initrd == NULL && spec->initrd_size != 0)) {
        log_error("boot: invalid boot specification (missing memory, kernel or initrd data)");
        return -EINVAL;
    }
    if (spec->kernel_size == 0) {
        log_error("boot: the kernel file is empty: not a bzImage or ELF");
        return -ENOEXEC;
    }

    memset(&ctx, 0, sizeof(ctx));
    ctx.spec = spec;
    ctx.mem = spec->mem;
    ctx.cmdline = spec->cmdline != NULL ? spec->cmdline : "";
    ctx.cmdline_len = strnlen(ctx.cmdline, X86_CMDLINE_MAX);
    if (ctx.cmdline_len >= X86_CMDLINE_MAX) {
        log_error("boot: command line is longer than the %d bytes bulkhead passes (NUL included)",
                  X86_CMDLINE_MAX);
        return -E2BIG;
    }

    int rc = x86_e820_build(spec->mem, &ctx.map);
    if (rc < 0) {
        log_error("boot: cannot build the guest memory map: %s", strerror(-rc));
        return rc;
    }
    /* GDT, IDT, start_info, zero page, page tables and command line all live down here. */
    if (!e820_is_ram(&ctx.map, X86_BOOT_GDT_GPA,
                     X86_CMDLINE_GPA + X86_CMDLINE_MAX - X86_BOOT_GDT_GPA)) {
        log_error("boot: guest RAM does not cover the boot data area %#llx-%#llx",
                  (unsigned long long)X86_BOOT_GDT_GPA,
                  (unsigned long long)(X86_CMDLINE_GPA + X86_CMDLINE_MAX));
        return -ENOMEM;
    }

    if (spec->kernel_size >= sizeof(elf_magic) &&
        memcmp(spec->kernel, elf_magic, sizeof(elf_magic)) == 0)
        return x86_boot_pvh(&ctx, state);
    return x86_boot_bzimage(&ctx, state);
}
