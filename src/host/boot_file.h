/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file boot_file.h
 * @brief The kernel and initrd files: kept open for the life of the process, read on demand.
 *
 * A reboot loads the same file even if its path has been replaced meanwhile, but the file
 * itself may have been rewritten in place, grown or shrunk: the size is taken again at each
 * boot (boot_file_refresh()) and the bytes are copied with pread(), never mapped, so a file
 * that shrinks under the VMM makes a read fail instead of raising SIGBUS. Nothing here
 * interprets the contents; the loader (arch/x86/boot.h, struct boot_image) validates what
 * it reads.
 */
#ifndef BULKHEAD_HOST_BOOT_FILE_H
#define BULKHEAD_HOST_BOOT_FILE_H

#include <stddef.h>
#include <stdint.h>

/** A boot file kept open across reboots. */
struct boot_file {
    int fd;        /**< Open descriptor, -1 when there is no such file. */
    uint64_t size; /**< Its length when last opened or refreshed. */
};

/**
 * Open a boot file and take its size.
 * @param f receives the file (fd -1 on failure).
 * @param path the file.
 * @return 0; the open's negative errno; -EINVAL when it is not a regular file; -ENODATA when
 *         it is empty.
 */
int boot_file_open(struct boot_file *f, const char *path);

/**
 * Take the file's size again, before a boot reads it (it may have been rewritten since the
 * previous boot). A file that became empty is not an error here: the loader says what is
 * wrong with the contents.
 * @param f the file.
 * @return 0 or a negative errno from fstat(), or -EFBIG for a size that is not a file size.
 */
int boot_file_refresh(struct boot_file *f);

/**
 * Copy bytes out of the file: the read function of a struct boot_image.
 * @param ctx the struct boot_file.
 * @param offset file offset.
 * @param dst destination.
 * @param len bytes.
 * @return 0; -ENODATA when the file ends before offset + len (it shrank); -EINVAL for an
 *         offset beyond what the OS can address; another negative errno from pread().
 */
int boot_file_read(const void *ctx, uint64_t offset, void *dst, size_t len);

/**
 * Close the file (fd -1 is ignored).
 * @param f the file.
 */
void boot_file_close(struct boot_file *f);

#endif
