# The stages the keyword-spotting pipelines share (included by demo.mk and
# superb-ks.mk): fetch and split the corpus, extract the splits, train,
# evaluate on the test split, draw the pictures.  Every stage is a file
# target, so a second `make` does only what is out of date.
#
# The including file sets OUT, DATA_URL, TEST_URL (and their SHA256), the
# training hyperparameters below, and a rule for $(OUT)/init/model.safetensors
# (the model training starts from).

THREADS         ?= $(shell nproc)
MAX_LENGTH      ?= 16000
SLICE_LONG      ?= 1
BATCH_SIZE      ?= 32
EVAL_BATCH_SIZE ?= 32
EPOCHS          ?= 5
LEARNING_RATE   ?= 3e-5
WARMUP_RATIO    ?= 0.1
GRAD_ACCUM      ?= 1
WEIGHT_DECAY    ?= 0
SEED            ?= 42
BATCH_OPTS      ?= --shuffle --crop random
# ks-augment's options (noise from NOISE_DIR, the corpus's own
# _background_noise_); empty: the batches go to w2v-train as they are.
AUGMENT_OPTS    ?=
NOISE_DIR       ?= $(OUT)/data/speech_commands_v0.01/_background_noise_
TRAIN_OPTS      ?=
# Training on several processes or machines: e.g. MPIRUN="mpirun -np 4
# --hostfile hosts" with THREADS per rank (the stream still comes from one
# pipe: rank 0 reads it); --zero-stage 1 added to TRAIN_OPTS splits the
# optimizer state over the ranks.
MPIRUN          ?=
TITLE           ?= $(notdir $(OUT))

.PHONY: all
.DELETE_ON_ERROR:
all: $(OUT)/eval.json $(OUT)/training.png $(OUT)/confusion.png

# The corpus, verified and split as SUPERB splits it.
$(OUT)/data/train.tsv:
	ks-fetch $(if $(DATA_SHA256),--sha256 $(DATA_SHA256)) $(if $(TEST_SHA256),--test-sha256 $(TEST_SHA256)) \
	  --url $(DATA_URL) --test-url $(TEST_URL) $(@D)
$(OUT)/data/validation.tsv $(OUT)/data/test.tsv: $(OUT)/data/train.tsv

# The three splits (in parallel under make -j): normalised 16 kHz examples.
# In training, the long background-noise files of _silence_ are cut into
# windows; the evaluation splits hold clips of a second.
$(OUT)/train.examples: $(OUT)/data/train.tsv
	ks-extract --quiet -j$(THREADS) --max-length $(MAX_LENGTH) --slice-long $(SLICE_LONG) -o $@ $<
$(OUT)/%.examples: $(OUT)/data/%.tsv
	ks-extract --quiet -j$(THREADS) --max-length $(MAX_LENGTH) -o $@ $<
$(OUT)/validation.batches: $(OUT)/validation.examples
	ks-batch --quiet -b $(EVAL_BATCH_SIZE) -o $@ $<

# Training: one stream of batches for the whole run, evaluated and saved
# at every epoch end (TRAIN_OPTS may ask for the best checkpoint instead of
# the last as the final model).
$(OUT)/run/model.safetensors: $(OUT)/train.examples $(OUT)/validation.batches $(OUT)/init/model.safetensors
	rm -rf $(@D)
	ks-batch --quiet -b $(BATCH_SIZE) $(BATCH_OPTS) --max-length $(MAX_LENGTH) --epochs $(EPOCHS) --seed $(SEED) \
	    $(OUT)/train.examples | \
	  $(if $(AUGMENT_OPTS),ks-augment --quiet --seed $(SEED) $(AUGMENT_OPTS) |) \
	  $(MPIRUN) w2v-train -m $(OUT)/init -o $(@D) --threads $(THREADS) --seed $(SEED) \
	    --learning-rate $(LEARNING_RATE) --warmup-ratio $(WARMUP_RATIO) --weight-decay $(WEIGHT_DECAY) \
	    --gradient-accumulation-steps $(GRAD_ACCUM) --eval $(OUT)/validation.batches $(TRAIN_OPTS)

# The final model alone, as transformers loads it.
$(OUT)/model/model.safetensors: $(OUT)/run/model.safetensors
	rm -rf $(@D).tmp && mkdir -p $(@D).tmp
	cp $(<D)/config.json $(<D)/preprocessor_config.json $(<D)/model.safetensors $(@D).tmp/
	rm -rf $(@D) && mv $(@D).tmp $(@D)

# The held-out test split: accuracy, loss, per-class figures, confusion.
$(OUT)/eval.json: $(OUT)/model/model.safetensors $(OUT)/test.examples
	w2v-eval --threads $(THREADS) -m $(OUT)/model --json $@ --predictions $(OUT)/predictions.jsonl \
	  $(OUT)/test.examples | tee $(OUT)/eval.txt

$(OUT)/training.png: $(OUT)/run/model.safetensors
	w2v-plot training --title "$(TITLE): training" -o $@ $(OUT)/run/metrics.jsonl
$(OUT)/confusion.png: $(OUT)/eval.json
	w2v-plot confusion --title "$(TITLE): test split" -o $@ $<
