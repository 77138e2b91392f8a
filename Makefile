# w2vtools: Wav2Vec2 audio classifiers as small Unix programs.
#   make            library and programs      make check    all tests
#   make deps       Debian packages (apt-get) make bench    benchmarks beside PyTorch
#   make demo       the embedded demo          make install  PREFIX=/usr/local
#   make sanitize   unit tests and the hostile-input bats suites under ASan and UBSan (in build-san/)
#   make unit-NAME, make sanitize-NAME   one unit test, e.g. unit-test_stream
#   make mutants    planted bugs against the tests, one at a time (minutes; tests/mutants/run)
#   make fuzz       libFuzzer harnesses (tests/fuzz/), FUZZ_SECONDS each; make fuzz-regress replays their findings
VERSION  := 0.1.0
PREFIX   ?= /usr/local
CC       ?= cc
# Debian's hardening flags (dpkg-buildflags with hardening=+all:
# _FORTIFY_SOURCE, the stack protector, relro and now; PIE is gcc's default
# here) and stack-clash protection, unless CFLAGS is given.
ifeq ($(origin CFLAGS),undefined)
BUILDFLAGS = $(shell DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --get $(1) 2>/dev/null)
CFLAGS   := $(or $(call BUILDFLAGS,CFLAGS),-O2 -g) -fstack-clash-protection
CPPFLAGS += $(call BUILDFLAGS,CPPFLAGS)
LDFLAGS  += $(call BUILDFLAGS,LDFLAGS)
endif
# -Wno-missing-field-initializers: the API's run and input structs grow at
# the end, and a positional initialiser that stops early means 0 for the
# rest (w2v_run's {training, seed, step, mask} is fp32): that is by design.
WARN     := -Wall -Wextra -Werror -Wno-missing-field-initializers
PKGS     := sndfile samplerate fftw3f msgpack openblas libcurl libarchive jansson libcrypto espeak-ng ompi-c
CPPFLAGS += -Iinclude -D_GNU_SOURCE -DW2V_VERSION='"$(VERSION)"'
DEPCFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
DEPLIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
# oneDNN (the bf16 products, lib/gemm_dnnl.c): Debian's libdnnl-dev ships
# no pkg-config file, so it is named here and in the installed w2v.pc.
NOPC_LIBS := -ldnnl
# -fno-trapping-math: FP exception flags are never read here, and without it
# gcc will not turn the clamps of the elementwise loops into vector min/max.
ALL_CFLAGS = $(CFLAGS) $(WARN) -fno-trapping-math -fopenmp -pthread $(DEPCFLAGS) $(CPPFLAGS)
# --as-needed: a program loads only the libraries it uses (no OpenBLAS
# thread pool in ks-cat, no espeak-ng outside ks-synth).
LDFLAGS  += -Wl,--as-needed
LDLIBS   = $(DEPLIBS) $(NOPC_LIBS) -fopenmp -pthread -lm

# Debian packages: build, test (bats, python3 for round trips and the loopback
# server, groff to check the man pages), benchmark (python3-torch) and plots
# (gnuplot).
DEBS := build-essential pkg-config libsndfile1-dev libsamplerate0-dev libfftw3-dev libmsgpack-dev \
        libopenblas-dev libdnnl-dev libcurl4-openssl-dev libarchive-dev libjansson-dev libssl-dev \
        libespeak-ng-dev bats bats-assert bats-support python3 python3-msgpack \
        python3-numpy groff-base gnuplot-nox libopenmpi-dev openmpi-bin
BENCH_DEBS := python3-torch
# Fuzzing (make fuzz, and the replay of tests/fuzz/regress that make check
# runs): Debian's clang with its libFuzzer and OpenMP runtimes, and
# llvm-symbolizer for readable stacks.
FUZZ_DEBS := clang-14 libclang-rt-14-dev libomp-14-dev llvm-14
DEBS += $(FUZZ_DEBS)

# BUILD: where objects go (the sanitizer build uses its own).
BUILD    ?= build
# lib/cli.c, the programs' conventions (w2v/cli.h: messages that exit,
# options, outputs, progress bars), is not part of the library: it makes
# libw2vcli.a, which the programs, tests and benchmarks link and which is
# not installed.
LIB_SRC  := $(filter-out lib/cli.c,$(sort $(wildcard lib/*.c)))
LIB_OBJ  := $(LIB_SRC:lib/%.c=$(BUILD)/lib/%.o)
CLI_OBJ  := $(BUILD)/lib/cli.o
BIN_SRC  := $(sort $(wildcard bin/*.c))
PROGS    := $(BIN_SRC:bin/%.c=$(BUILD)/bin/%)
UNIT_SRC := $(sort $(wildcard tests/unit/*.c))
UNITS    := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
BENCH_SRC := $(sort $(wildcard bench/*.c))
BENCHES  := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)
PUBLIC_HEADERS := $(filter-out include/w2v/cli.h,$(wildcard include/w2v/*.h))
HEADERS  := $(wildcard include/w2v/*.h) $(wildcard lib/*.h)
MAN1     := $(wildcard man/man1/*.1)
MAN5     := $(wildcard man/man5/*.5)

.PHONY: all deps check unit bats bats-hostile sanitize bench demo install clean mutants
.DELETE_ON_ERROR:

# benchmarks are built too, so that an API change cannot break them unseen
all: $(BUILD)/libw2v.a $(BUILD)/libw2vcli.a $(PROGS) $(UNITS) $(BENCHES)

$(BUILD)/lib/%.o: lib/%.c $(HEADERS) | $(BUILD)/lib
	$(CC) $(ALL_CFLAGS) -c -o $@ $<
$(BUILD)/libw2v.a: $(LIB_OBJ)
	rm -f $@ && ar rcs $@ $^
$(BUILD)/libw2vcli.a: $(CLI_OBJ)
	rm -f $@ && ar rcs $@ $^
LINK = $(CC) $(ALL_CFLAGS) -o $@ $< $(BUILD)/libw2vcli.a $(BUILD)/libw2v.a $(LDFLAGS) $(LDLIBS)
$(BUILD)/bin/%: bin/%.c $(BUILD)/libw2v.a $(BUILD)/libw2vcli.a $(HEADERS) | $(BUILD)/bin
	$(LINK)
$(BUILD)/bench/%: bench/%.c lib/ops.h $(BUILD)/libw2v.a $(BUILD)/libw2vcli.a $(HEADERS) | $(BUILD)/bench
	$(LINK) -Ilib
$(BUILD)/tests/%: tests/unit/%.c tests/unit/unit.h $(BUILD)/libw2v.a $(BUILD)/libw2vcli.a $(HEADERS) | $(BUILD)/tests
	$(LINK) -Ilib
$(BUILD)/lib $(BUILD)/bin $(BUILD)/tests $(BUILD)/bench:
	mkdir -p $@

# Installs what is missing; as a non-root user prints the command instead.
deps:
	@missing=$$(for p in $(DEBS) $(EXTRA_DEBS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
	  echo "make deps: installing $$missing"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing || \
	  { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; }; \
	else echo "make deps: run as root: apt-get install -y --no-install-recommends $$missing" >&2; exit 1; fi

check: deps
	$(MAKE) all
	$(MAKE) unit bats
	$(MAKE) fuzz-regress

unit: $(UNITS)
	@set -e; for t in $(UNITS); do echo "== $$t"; $(UNIT_ENV) $$t; done
unit-%: $(BUILD)/tests/%
	$(UNIT_ENV) $<

# The library and unit tests again with AddressSanitizer and UBSan; any
# report aborts the test.  Leak checking needs no suppressions: OpenBLAS
# (pthreads) and libgomp leave nothing behind.
SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
SAN_ENV   := ASAN_OPTIONS=halt_on_error=1:abort_on_error=1:detect_leaks=1:detect_stack_use_after_return=1:strict_string_checks=1 \
             UBSAN_OPTIONS=halt_on_error=1:abort_on_error=1:print_stacktrace=1
SAN_MAKE   = $(MAKE) BUILD=build-san CFLAGS="-O1 -g $(SAN_FLAGS)" LDFLAGS="$(SAN_FLAGS)" UNIT_ENV="$(SAN_ENV)"
# Then the programs, built the same way, through the bats suites that feed
# them hostile input.  Leak checking is off for programs: they exit through
# w2v_die without freeing, which is no bug.
SAN_BATS := stream ks-cat ks-extract ks-augment w2v-convert
SAN_PROG_ENV := W2V_SANITIZED=1 ASAN_OPTIONS=halt_on_error=1:abort_on_error=1:detect_leaks=0 \
                UBSAN_OPTIONS=halt_on_error=1:abort_on_error=1:print_stacktrace=1
sanitize:
	+$(SAN_MAKE) unit bats-hostile
sanitize-%:
	+$(SAN_MAKE) unit-$*
bats-hostile: $(PROGS)
	W2V_BIN="$(CURDIR)/$(BUILD)/bin" PATH="$(CURDIR)/$(BUILD)/bin:$$PATH" $(SAN_PROG_ENV) \
	  bats $(SAN_BATS:%=tests/bats/%.bats)

bats: $(PROGS)
	W2V_BIN="$(CURDIR)/$(BUILD)/bin" PATH="$(CURDIR)/$(BUILD)/bin:$$PATH" bats tests/bats

# Not part of check: each mutant in tests/mutants/list is applied alone to a
# scratch copy under $TMPDIR, rebuilt and tested; fails if one survives.
mutants:
	tests/mutants/run

bench:
	$(MAKE) deps EXTRA_DEBS="$(BENCH_DEBS)"
	$(MAKE) all $(BENCHES)
	bench/run

# the programs only, on every core: the demo's clock starts with the build
demo: deps
	$(MAKE) -j$(shell nproc) $(PROGS)
	PATH="$(CURDIR)/build/bin:$$PATH" $(MAKE) -f pipelines/demo.mk

# The installed archive: the library's objects linked into one, in which
# every global but the w2v_ API is made local (ops, allocation helpers and
# the rest stay the library's own).  The programs and tests link the
# plain archive, whose internals the unit tests reach.
$(BUILD)/install/libw2v.a: $(LIB_OBJ)
	mkdir -p $(@D)
	$(LD) -r -o $(@D)/libw2v.o $^
	objcopy --wildcard --keep-global-symbol='w2v_*' $(@D)/libw2v.o
	rm -f $@ && ar rcs $@ $(@D)/libw2v.o

install: all $(BUILD)/install/libw2v.a
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig \
	  $(DESTDIR)$(PREFIX)/include/w2v $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man5
	install -m 755 $(PROGS) $(DESTDIR)$(PREFIX)/bin
	install -m 644 $(BUILD)/install/libw2v.a $(DESTDIR)$(PREFIX)/lib
	install -m 644 $(PUBLIC_HEADERS) $(DESTDIR)$(PREFIX)/include/w2v
	install -m 644 $(MAN1) $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 644 $(MAN5) $(DESTDIR)$(PREFIX)/share/man/man5
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' -e 's|@PKGS@|$(PKGS)|' -e 's|@LIBS@|$(NOPC_LIBS)|' \
	  w2v.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/w2v.pc

clean:
	rm -rf build build-san build-fuzz

# libFuzzer harnesses over the library's entry points (tests/fuzz/fuzz_*.c),
# with the library built again by clang under ASan and UBSan in build-fuzz/.
# make fuzz: each harness for FUZZ_SECONDS over a copy of its seed corpus
# (tests/fuzz/corpus/NAME) in build-fuzz/, then its executions, exec/s and
# coverage; FUZZERS_RUN=stream,config picks harnesses.  A crash, leak or
# timeout fails it: its input goes to tests/fuzz/regress/NAME/.
# make fuzz-regress (in make check): every harness once over its seeds and
# regression inputs.
.PHONY: fuzz fuzz-regress fuzzers
FUZZ_CC      ?= clang-14
FUZZ_SECONDS ?= 60
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
# -Wno-pass-failed: clang reports the omp simd loops it leaves scalar at -O1
FUZZ_MAKE     = $(MAKE) BUILD=build-fuzz CC=$(FUZZ_CC) \
                CFLAGS="-O1 -g $(FUZZ_SAN) -fsanitize=fuzzer-no-link -Wno-pass-failed" LDFLAGS="$(FUZZ_SAN)"
FUZZ_SRC     := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZERS      := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/fuzz/%)
$(BUILD)/fuzz/%: tests/fuzz/%.c $(wildcard tests/fuzz/*.h) $(BUILD)/libw2v.a $(BUILD)/libw2vcli.a $(HEADERS) | $(BUILD)/fuzz
	$(LINK) -Ilib -fsanitize=fuzzer
$(BUILD)/fuzz:
	mkdir -p $@
fuzzers: $(FUZZERS)
fuzz:
	+$(FUZZ_MAKE) fuzzers
	tests/fuzz/run fuzz build-fuzz $(FUZZ_SECONDS) $(FUZZERS_RUN)
fuzz-regress:
	+$(FUZZ_MAKE) fuzzers
	tests/fuzz/run replay build-fuzz
