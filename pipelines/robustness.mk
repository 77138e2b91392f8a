# How demo runs hold up where their training never was (README, under
# "Two commands"): copies of the test split changed by ks-augment --seed
# 99, and the test split of a corpus spoken by voices training never had.
#
#   make -f pipelines/demo.mk OUT=runs/noaug AUGMENT_OPTS=
#   make -f pipelines/robustness.mk RUNS='runs/demo runs/noaug' [-j2]
#
# RUNS are finished demo.mk outputs (each with model/ and test.examples) of
# one corpus; the sets are made from the first one's test split and
# training clips.  Each run gets RUN/robust/CONDITION.json (w2v-eval's
# metrics); $(OUT)/table.md lists the accuracies, a row per run.  The
# babble recording is made by babble.py, in PYTHON with numpy.

RUNS    ?= runs/demo
OUT     ?= runs/robustness
THREADS ?= $(shell nproc)
PYTHON  ?= python3
FIRST   := $(firstword $(RUNS))
PIPES   := $(dir $(lastword $(MAKEFILE_LIST)))

# The conditions, each ks-augment's options on the test split:
#   babble-0-10, babble-10-20: babble at 0-10 and 10-20 dB, a noise the
#       corpus lacks (its _background_noise_ is white, pink, brown, tap, hum)
#   rooms: every clip in one of 32 simulated rooms (the demo trains without)
#   slower, faster: speech 15-20% slower or faster, beyond training's
#       0.9-1.1 speed draws
SETS := babble-0-10 babble-10-20 rooms slower faster
AUG_babble-0-10  := --noise $(OUT)/babble --noise-prob 1 --snr-db 0,10
AUG_babble-10-20 := --noise $(OUT)/babble --noise-prob 1 --snr-db 10,20
AUG_rooms        := --reverb 1
AUG_slower       := --speed 0.8,0.85
AUG_faster       := --speed 1.15,1.2
# Voices training never had: other languages' espeak-ng voices reading
# the English words (the demo's speak English, a tenth with Germanic
# accents), from another corpus seed.
VOICES_OPTS ?= SPEAKERS=300 SYNTH_SEED=7 SYNTH_OPTS='--voices fr,es,it,pl,pt,ro'
CONDITIONS := test voices $(SETS)

.PHONY: all
.DELETE_ON_ERROR:
.SECONDARY: $(SETS:%=$(OUT)/%.examples)
all: $(OUT)/table.md

# Babble: BABBLE_CLIPS _unknown_ clips of the training split, each at a
# random place in 60 s, summed (800: about 13 talkers at once).
BABBLE_CLIPS ?= 800
$(OUT)/babble/babble.wav: $(FIRST)/data/train.tsv
	mkdir -p $(@D)
	$(PYTHON) $(PIPES)babble.py --seed 99 --clips $(BABBLE_CLIPS) --seconds 60 $(FIRST)/data $< $@

$(OUT)/babble-0-10.examples $(OUT)/babble-10-20.examples: $(OUT)/babble/babble.wav
$(OUT)/%.examples: $(FIRST)/test.examples
	mkdir -p $(@D)
	ks-augment --quiet --seed 99 -j$(THREADS) $(AUG_$*) -o $@ $<

$(OUT)/test.examples: $(FIRST)/test.examples
	mkdir -p $(@D) && ln -sf $(abspath $<) $@
$(OUT)/voices.examples:
	$(MAKE) -f $(PIPES)demo.mk OUT=$(OUT)/voices $(VOICES_OPTS) $(OUT)/voices/test.examples
	ln -sf $(abspath $(OUT)/voices/test.examples) $@

# Every run on every condition.
define RUN_RULES
$(1)/robust/%.json: $(OUT)/%.examples $(1)/model/model.safetensors
	mkdir -p $$(@D)
	w2v-eval --quiet --threads $(THREADS) -m $(1)/model --json $$@ $$<
endef
$(foreach r,$(RUNS),$(eval $(call RUN_RULES,$(r))))

RESULTS := $(foreach r,$(RUNS),$(foreach c,$(CONDITIONS),$(r)/robust/$(c).json))
$(OUT)/table.md: $(RESULTS)
	{ printf '| run |'; printf ' %s |' $(CONDITIONS); echo; \
	  printf '|---|'; printf -- '---|%.0s' $(CONDITIONS); echo; \
	  for r in $(RUNS); do \
	    printf '| %s |' "$$r"; \
	    for c in $(CONDITIONS); do \
	      sed 's/.*"accuracy": *\([-0-9.e]*\).*/\1/' "$$r/robust/$$c.json" | awk '{printf " %.2f%% |", 100 * $$1}'; \
	    done; echo; \
	  done; } > $@.tmp && mv $@.tmp $@
	cat $@
