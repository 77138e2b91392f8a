#!/usr/bin/env bats
# w2v-plot: training curves and confusion matrices as PNG, through gnuplot.

load helpers
load train_helpers

setup_file() {
    export PATH="${W2V_BIN:-$BATS_TEST_DIRNAME/../../build/bin}:$PATH"
}

# png FILE [RRGGBB...]: "WIDTH HEIGHT" from the IHDR after checking the
# signature, then for each colour the number of pixels within 40 (per
# channel) of it.  Decodes the image (RGB, RGBA or palette, 8 bits, as
# pngcairo and libgd write them) with zlib and numpy alone.
png() {
    "$PY" - "$@" << 'EOF'
import struct, sys, zlib
import numpy as np
path, want = sys.argv[1], [bytes.fromhex(c) for c in sys.argv[2:]]
d = open(path, "rb").read()
assert d[:8] == b"\x89PNG\r\n\x1a\n", "no PNG signature"
assert d[12:16] == b"IHDR", "no IHDR first"
w, h, depth, ctype = struct.unpack(">IIBB", d[16:26])
print(w, h)
if not want: sys.exit(0)
pos, idat, plte = 8, b"", None
while pos < len(d):
    n, kind = struct.unpack(">I4s", d[pos:pos + 8])
    body = d[pos + 8:pos + 8 + n]
    if kind == b"IDAT": idat += body
    if kind == b"PLTE": plte = np.frombuffer(body, np.uint8).reshape(-1, 3)
    pos += 12 + n
assert depth == 8 and ctype in (2, 3, 6), (depth, ctype)
bpp = {2: 3, 3: 1, 6: 4}[ctype]
stride = w * bpp
raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, stride + 1)
img, prev = np.zeros((h, stride), np.uint8), np.zeros(stride, np.uint8)
for y in range(h):
    f, line = int(raw[y, 0]), raw[y, 1:].copy()
    if f == 2: line += prev
    elif f:  # Sub, Average, Paeth depend on the bytes just decoded: one at a time
        line, up = line.tolist(), [0] * bpp + prev.tolist()
        line = [0] * bpp + line
        for i in range(bpp, stride + bpp):
            a, b, c = line[i - bpp], up[i], up[i - bpp]
            if f == 1: line[i] = (line[i] + a) & 255
            elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
            else:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        line = np.array(line[bpp:], np.uint8)
    img[y] = prev = line
rgb = plte[img] if ctype == 3 else img.reshape(h, w, bpp)[:, :, :3]
rgb = rgb.reshape(-1, 3).astype(int)
for c in want:
    print(int((np.abs(rgb - np.frombuffer(c, np.uint8).astype(int)).max(axis=1) <= 40).sum()))
EOF
}

# The colours of the curves and of a full cell.
BLUE=1f77b4 RED=d62728 GREEN=2ca02c DARK=08306b

metrics() { # a run of 3 epochs of 10 steps, logged every 2 steps, eval at each epoch end
    "$PY" -c '
import json, math
for s in range(2, 31, 2):
    print(json.dumps({"step": s, "epoch": s / 10, "loss": 2.5 * math.exp(-s / 10) + 0.1, "learning_rate": 3e-5,
                      "grad_norm": 1.5, "clips_per_s": 50.0}))
    if s % 10 == 0:
        print(json.dumps({"step": s, "epoch": s / 10, "eval_loss": 1.0 / (s / 10) ** 0.5, "eval_accuracy": 0.3 * s / 10,
                          "eval_examples": 100}))
'
}

@test "training: a PNG of the loss, eval loss and eval accuracy curves, 900x600 by default" {
    metrics > metrics.jsonl
    run w2v-plot training metrics.jsonl -o training.png
    assert_success
    assert_output ""
    run png training.png $BLUE $RED $GREEN
    assert_success
    assert_line --index 0 "900 600"
    read -r _ _ blue red green <<< "$(echo $output)"
    ((blue > 500 && red > 100 && green > 100)) || fail "curves missing: $output"
}

@test "training: a run without eval lines has the loss curve only; --size sets the size" {
    metrics | grep -v eval_ > metrics.jsonl
    w2v-plot training --size 640x480 metrics.jsonl -o t.png
    run png t.png $BLUE $RED $GREEN
    assert_success
    assert_line --index 0 "640 480"
    (($(sed -n 2p <<< "$output") > 300)) || fail "no loss curve: $output"
    assert_line --index 2 0
    assert_line --index 3 0
}

@test "training: a single line, blank lines and missing fields draw what there is" {
    printf '{"step": 5, "loss": 1.5}\n' > one.jsonl
    run w2v-plot training --size 600x400 one.jsonl -o one.png
    assert_success
    run png one.png $BLUE
    assert_line --index 0 "600 400"
    (($(sed -n 2p <<< "$output") > 20)) || fail "the lone loss is not drawn: $output"

    # blank lines skipped; a line without a step is left out with a warning;
    # eval_loss that is no number counts as absent
    printf '\n{"step": 10, "eval_accuracy": 0.5}\n  \n{"epoch": 1, "loss": 2}\n{"step": 20, "eval_accuracy": 0.75, "eval_loss": null}\n\n' > eval.jsonl
    run w2v-plot training --size 600x400 eval.jsonl -o eval.png
    assert_success
    assert_output 'w2v-plot: eval.jsonl: 1 line without a numeric "step" left out'
    run png eval.png $BLUE $RED $GREEN
    assert_line --index 1 0
    assert_line --index 2 0
    (($(sed -n 4p <<< "$output") > 50)) || fail "no eval accuracy: $output"
}

@test "training: malformed JSON is an error naming the file and line; nothing is written" {
    printf '{"step": 1, "loss": 2}\n\n{"step": 2, "loss": \n' > bad.jsonl
    run w2v-plot training bad.jsonl -o out.png
    assert_failure 1
    assert_output --regexp '^w2v-plot: bad\.jsonl: line 3: malformed JSON: '
    [ "$(ls -A)" = bad.jsonl ] || fail "left behind: $(ls -A)"
    run w2v-plot training -o out.png <<< $'{"step": 1, "loss": 2}\n[1, 2]'
    assert_failure 1
    assert_output "w2v-plot: stdin: line 2: not a JSON object"
    run w2v-plot training -o out.png <<< '{"epoch": 1, "grad_norm": 2}'
    assert_failure 1
    assert_output --partial "w2v-plot: stdin: nothing to plot"
    run w2v-plot training -o out.png < /dev/null
    assert_failure 1
    [ "$(ls -A)" = bad.jsonl ] || fail "left behind: $(ls -A)"
}

# eval.json as w2v-eval --json writes it, for labels $1 (comma-separated)
# and confusion $2 (a Python list of rows).
eval_json() {
    "$PY" -c '
import json, sys
labels, conf = sys.argv[1].split(","), eval(sys.argv[2])
n = sum(map(sum, conf)); ok = sum(conf[i][i] for i in range(len(conf)))
print(json.dumps({"examples": n, "accuracy": ok / n, "loss": 0.5, "macro_f1": 0.5, "labels": labels,
                  "per_class": {}, "confusion": conf}))
' "$@"
}

@test "confusion: a PNG, 700x650 by default, from w2v-eval's JSON on a file or stdin" {
    eval_json yes,no,_silence_,_unknown_ '[[50,2,0,1],[3,40,0,0],[0,0,45,5],[2,1,4,60]]' > eval.json
    run w2v-plot confusion eval.json -o c.png
    assert_success
    assert_output ""
    run png c.png
    assert_output "700 650"
    w2v-plot confusion --title eval.json -o c2.png < eval.json
    cmp c.png c2.png
}

@test "confusion: cells are coloured by the fraction of their row, not by count" {
    # Two full diagonal cells, whatever their counts, are as dark as each
    # other; a row split in halves has no dark cell.
    dark() { eval_json a,b "$1" | w2v-plot confusion --size 400x400 -o m.png && png m.png $DARK | sed -n 2p; }
    even=$(dark '[[5,0],[0,5]]')
    uneven=$(dark '[[500,0],[0,1]]')
    half=$(dark '[[50,50],[0,5]]')
    ((even > 5000)) || fail "full cells are not dark: $even"
    ((uneven * 10 > even * 9 && uneven * 10 < even * 11)) || fail "dark area $uneven (counts 500, 1) vs $even (5, 5)"
    ((half * 10 > even * 4 && half * 10 < even * 6)) || fail "dark area $half with one row split vs $even"
}

@test "confusion: the accuracy comes from the matrix when the file has none; bad matrices are errors" {
    echo '{"labels": ["a", "b"], "confusion": [[3, 1], [0, 4]]}' > m.json
    run w2v-plot confusion --script m.json
    assert_success
    assert_output --partial "set title 'm.json'.\"\\n\".'accuracy 0.8750, 8 examples'"
    run w2v-plot confusion --script --title $'two\nlines\tand a tab' m.json
    assert_output --partial "set title 'two'.\"\\n\".'lines and a tab'.\"\\n\".'accuracy 0.8750, 8 examples'"
    run w2v-plot confusion -o x.png <<< '{"labels": ["a", "b"], "confusion": [[3, 1], [0]]}'
    assert_failure 1
    assert_output 'w2v-plot: stdin: "confusion"[1] is not an array of 2 counts (one per label)'
    run w2v-plot confusion -o x.png <<< '{"labels": ["a", "b"], "confusion": [[3, 1], [0, -1]]}'
    assert_failure 1
    assert_output 'w2v-plot: stdin: "confusion"[1][1] is not a count (an integer >= 0)'
    run w2v-plot confusion -o x.png <<< '{"labels": ["a", "b"], "confusion": [[9223372036854775807, 1], [0, 0]]}'
    assert_failure 1
    assert_output 'w2v-plot: stdin: the counts of "confusion" add up past 9223372036854775807'
    run w2v-plot confusion -o x.png <<< '{"labels": [], "confusion": []}'
    assert_failure 1
    assert_output --partial 'no "labels" array'
    run w2v-plot confusion -o x.png <<< '{"labels": ["a"], "confusion": [[1]]'
    assert_failure 1
    assert_output --regexp '^w2v-plot: stdin: line 2: malformed JSON: '
    [ ! -e x.png ]
}

@test "titles and labels are text: quotes, underscores and gnuplot syntax pass through unharmed" {
    eval_json "_silence_,it's,@x" '[[1,0,0],[0,1,0],[0,0,1]]' > e.json
    run w2v-plot confusion --title "x'; system('touch pwned'); print '\`touch pwned2\`" e.json -o e.png
    assert_success
    assert_output ""
    [ ! -e pwned ] && [ ! -e pwned2 ]
    # noenhanced: _silence_ is not set as "silence" in subscript
    w2v-plot confusion --script e.json > e.gp
    [ "$(grep -c 'set terminal png.* noenhanced ' e.gp)" = 2 ]
    grep -qF "'_silence_' 0, 'it''s' 1, '@x' 2" e.gp
}

@test "--script writes the gnuplot script, which gnuplot turns into the same picture" {
    metrics > metrics.jsonl
    w2v-plot training --script metrics.jsonl -o plot.gp
    gnuplot < plot.gp > by-hand.png
    w2v-plot training metrics.jsonl -o direct.png
    cmp by-hand.png direct.png
}

@test "-o - writes the PNG to stdout, never to a terminal" {
    metrics > metrics.jsonl
    w2v-plot training metrics.jsonl -o - > a.png
    w2v-plot training metrics.jsonl > b.png
    png a.png > /dev/null
    cmp a.png b.png
    run script -qec "w2v-plot training $T/metrics.jsonl -o -" /dev/null
    assert_failure 2
    assert_output --partial "w2v-plot: refusing to write a binary stream to a terminal"
}

@test "without pngcairo the png terminal draws the picture" {
    mkdir bin
    printf '#!/bin/sh\nsed "s/'\''pngcairo'\''/'\''no-such-terminal'\''/" | exec %s "$@"\n' "$(command -v gnuplot)" > bin/gnuplot
    chmod +x bin/gnuplot
    metrics > metrics.jsonl
    PATH="$T/bin:$PATH" w2v-plot training --size 600x400 metrics.jsonl -o gd.png
    run png gd.png $GREEN
    assert_line --index 0 "600 400"
    (($(sed -n 2p <<< "$output") > 50)) || fail "no eval accuracy: $output"
}

@test "gnuplot missing or failing is a clear error, and leaves nothing" {
    metrics > metrics.jsonl
    run env PATH=/nonexistent "$(command -v w2v-plot)" training metrics.jsonl -o t.png
    assert_failure 1
    assert_output "w2v-plot: cannot run gnuplot: not found on PATH (Debian: apt-get install gnuplot-nox)"
    mkdir bin
    printf '#!/bin/sh\necho "line 3: something broke" >&2\nexit 1\n' > bin/gnuplot
    chmod +x bin/gnuplot
    PATH="$T/bin:$PATH" run w2v-plot training metrics.jsonl -o t.png
    assert_failure 1
    assert_output $'w2v-plot: gnuplot: line 3: something broke\nw2v-plot: gnuplot failed: exit status 1'
    [ "$(ls -A)" = "$(printf 'bin\nmetrics.jsonl')" ] || fail "left behind: $(ls -A)"
}

@test "usage errors: mode, input count, --size" {
    run w2v-plot
    assert_failure 2
    assert_output --partial "w2v-plot: no mode: 'training' or 'confusion'"
    run w2v-plot histogram x
    assert_failure 2
    assert_output --partial "w2v-plot: unknown mode 'histogram'"
    run w2v-plot training a b
    assert_failure 2
    assert_output --partial "one input file at most"
    for s in 10x10 900 900x 900x600x2 ax600; do
        run w2v-plot training --size "$s" x
        assert_failure 2
        assert_output --partial "w2v-plot: --size: not WIDTHxHEIGHT"
    done
}

@test "the real thing: w2v-train's metrics.jsonl and w2v-eval's JSON" {
    make_corpus
    mini_model m0 --labels-from "$DATA/train.ex"
    w2v-train --quiet -m m0 -o run --max-steps 50 --learning-rate 2e-3 --logging-steps 5 \
        --eval "$DATA/valid.b" "$DATA/train.b"
    w2v-eval -m run --json eval.json "$DATA/valid.b" > /dev/null
    run w2v-plot training --size 600x400 run/metrics.jsonl -o t.png
    assert_success
    assert_output ""
    run png t.png $BLUE $RED $GREEN
    assert_line --index 0 "600 400"
    read -r _ _ blue red green <<< "$(echo $output)"
    ((blue > 300 && red > 50 && green > 50)) || fail "curves missing: $output"
    run w2v-plot confusion eval.json -o c.png
    assert_success
    assert_output ""
    run png c.png
    assert_output "700 650"
}
