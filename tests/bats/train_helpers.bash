# A small corpus and a small model for the model programs' suites, made
# once per suite (setup_file): ks-synth -> ks-fetch -> ks-extract.

# A model of the demo's shape, shrunk so that a training step takes
# milliseconds: a filterbank encoder of 4 bands (16 and 4 channels), one
# transformer layer.
mini_model() { # DIR [w2v-init options...]
    local dir=$1
    shift
    w2v-init --quiet --preset small --filterbank --set 'conv_dim=[16,4]' --set hidden_size=32 \
        --set num_hidden_layers=1 --set num_attention_heads=2 --set intermediate_size=64 \
        --set num_conv_pos_embeddings=8 --set num_conv_pos_embedding_groups=4 \
        --set classifier_proj_size=8 -o "$dir" "$@"
}

# Sets $DATA: train.ex, valid.ex (examples, 0.5 s) and train.b (3 epochs of
# batches of 8, shuffled), valid.b; labels of SUPERB KS.
make_corpus() {
    DATA="$BATS_FILE_TMPDIR/data"
    [ -f "$DATA/train.b" ] && return 0
    mkdir -p "$DATA"
    (
        cd "$DATA" || exit 1
        ks-synth --quiet --speakers 8 --per-word 1 --noise-seconds 2 corpus > /dev/null &&
            ks-fetch --quiet --url corpus/speech_commands_v0.01.tar.gz \
                --test-url corpus/speech_commands_test_set_v0.01.tar.gz kws > /dev/null &&
            ks-extract --quiet --max-length 8000 --slice-long 0.5 kws/train.tsv > train.ex &&
            ks-extract --quiet --max-length 8000 kws/validation.tsv > valid.ex &&
            ks-batch --quiet -b 8 --shuffle --seed 1 --epochs 3 train.ex > train.b &&
            ks-batch --quiet -b 8 valid.ex > valid.b
    )
}

# The training suites' setup: the programs on PATH and the corpus, once per
# suite (setup_file); each test in its own scratch directory (setup).
train_setup_file() {
    export PATH="${W2V_BIN:-$BATS_TEST_DIRNAME/../../build/bin}:$PATH"
    make_corpus
}
train_setup() {
    T="$BATS_TEST_TMPDIR"
    cd "$T" || return 1
    DATA="$BATS_FILE_TMPDIR/data"
}
