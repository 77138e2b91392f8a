#!/usr/bin/python3
# The scaling model of README "Training on many processes or machines":
# the seed's job (wav2vec2-base, encoder frozen, batches of 32 x 4
# accumulated, five epochs of 51,094 clips) on N machines of two cores,
# from figures measured on one (w2v-train --threads 2, fp32 and --bf16),
# a ring allreduce of the trainable parameters once per optimizer step at
# the link's full rate, and, "with overlap", the allreduce hidden behind
# the backward of the step's last micro-batch (not implemented: a
# prediction).  It assumes a machine keeps its clips/s when its share of a
# micro-batch shrinks to 32/N clips, which flatters large N.
S = (94_571_660 - 4_200_448) * 4          # bytes allreduced a step: the trainable parameters, frozen encoder
clips = 5 * 51_094                        # the seed's job
steps = 5 * (51_094 // 32 // 4)           # Trainer: optimizer steps, batches of 32 x 4 accumulated
R = {"fp32": 5.2, "bf16": 14.1}           # clips/s of one 2-core machine, guide configuration (measured)
BWD = 0.5                                 # the backward's share of a micro-batch (measured: 0.50 fp32, 0.53 bf16)
print("S = %.1f MB, %d steps" % (S / 1e6, steps))
print("| precision | link | machines | compute s/step | allreduce s/step | efficiency (overlap) | hours (overlap) |")
print("|---|---|---|---|---|---|---|")
for p, r in R.items():
    print("| %s | - | 1 | %.1f | 0 | 100%% | %.1f |" % (p, 128 / r, steps * 128 / r / 3600))
    for gb in (10, 25):
        for n in (4, 8, 16):
            tc = 128 / (n * r)
            tar = 2 * (n - 1) / n * S / (gb * 1e9 / 8)
            hidden = min(tar, BWD * 32 / (n * r))
            e0, e1 = tc / (tc + tar), tc / (tc + tar - hidden)
            h0, h1 = steps * (tc + tar) / 3600, steps * (tc + tar - hidden) / 3600
            print("| %s | %d Gb/s | %d | %.2f | %.2f | %.0f%% (%.0f%%) | %.2f (%.2f) |" % (p, gb, n, tc, tar, 100 * e0, 100 * e1, h0, h1))
