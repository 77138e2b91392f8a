#!/usr/bin/env bats
# make install: the programs, man pages, headers free of msgpack and
# jansson, and an archive that exports the w2v_ API only; a program builds against the installed tree
# with pkg-config alone.

load helpers

@test "the installed archive exports w2v_ symbols only, and a program links and runs against it" {
    make -s -C "$TOP" install DESTDIR="$T/root" PREFIX=/usr > /dev/null
    lib="$T/root/usr/lib/libw2v.a"
    [ -s "$lib" ] && [ -x "$T/root/usr/bin/w2v-train" ] && [ -s "$T/root/usr/include/w2v/model.h" ]
    others=$(nm -g --defined-only "$lib" | awk 'NF == 3 && $3 !~ /^w2v_/ {print $3}')
    [ -z "$others" ] || fail "globals outside the w2v_ API: $others"
    nm -g --defined-only "$lib" | grep -q ' T w2v_model_forward$'
    # the programs' side (lib/cli.c: messages that exit, outputs) is not installed
    [ ! -e "$T/root/usr/include/w2v/cli.h" ] || fail "w2v/cli.h is installed"
    ! nm -g --defined-only "$lib" | grep -E ' T w2v_(die|cli_init|output_open)$' || fail "cli.c is in the installed archive"
    nm -g --defined-only "$lib" | grep -q ' T w2v_set_message_fn$'
    # the public headers stand alone, without msgpack's or jansson's types:
    # each compiles where those two headers are poisoned
    mkdir shadow
    for dep in msgpack jansson; do echo "#error \"$dep in a public header\"" > "shadow/$dep.h"; done
    for h in "$T"/root/usr/include/w2v/*.h; do
        echo "#include <w2v/$(basename "$h")>" > one.c
        cc -fsyntax-only -Ishadow -I"$T/root/usr/include" one.c || fail "w2v/$(basename "$h") does not stand alone"
    done
    cat > prog.c <<'C'
#include <stdio.h>
#include <w2v/model.h>
int main(void)
{
    char err[256];
    w2v_config c;
    if (w2v_config_preset(&c, "tiny", err, sizeof err) < 0) return 1;
    w2v_model *m = w2v_model_new(&c);
    w2v_model_init_weights(m, 1);
    float x[2 * 1600], logits[2 * 64];
    for (int i = 0; i < 2 * 1600; i++) x[i] = (float)(i % 17) / 17.0f - 0.5f;
    w2v_input in = {2, 1600, x, NULL, NULL};
    w2v_run run = {0, 0, 0, 0};
    w2v_model_forward(m, &in, &run, logits, err, sizeof err);
    printf("%d labels, logit %.3f\n", c.num_labels, logits[0]);
    w2v_model_free(m);
    w2v_config_free(&c);
    return 0;
}
C
    export PKG_CONFIG_SYSROOT_DIR="$T/root" PKG_CONFIG_PATH="$T/root/usr/lib/pkgconfig"
    run cc -o prog prog.c $(pkg-config --cflags w2v) $(pkg-config --libs w2v)
    assert_success
    run ./prog
    assert_success
    assert_output --regexp "^[0-9]+ labels, logit -?[0-9]"
}
