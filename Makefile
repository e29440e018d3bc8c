# SPDX-License-Identifier: BSD-2-Clause
# bulkhead build. `make` builds the VMM and bulkhead-blk, `make test` runs the
# whole suite (unit tests, then end-to-end tests inside the test host), `make check`
# runs the format check, clang-tidy and Doxygen, `make guest` builds the guest images.

SHELL   := /bin/bash
.SHELLFLAGS := -o pipefail -c
CC      ?= cc
BUILD   ?= build
CSTD    := -std=c17
WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wformat=2 -Wvla -Wno-missing-field-initializers
CFLAGS  ?= -O2 -g
CPPFLAGS += -D_GNU_SOURCE -Isrc -DBULKHEAD_VERSION=\"0.1.0\"
DEPFLAGS := -MMD -MP
ALL_CFLAGS = $(CSTD) $(WARN) $(CFLAGS) -fno-strict-aliasing -fstack-protector-strong \
             -D_FORTIFY_SOURCE=2 -fPIE
# The VMM is linked statically (no dynamic loader at start-up, behaviour that does not
# change under a libc upgrade on the host) and position-independent, so that the one
# process a hostile guest talks to is loaded at a random address (ASLR).
VMM_LDFLAGS ?= -static-pie -pthread

# Everything under src/ except the program entry points forms the library that
# the programs and the unit tests link against.
# Each backend program lives in src/backends/NAME/ with its entry point in main.c and is
# built as $(BUILD)/bulkhead-NAME.
BACKENDS  := $(sort $(notdir $(patsubst %/main.c,%,$(wildcard src/backends/*/main.c))))
BACKEND_BINS := $(BACKENDS:%=$(BUILD)/bulkhead-%)
PROG_SRCS := src/vmm/main.c src/supervisor/main.c $(BACKENDS:%=src/backends/%/main.c)
# Fault injection exists only in the test build bulkhead-blk-faulty (below).
FAULT_SRCS := src/vhost/faults.c
LIB_SRCS  := $(filter-out $(PROG_SRCS) $(FAULT_SRCS),$(shell find src -name '*.c' | sort))
LIB_OBJS  := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o)
VMM_OBJS  := $(BUILD)/obj/src/vmm/main.o
UNIT_SRCS := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all vmm supervisor blk backends faulty unit test check format tidy doxygen guest testhost deps clean \
        bench demo bench-boot bench-io bench-net bench-system

all: vmm backends supervisor

backends: $(BACKEND_BINS)

vmm: $(BUILD)/bulkhead-vmm

supervisor: $(BUILD)/bulkhead

blk: $(BUILD)/bulkhead-blk

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(DEPFLAGS) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/libbulkhead.a: $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

# libseccomp: every program's --sandbox filter (src/host/seccomp.c); linked statically.
SECCOMP_LDLIBS := -lseccomp

$(BUILD)/bulkhead-vmm: $(VMM_OBJS) $(BUILD)/libbulkhead.a
	$(CC) $(ALL_CFLAGS) -o $@ $(VMM_OBJS) $(BUILD)/libbulkhead.a $(SECCOMP_LDLIBS) $(VMM_LDFLAGS)

# libyaml: the system description's parser (src/supervisor/desc.c). Debian's libyaml-dev
# ships libyaml.a, so bulkhead is linked static-pie like the other programs.
YAML_LDLIBS := -lyaml
# json-c: the supervisor's control protocol (src/supervisor/api.c, ctl.c); libjson-c-dev
# ships libjson-c.a.
JSON_LDLIBS := -ljson-c

# bulkhead: the supervisor's command (bulkhead check, up, ctl, down).
$(BUILD)/bulkhead: $(BUILD)/obj/src/supervisor/main.o $(BUILD)/libbulkhead.a
	$(CC) $(ALL_CFLAGS) -o $@ $< $(BUILD)/libbulkhead.a $(YAML_LDLIBS) $(JSON_LDLIBS) \
	    $(SECCOMP_LDLIBS) $(VMM_LDFLAGS)

# liburing (io_uring): the block backend's request engine (src/backends/blk/) needs it.
# Linking it costs nothing elsewhere: a program that does not call the engine does not pull
# its object out of libbulkhead.a, so bulkhead-vmm stays free of it.
URING_LDLIBS := -luring

# Every backend (bulkhead-blk, bulkhead-net, ...) is a program of its own, linked like the
# VMM (static, PIE).
$(BUILD)/bulkhead-%: $(BUILD)/obj/src/backends/%/main.o $(BUILD)/libbulkhead.a
	$(CC) $(ALL_CFLAGS) -o $@ $< $(BUILD)/libbulkhead.a $(URING_LDLIBS) $(SECCOMP_LDLIBS) \
	    $(VMM_LDFLAGS)

# A TEST build of bulkhead-blk that misbehaves on purpose (--fault KIND, src/vhost/faults.h),
# for the hostile-backend tests: the same sources compiled with -DBULKHEAD_FAULTS into
# objects of their own, plus faults.c. Nothing of it reaches bulkhead-blk or bulkhead-vmm.
faulty: $(BUILD)/bulkhead-blk-faulty

FAULTY_LIB_OBJS := $(patsubst %.c,$(BUILD)/obj-faulty/%.o,$(LIB_SRCS) $(FAULT_SRCS))

$(BUILD)/obj-faulty/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -DBULKHEAD_FAULTS $(DEPFLAGS) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/libbulkhead-faulty.a: $(FAULTY_LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/bulkhead-blk-faulty: $(BUILD)/obj-faulty/src/backends/blk/main.o $(BUILD)/libbulkhead-faulty.a
	$(CC) $(ALL_CFLAGS) -o $@ $< $(BUILD)/libbulkhead-faulty.a $(URING_LDLIBS) $(SECCOMP_LDLIBS) \
	    $(VMM_LDFLAGS)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libbulkhead.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(DEPFLAGS) -Itests/unit $(ALL_CFLAGS) -Wno-missing-prototypes -o $@ $< \
	    $(BUILD)/libbulkhead.a -lcmocka $(URING_LDLIBS) $(SECCOMP_LDLIBS) $(YAML_LDLIBS) \
	    $(JSON_LDLIBS) -pthread

unit: $(UNIT_BINS)

# Installs the Debian packages the suite needs (when missing), runs the code-quality
# gates (make check), builds everything, runs unit tests, builds guest images and the
# test host, and runs the end-to-end tests. CI runs exactly this (.ci/run).
test:
	tools/deps test check
	$(MAKE) check
	$(MAKE) vmm blk faulty unit
	tests/run

guest:
	tools/mk-guest

testhost:
	tools/mk-testhost

deps:
	tools/deps all

# The three-VM system of examples/demo.yaml (tools/demo): it needs bulkhead, bulkhead-vmm
# and the backends.
demo:
	tools/deps demo
	$(MAKE) all
	tools/demo

# Every benchmark, each in test hosts of its own; results in docs/performance.md. bench/io
# runs bench/net (network and vsock) and bench/system (supervised systems: sandbox price,
# start-up, density) after its block part, so bench-io covers bench-net and bench-system.
bench: bench-boot bench-io

bench-boot:
	tools/deps bench
	$(MAKE) vmm
	bench/boot

bench-io:
	tools/deps bench
	$(MAKE) vmm backends
	bench/io

bench-net:
	tools/deps bench
	$(MAKE) vmm backends
	bench/net

bench-system:
	tools/deps bench
	$(MAKE) all
	bench/system

CHECK_SRCS = $(shell find src tests/unit -name '*.[ch]' | sort)

format:
	clang-format -i $(CHECK_SRCS)

TIDY_STAMPS = $(patsubst %.c,$(BUILD)/tidy/%.ok,$(filter %.c,$(CHECK_SRCS)))
TIDY_HEADERS = $(filter %.h,$(CHECK_SRCS))

tidy: $(TIDY_STAMPS)

$(BUILD)/tidy/%.ok: %.c $(TIDY_HEADERS) .clang-tidy
	@mkdir -p $(dir $@)
	clang-tidy --quiet $< -- $(CPPFLAGS) -Itests/unit $(CSTD) 2>&1 \
	    | { grep -v -E '^[0-9]+ warnings? generated' || true; }
	@touch $@

check:
	tools/deps check
	clang-format --dry-run --Werror $(CHECK_SRCS)
	@# clang-tidy once per source file, on every CPU, and only again when the file, a header
	@# or the configuration changed (a stamp per file): over the whole tree it takes minutes.
	$(MAKE) --no-print-directory -j"$$(nproc)" tidy
	@# Doxygen checks the functions of a header only when the header itself is documented.
	@missing=$$(grep -L '@file' $$(find src -name '*.h')); \
	    if [ -n "$$missing" ]; then echo "headers without @file: $$missing"; exit 1; fi
	@mkdir -p $(BUILD)/doxygen
	doxygen docs/Doxyfile

clean:
	rm -rf $(BUILD)/obj $(BUILD)/obj-faulty $(BUILD)/tests $(BUILD)/bulkhead-vmm $(BUILD)/bulkhead \
	    $(BACKEND_BINS) $(BUILD)/bulkhead-blk-faulty $(BUILD)/libbulkhead.a \
	    $(BUILD)/libbulkhead-faulty.a

-include $(shell find $(BUILD)/obj $(BUILD)/obj-faulty $(BUILD)/tests -name '*.d' 2>/dev/null)
