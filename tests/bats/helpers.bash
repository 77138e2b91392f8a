# Shared setup for the bats suites: programs come from build/bin (the
# Makefile puts it first on PATH); every test gets its own scratch dir.
bats_load_library bats-support
bats_load_library bats-assert

TOP="$(cd "$BATS_TEST_DIRNAME/../.." && pwd)"
SHARED="${W2V_SHARED:-$TOP/../shared}"
PY=/usr/bin/python3   # Debian's python3 (python3-msgpack, python3-numpy)

setup() {
    T="$BATS_TEST_TMPDIR"
    cd "$T" || return 1
}
