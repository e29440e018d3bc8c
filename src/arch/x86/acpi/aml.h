/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file aml.h
 * @brief A small builder for ACPI Machine Language (AML) byte code.
 *
 * The DSDT is generated at start-up from the machine's parameters instead of being
 * compiled from ASL ahead of time, so that the ACPI namespace always agrees with the
 * memory map, the vCPU count and the PCI interrupt routing the VMM actually uses.
 *
 * AML is a prefix encoding: an operator is followed by its operands, so an expression is
 * written by emitting the operator and then each operand in order, e.g.
 * `And(CDW3, 0x1C, Local0)` is aml_op(AML_OP_AND), aml_namestring("CDW3"), aml_int(0x1c),
 * aml_local(0). Constructs that carry a PkgLength (Scope, Device, Method, If, Else, Package,
 * Buffer) are opened by a *_begin() call and closed by aml_end(), which back-patches the
 * length once the body is known.
 *
 * Errors are sticky, as with a stdio stream: the first failure (bad name, bad argument,
 * out of memory, unbalanced aml_end()) is recorded in the buffer, every later call does
 * nothing, and aml_finish() reports it. A caller therefore checks once, at the end.
 *
 * Encodings follow the ACPI 6.5 specification, chapter 20 (AML grammar) and section 6.4
 * (resource data types).
 */
#ifndef BULKHEAD_ARCH_X86_ACPI_AML_H
#define BULKHEAD_ARCH_X86_ACPI_AML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Deepest nesting of open constructs; the DSDT needs about 5. */
#define AML_MAX_DEPTH 16

/**
 * Largest AML stream the builder grows to. Bounded well below the 2^28 PkgLength limit so
 * that a runaway generator fails with -E2BIG instead of exhausting host memory, yet large
 * enough that every PkgLength encoding size (up to 4 bytes, > 1 MiB) can be produced.
 */
#define AML_MAX_LEN ((size_t)1 << 22)

/** Most bytes a PkgLength encoding takes. */
#define AML_PKGLEN_MAX_BYTES 4

/** Largest value a PkgLength can encode (28 bits). */
#define AML_PKGLEN_MAX 0x0fffffffu

/** How aml_end() must close a construct; internal to the builder. */
enum aml_block {
    AML_BLOCK_PKGLEN,            /**< Only the PkgLength is back-patched. */
    AML_BLOCK_BUFFER,            /**< Buffer: the BufferSize integer is inserted first. */
    AML_BLOCK_RESOURCE_TEMPLATE, /**< Buffer whose End Tag is appended when it closes. */
};

/** One construct opened and not yet closed. */
struct aml_open_block {
    size_t pos;          /**< Offset where the PkgLength (and BufferSize) will be inserted. */
    enum aml_block kind; /**< What aml_end() has to do. */
};

/** A growable AML byte stream. Initialise with aml_init(), release with aml_release(). */
struct aml_buf {
    uint8_t *data;                             /**< The bytes (heap, NULL while empty). */
    size_t len;                                /**< Bytes used. */
    size_t cap;                                /**< Bytes allocated. */
    int err;                                   /**< First error (negative errno), 0 if none. */
    unsigned depth;                            /**< Number of constructs currently open. */
    struct aml_open_block open[AML_MAX_DEPTH]; /**< The open constructs, innermost last. */
};

/** Simple AML operators whose operands the caller emits next (ACPI 6.5, 20.2.5). */
enum aml_opcode {
    AML_OP_STORE = 0x70,              /**< Store(Source, Target). */
    AML_OP_ADD = 0x72,                /**< Add(A, B, Target). */
    AML_OP_SUBTRACT = 0x74,           /**< Subtract(A, B, Target). */
    AML_OP_AND = 0x7b,                /**< And(A, B, Target). */
    AML_OP_OR = 0x7d,                 /**< Or(A, B, Target). */
    AML_OP_NOT = 0x80,                /**< Not(A, Target). */
    AML_OP_CREATE_DWORD_FIELD = 0x8a, /**< CreateDWordField(Buffer, ByteIndex, Name). */
    AML_OP_LAND = 0x90,               /**< LAnd(A, B). */
    AML_OP_LOR = 0x91,                /**< LOr(A, B). */
    AML_OP_LNOT = 0x92,               /**< LNot(A); followed by AML_OP_LEQUAL it is LNotEqual. */
    AML_OP_LEQUAL = 0x93,             /**< LEqual(A, B). */
    AML_OP_LGREATER = 0x94,           /**< LGreater(A, B). */
    AML_OP_LLESS = 0x95,              /**< LLess(A, B). */
    AML_OP_RETURN = 0xa4,             /**< Return(Value). */
};

/** Whether an address-space descriptor's range is used by the device or decoded for children. */
enum aml_rsrc_usage {
    AML_RSRC_PRODUCER = 0, /**< Produced and consumed, e.g. a bridge window (ResourceProducer). */
    AML_RSRC_CONSUMER = 1, /**< Consumed by the device itself (ResourceConsumer). */
};

/** Caching attribute of a memory address-space descriptor (_MEM, ACPI 6.5 table 6.50). */
enum aml_mem_cache {
    AML_MEM_NON_CACHEABLE = 0,   /**< NonCacheable: MMIO registers. */
    AML_MEM_CACHEABLE = 1,       /**< Cacheable. */
    AML_MEM_WRITE_COMBINING = 2, /**< WriteCombining. */
    AML_MEM_PREFETCHABLE = 3,    /**< Prefetchable. */
};

/** Flag bits of an Extended Interrupt descriptor (ACPI 6.5, 6.4.3.6). */
enum aml_ext_irq_flags {
    AML_EXT_IRQ_CONSUMER = 1u << 0,   /**< ResourceConsumer (clear: ResourceProducer). */
    AML_EXT_IRQ_EDGE = 1u << 1,       /**< Edge-triggered (clear: level-triggered). */
    AML_EXT_IRQ_ACTIVE_LOW = 1u << 2, /**< Active low (clear: active high). */
    AML_EXT_IRQ_SHARED = 1u << 3,     /**< Shared with other devices. */
    AML_EXT_IRQ_WAKE = 1u << 4,       /**< Capable of waking the system. */
};

/**
 * Start an empty stream.
 * @param b the stream.
 */
void aml_init(struct aml_buf *b);

/**
 * Free the stream's memory; it may be reused after aml_init().
 * @param b the stream.
 */
void aml_release(struct aml_buf *b);

/**
 * The first error recorded so far.
 * @param b the stream.
 * @return 0 or a negative errno.
 */
int aml_error(const struct aml_buf *b);

/**
 * Check that the stream is complete: no error and every construct closed.
 * @param b the stream.
 * @return 0, the recorded error, or -EINVAL when a construct is still open.
 */
int aml_finish(struct aml_buf *b);

/**
 * Append one raw byte (an opcode the enum does not name, or data).
 * @param b the stream.
 * @param v the byte.
 */
void aml_byte(struct aml_buf *b, uint8_t v);

/**
 * Append raw bytes.
 * @param b the stream.
 * @param p the bytes.
 * @param n how many.
 */
void aml_bytes(struct aml_buf *b, const void *p, size_t n);

/**
 * Encode a PkgLength value (which counts its own encoding bytes) in the shortest form.
 * @param value the length, at most AML_PKGLEN_MAX.
 * @param out receives 1 to AML_PKGLEN_MAX_BYTES bytes.
 * @return the number of bytes written, or -E2BIG when @p value does not fit in 28 bits.
 */
int aml_pkglen_encode(uint32_t value, uint8_t out[AML_PKGLEN_MAX_BYTES]);

/**
 * Append a NameString. Accepts an optional root prefix '\\' or any number of parent
 * prefixes '^', then zero or more dot-separated segments of 1 to 4 characters
 * ([A-Z_][A-Z0-9_]*), which are padded with '_' to four: "\\_SB.PCI0", "_HID", "^^CDW1".
 * @param b the stream.
 * @param path the name; an invalid one records -EINVAL.
 */
void aml_namestring(struct aml_buf *b, const char *path);

/**
 * Append an integer constant in its shortest form: ZeroOp, OneOp, OnesOp (all bits set),
 * or a Byte/Word/DWord/QWord prefix.
 * @param b the stream.
 * @param v the value.
 */
void aml_int(struct aml_buf *b, uint64_t v);

/**
 * Append a String constant.
 * @param b the stream.
 * @param s ASCII characters 0x01..0x7F; anything else records -EINVAL.
 */
void aml_string(struct aml_buf *b, const char *s);

/**
 * Compress a PNP/EISA id such as "PNP0A08" to its 32-bit form (what ASL's EISAID() yields).
 * @param id three upper-case letters and four upper-case hex digits.
 * @param out receives the value.
 * @return 0, or -EINVAL when @p id is malformed.
 */
int aml_eisaid_value(const char *id, uint32_t *out);

/**
 * Append EISAID(@p id), always as a DWord constant (which is how OSPM recognises it).
 * @param b the stream.
 * @param id as for aml_eisaid_value().
 */
void aml_eisaid(struct aml_buf *b, const char *id);

/**
 * Append ToUUID(@p uuid): a 16-byte Buffer in the ACPI byte order (the first three groups
 * little-endian, the last two as written).
 * @param b the stream.
 * @param uuid "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" in hex, either case.
 */
void aml_uuid(struct aml_buf *b, const char *uuid);

/**
 * Append ArgN, a method argument.
 * @param b the stream.
 * @param n 0..6.
 */
void aml_arg(struct aml_buf *b, unsigned n);

/**
 * Append LocalN, a method local variable.
 * @param b the stream.
 * @param n 0..7.
 */
void aml_local(struct aml_buf *b, unsigned n);

/**
 * Append an operator; its operands are the caller's next emissions.
 * @param b the stream.
 * @param op the operator.
 */
void aml_op(struct aml_buf *b, enum aml_opcode op);

/**
 * Append the NullName, used as "no target" operand.
 * @param b the stream.
 */
void aml_null_target(struct aml_buf *b);

/**
 * Append `Name(name, ...)`; the caller emits the value object next.
 * @param b the stream.
 * @param name a NameString as for aml_namestring().
 */
void aml_name(struct aml_buf *b, const char *name);

/**
 * Append `Name(name, v)`.
 * @param b the stream.
 * @param name the object's name.
 * @param v its integer value.
 */
void aml_name_int(struct aml_buf *b, const char *name, uint64_t v);

/**
 * Append `Name(name, EISAID(id))`.
 * @param b the stream.
 * @param name the object's name.
 * @param id as for aml_eisaid_value().
 */
void aml_name_eisaid(struct aml_buf *b, const char *name, const char *id);

/**
 * Append `Name(name, "s")`.
 * @param b the stream.
 * @param name the object's name.
 * @param s its string value.
 */
void aml_name_string(struct aml_buf *b, const char *name, const char *s);

/**
 * Open `Scope(path) { ... }`.
 * @param b the stream.
 * @param path the scope's NameString.
 */
void aml_scope_begin(struct aml_buf *b, const char *path);

/**
 * Open `Device(path) { ... }`.
 * @param b the stream.
 * @param path the device's NameString.
 */
void aml_device_begin(struct aml_buf *b, const char *path);

/**
 * Open `Method(path, nargs, Serialized/NotSerialized) { ... }` (sync level 0).
 * @param b the stream.
 * @param path the method's NameString.
 * @param nargs number of arguments, 0..7.
 * @param serialized whether OSPM must serialise executions of the method.
 */
void aml_method_begin(struct aml_buf *b, const char *path, unsigned nargs, bool serialized);

/**
 * Open `If (predicate) { ... }`; the caller emits the predicate first, then the body.
 * @param b the stream.
 */
void aml_if_begin(struct aml_buf *b);

/**
 * Open `Else { ... }`; must directly follow the aml_end() of an If.
 * @param b the stream.
 */
void aml_else_begin(struct aml_buf *b);

/**
 * Open `Package(n) { ... }`; the caller emits exactly @p nelems elements.
 * @param b the stream.
 * @param nelems element count, at most 255.
 */
void aml_package_begin(struct aml_buf *b, unsigned nelems);

/**
 * Open `Buffer() { ... }`: the bytes emitted until aml_end() are its contents and its
 * size is computed then.
 * @param b the stream.
 */
void aml_buffer_begin(struct aml_buf *b);

/**
 * Open `ResourceTemplate() { ... }`: a Buffer of resource descriptors (aml_rd_*()) that
 * aml_end() terminates with an End Tag whose checksum byte is 0 ("treat as valid").
 * @param b the stream.
 */
void aml_resource_template_begin(struct aml_buf *b);

/**
 * Close the innermost open construct, back-patching its PkgLength (and buffer size).
 * @param b the stream; closing with nothing open records -EINVAL.
 */
void aml_end(struct aml_buf *b);

/**
 * Append `Method(path, 0, NotSerialized) { Return(v) }`, e.g. a constant _STA.
 * @param b the stream.
 * @param path the method's name.
 * @param v the returned integer.
 */
void aml_method_return_int(struct aml_buf *b, const char *path, uint64_t v);

/**
 * Append an I/O port descriptor with 16-bit decode: IO(Decode16, min, max, align, len).
 * @param b the stream (inside a resource template).
 * @param min lowest base address.
 * @param max highest base address, >= @p min.
 * @param align base alignment.
 * @param len number of ports.
 */
void aml_rd_io(struct aml_buf *b, uint16_t min, uint16_t max, uint8_t align, uint8_t len);

/**
 * Append IRQNoFlags() { irq }: an ISA interrupt, active high, edge-triggered.
 * @param b the stream (inside a resource template).
 * @param irq 0..15.
 */
void aml_rd_irq_noflags(struct aml_buf *b, unsigned irq);

/**
 * Append an Extended Interrupt descriptor with one interrupt.
 * @param b the stream (inside a resource template).
 * @param flags enum aml_ext_irq_flags bits.
 * @param irq the interrupt (a GSI on x86).
 */
void aml_rd_ext_irq(struct aml_buf *b, unsigned flags, uint32_t irq);

/**
 * Append Memory32Fixed(ReadWrite/ReadOnly, base, len).
 * @param b the stream (inside a resource template).
 * @param rw whether the range is writable.
 * @param base start address.
 * @param len length; base + len must not pass 4 GiB.
 */
void aml_rd_memory32_fixed(struct aml_buf *b, bool rw, uint32_t base, uint32_t len);

/**
 * Append WordBusNumber(usage, MinFixed, MaxFixed, PosDecode, 0, min, max, 0, max-min+1).
 * @param b the stream (inside a resource template).
 * @param usage producer for a host bridge.
 * @param min first bus.
 * @param max last bus, >= @p min; max - min + 1 must fit the 16-bit length field.
 */
void aml_rd_word_bus(struct aml_buf *b, enum aml_rsrc_usage usage, uint16_t min, uint16_t max);

/**
 * Append WordIO(usage, MinFixed, MaxFixed, PosDecode, EntireRange, 0, min, max, 0, len).
 * @param b the stream (inside a resource template).
 * @param usage producer for a bridge window.
 * @param min first port.
 * @param max last port, >= @p min; max - min + 1 must fit the 16-bit length field (so one
 *        descriptor cannot cover all of 0..0xFFFF).
 */
void aml_rd_word_io(struct aml_buf *b, enum aml_rsrc_usage usage, uint16_t min, uint16_t max);

/**
 * Append DWordMemory(usage, PosDecode, MinFixed, MaxFixed, cache, rw, 0, min, max, 0, len).
 * @param b the stream (inside a resource template).
 * @param usage producer for a bridge window.
 * @param cache caching attribute.
 * @param rw ReadWrite when true, ReadOnly otherwise.
 * @param min first address.
 * @param max last address, >= @p min.
 */
void aml_rd_dword_memory(struct aml_buf *b, enum aml_rsrc_usage usage, enum aml_mem_cache cache,
                         bool rw, uint32_t min, uint32_t max);

/**
 * Append QWordMemory(usage, PosDecode, MinFixed, MaxFixed, cache, rw, 0, min, max, 0, len).
 * @param b the stream (inside a resource template).
 * @param usage producer for a bridge window.
 * @param cache caching attribute.
 * @param rw ReadWrite when true, ReadOnly otherwise.
 * @param min first address.
 * @param max last address, >= @p min; the range may not be all 2^64 bytes.
 */
void aml_rd_qword_memory(struct aml_buf *b, enum aml_rsrc_usage usage, enum aml_mem_cache cache,
                         bool rw, uint64_t min, uint64_t max);

#endif
