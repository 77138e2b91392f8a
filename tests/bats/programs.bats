#!/usr/bin/env bats
# Every program in build/bin (or $W2V_BIN), whichever there are, keeps the conventions:
# --help, --version, a usage error for an unknown option, and a man page
# that renders cleanly and names every option --help names.
load helpers

# Runs the check CMD for each program (its name in $name, its path in $p),
# collecting what fails so that one run reports every program at fault.
each_program() {
    local bad=() p
    for p in "$BIN"/*; do
        name=${p##*/}
        local why
        why=$("$@" 2>&1) || bad+=("$name: $why")
    done
    ((${#bad[@]} == 0)) || fail "$(printf '%s\n' "${bad[@]}")"
}

@test "there are programs, and every bin/NAME.c is built as build/bin/NAME" {
    local src n missing=()
    for src in "$TOP"/bin/*.c; do
        n=${src##*/}
        [ -x "$BIN/${n%.c}" ] || missing+=("${n%.c}")
    done
    ((${#missing[@]} == 0)) || fail "not built (run make): ${missing[*]}"
    [ -n "$(ls "$BIN")" ]
}

help_ok() {
    local out err st
    out=$("$p" --help 2> "$T/err") && st=0 || st=$?
    err=$(cat "$T/err")
    ((st == 0)) || { echo "--help exits $st"; return 1; }
    [ -z "$err" ] || { echo "--help writes to stderr: $err"; return 1; }
    [[ ${out%%$'\n'*} == "$name: "?* ]] || { echo "--help does not begin 'NAME: what it does': ${out%%$'\n'*}"; return 1; }
    [[ $out == *"Usage:"* ]] || { echo "--help has no 'Usage:' line"; return 1; }
    local n
    n=$(printf '%s\n' "$out" | wc -l)
    ((n <= 50)) || { echo "--help is $n lines, more than a screen"; return 1; }
}

@test "every program answers --help: 'NAME: what it does', a Usage: line, one screen" {
    each_program help_ok
}

version_ok() {
    local out st version
    version=$(sed -n 's/^VERSION *:= *//p' "$TOP/Makefile")
    out=$("$p" --version 2>&1) && st=0 || st=$?
    ((st == 0)) || { echo "--version exits $st"; return 1; }
    [ "$out" = "$name (w2vtools) $version" ] || { echo "--version says '$out'"; return 1; }
}

@test "every program answers --version with its name and the version" {
    each_program version_ok
}

usage_error_ok() {
    local out st
    out=$("$p" --no-such-option < /dev/null 2>&1 > "$T/out") && st=0 || st=$?
    ((st == 2)) || { echo "an unknown option exits $st, not 2"; return 1; }
    [[ $out == *"Try '$name --help' for more information."* ]] || { echo "an unknown option says: $out"; return 1; }
    [ ! -s "$T/out" ] || { echo "an unknown option writes to stdout"; return 1; }
}

@test "every program rejects an unknown option with exit 2 and a pointer to --help" {
    each_program usage_error_ok
}

man_ok() {
    local page="$TOP/man/man1/$name.1" warnings text opt missing=()
    [ -f "$page" ] || { echo "no man page man/man1/$name.1"; return 1; }
    warnings=$(LC_ALL=C groff -man -Tutf8 -ww -z "$page" 2>&1)
    [ -z "$warnings" ] || { echo "man page warnings: $warnings"; return 1; }
    grep -qi "^\.TH \"\?$name\"\? 1" "$page" || { echo "man page .TH does not name $name section 1"; return 1; }
    # the text with roff's escapes for '-' and fonts taken out
    text=$(sed -e 's/\\-/-/g' -e 's/\\f[BIRP]//g' "$page")
    [[ $text == *$'\n'"$name - "* ]] || { echo "man page NAME line is not '$name \\- ...'"; return 1; }
    for opt in $("$p" --help | grep -o -- '--[a-z][a-z0-9-]*' | sort -u); do
        [[ $text == *"$opt"* ]] || missing+=("$opt")
    done
    ((${#missing[@]} == 0)) || { echo "man page lacks options of --help: ${missing[*]}"; return 1; }
}

@test "every program has a man page that renders cleanly and names every option of --help" {
    command -v groff > /dev/null || skip "no groff (make deps installs groff-base)"
    each_program man_ok
}

@test "the section 5 pages render cleanly" {
    command -v groff > /dev/null || skip "no groff (make deps installs groff-base)"
    local page warnings
    shopt -s nullglob
    for page in "$TOP"/man/man5/*.5; do
        warnings=$(LC_ALL=C groff -man -Tutf8 -ww -z "$page" 2>&1)
        [ -z "$warnings" ] || fail "${page##*/}: $warnings"
    done
}
