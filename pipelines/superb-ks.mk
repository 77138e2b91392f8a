# The seed experiment: facebook/wav2vec2-base fine-tuned on SUPERB keyword
# spotting (Speech Commands v0.01, 12 classes) with the hyperparameters of
# Hugging Face's published run that reached 98.2% validation accuracy
# (examples/pytorch/audio-classification): learning rate 3e-5, batch 32 with
# 4 accumulation steps, warmup ratio 0.1, 5 epochs, 1 s random crops,
# evaluation and a checkpoint every epoch, the best by accuracy kept, the
# feature encoder frozen, no attention mask (as wav2vec2-base's extractor).
#
#   make -f pipelines/superb-ks.mk MODEL=path/to/wav2vec2-base [OUT=...] [-j2]
#
# MODEL is a Hugging Face model directory (config.json and model.safetensors,
# or pytorch_model.bin, converted first) of any family the programs run:
# wav2vec2, hubert (distilhubert too), data2vec-audio, wavlm, as its
# config.json's model_type says; set TITLE for the plots.  Every variable
# overrides.

OUT         ?= runs/superb-ks
MODEL       ?= facebook/wav2vec2-base
DATA_URL    ?= http://download.tensorflow.org/data/speech_commands_v0.01.tar.gz
DATA_SHA256 ?= 743935421bb51cccdb6bdd152e04c5c70274e935c82119ad7faeec31780d811d
TEST_URL    ?= http://download.tensorflow.org/data/speech_commands_test_set_v0.01.tar.gz
TEST_SHA256 ?=

LEARNING_RATE ?= 3e-5
BATCH_SIZE    ?= 32
GRAD_ACCUM    ?= 4
WARMUP_RATIO  ?= 0.1
EPOCHS        ?= 5
SEED          ?= 0
TRAIN_OPTS    ?= --freeze-feature-encoder --load-best-model-at-end --logging-steps 10 --save-total-limit 3
TITLE         ?= wav2vec2-base, SUPERB KS

include $(dir $(lastword $(MAKEFILE_LIST)))ks.mk

# The pretrained model, its weights as safetensors (converted from
# pytorch_model.bin when that is all the directory has).
$(OUT)/init/model.safetensors:
	@test -f $(MODEL)/config.json || { echo "superb-ks.mk: no model at MODEL=$(MODEL) (a Hugging Face directory: wav2vec2, hubert, data2vec-audio or wavlm)" >&2; exit 1; }
	rm -rf $(@D).tmp && mkdir -p $(@D).tmp
	cp $(MODEL)/config.json $(@D).tmp/
	if [ -f $(MODEL)/preprocessor_config.json ]; then cp $(MODEL)/preprocessor_config.json $(@D).tmp/; fi
	if [ -f $(MODEL)/model.safetensors ]; then cp $(MODEL)/model.safetensors $(@D).tmp/; \
	else w2v-convert $(MODEL)/pytorch_model.bin $(@D).tmp/model.safetensors; fi
	rm -rf $(@D) && mv $(@D).tmp $(@D)
