# Shared setup for the bats suites: programs come from build/bin (the
# Makefile puts it first on PATH); every test gets its own scratch dir.
bats_load_library bats-support
bats_load_library bats-assert

TOP="$(cd "$BATS_TEST_DIRNAME/../.." && pwd)"
BIN="${W2V_BIN:-$TOP/build/bin}"   # make sanitize points it at build-san/bin
SHARED="${W2V_SHARED:-$TOP/../shared}"
PY=/usr/bin/python3   # Debian's python3 (python3-msgpack, python3-numpy)

setup() {
    T="$BATS_TEST_TMPDIR"
    cd "$T" || return 1
}

# The independent Python reader and writer of streams (see pystream.py).
pystream() { "$PY" "$TOP/tests/bats/pystream.py" "$@"; }

# Tests that compare with the golden reference data skip, saying so, where
# the checkout has no ../shared beside it (a clean clone), or fail where
# W2V_REQUIRE_GOLDEN=1 (as CI sets it).
need_golden() {
    [ -d "$SHARED/golden" ] && return 0
    [ "${W2V_REQUIRE_GOLDEN:-}" = 1 ] && fail "no golden reference data at $SHARED/golden, and W2V_REQUIRE_GOLDEN=1"
    skip "no golden reference data at $SHARED/golden"
}
