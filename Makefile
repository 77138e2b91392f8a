# w2vtools: Wav2Vec2 audio classifiers as small Unix programs.
#   make            library and programs      make check    all tests
#   make deps       Debian packages (apt-get) make bench    benchmarks beside PyTorch
#   make demo       the embedded demo          make install  PREFIX=/usr/local
VERSION  := 0.1.0
PREFIX   ?= /usr/local
CC       ?= cc
CFLAGS   ?= -O2 -g
WARN     := -Wall -Wextra -Werror
PKGS     := sndfile samplerate msgpack openblas libcurl libarchive jansson libcrypto espeak-ng
CPPFLAGS += -Iinclude -D_GNU_SOURCE -DW2V_VERSION='"$(VERSION)"'
DEPCFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
DEPLIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
ALL_CFLAGS = $(CFLAGS) $(WARN) -fopenmp -pthread $(DEPCFLAGS) $(CPPFLAGS)
LDLIBS   = $(DEPLIBS) -fopenmp -pthread -lm

# Debian packages: build, test (bats, python3 for round trips and the loopback
# server), benchmark (python3-torch) and plots (gnuplot).
DEBS := build-essential pkg-config libsndfile1-dev libsamplerate0-dev libmsgpack-dev \
        libopenblas-dev libcurl4-openssl-dev libarchive-dev libjansson-dev libssl-dev \
        libespeak-ng-dev bats bats-assert bats-support python3 python3-msgpack \
        python3-numpy gnuplot-nox
BENCH_DEBS := python3-torch time

LIB_SRC  := $(sort $(wildcard lib/*.c))
LIB_OBJ  := $(LIB_SRC:lib/%.c=build/lib/%.o)
BIN_SRC  := $(sort $(wildcard bin/*.c))
PROGS    := $(BIN_SRC:bin/%.c=build/bin/%)
UNIT_SRC := $(sort $(wildcard tests/unit/*.c))
UNITS    := $(UNIT_SRC:tests/unit/%.c=build/tests/%)
BENCH_SRC := $(sort $(wildcard bench/*.c))
BENCHES  := $(BENCH_SRC:bench/%.c=build/bench/%)
HEADERS  := $(wildcard include/w2v/*.h) $(wildcard lib/*.h)
MAN1     := $(wildcard man/man1/*.1)
MAN5     := $(wildcard man/man5/*.5)

.PHONY: all deps check unit bats bench demo install clean
.DELETE_ON_ERROR:

all: build/libw2v.a $(PROGS) $(UNITS)

build/lib/%.o: lib/%.c $(HEADERS) | build/lib
	$(CC) $(ALL_CFLAGS) -c -o $@ $<
build/libw2v.a: $(LIB_OBJ)
	rm -f $@ && ar rcs $@ $^
build/bin/%: bin/%.c build/libw2v.a $(HEADERS) | build/bin
	$(CC) $(ALL_CFLAGS) -o $@ $< build/libw2v.a $(LDFLAGS) $(LDLIBS)
build/bench/%: bench/%.c build/libw2v.a $(HEADERS) | build/bench
	$(CC) $(ALL_CFLAGS) -o $@ $< build/libw2v.a $(LDFLAGS) $(LDLIBS)
build/tests/%: tests/unit/%.c tests/unit/unit.h build/libw2v.a $(HEADERS) | build/tests
	$(CC) $(ALL_CFLAGS) -Ilib -o $@ $< build/libw2v.a $(LDFLAGS) $(LDLIBS)
build/lib build/bin build/tests build/bench:
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

unit: $(UNITS)
	@set -e; for t in $(UNITS); do echo "== $$t"; $$t; done

bats: $(PROGS)
	PATH="$(CURDIR)/build/bin:$$PATH" bats tests/bats

bench:
	$(MAKE) deps EXTRA_DEBS="$(BENCH_DEBS)"
	$(MAKE) all $(BENCHES)
	bench/run

demo: deps
	$(MAKE) all
	PATH="$(CURDIR)/build/bin:$$PATH" $(MAKE) -f pipelines/demo.mk

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig \
	  $(DESTDIR)$(PREFIX)/include/w2v $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man5
	install -m 755 $(PROGS) $(DESTDIR)$(PREFIX)/bin
	install -m 644 build/libw2v.a $(DESTDIR)$(PREFIX)/lib
	install -m 644 $(HEADERS) $(DESTDIR)$(PREFIX)/include/w2v
	install -m 644 $(MAN1) $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 644 $(MAN5) $(DESTDIR)$(PREFIX)/share/man/man5
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' -e 's|@PKGS@|$(PKGS)|' \
	  w2v.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/w2v.pc

clean:
	rm -rf build
