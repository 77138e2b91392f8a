#!/usr/bin/python3
"""torch_w2v: Wav2Vec2ForSequenceClassification in plain torch.nn, timed the
way bench/w2v-bench times libw2v, for a side-by-side benchmark; HuBERT's,
data2vec-audio's and WavLM's too (config.json's model_type: the HuBERT
feature projection without its LayerNorm; data2vec-audio's LayerNorm in
every conv layer and its stack of plain positional convs; WavLM's gated
relative position bias).

The model is built from torch.nn layers (transformers is not needed) with
Hugging Face's parameter names, so a transformers checkpoint loads into it
with load_state_dict(strict=True) and the parameter count can be compared
exactly with the C model's.  What it computes is HF's math as
../shared/golden/README.md describes it ("What a re-implementation must
match"), without SpecAugment: the benchmark leaves SpecAugment out on both
sides (masked_spec_embed still exists, as in facebook/wav2vec2-base, so the
counts agree), and passes no attention mask.  --verify-golden checks the
forward pass and every gradient against the golden data (with the case's
attention mask where it has one).

torch 1.13's CPU GELU backward returns garbage when the incoming gradient is
a transposed view of a contiguous forward input (pytorch/pytorch#112006), as
happens at the output of the conv feature encoder.  gelu() below makes such
gradients contiguous first, as the golden generator does: it fixes the
gradients and costs one copy of a small tensor per step.

--bf16 runs the forward pass under torch.autocast("cpu", dtype=torch.bfloat16)
(the loss, the backward and the optimizer outside it, as usual).  torch
1.13's CPU autocast hands bf16 input to group_norm and layer_norm, which then
fail ("expected scalar type BFloat16 but found Float"); later torch releases
run those two in fp32 under autocast, and so does norm() below.

Usage: bench/torch_w2v.py [--mode infer|train|train-frozen] [--config DIR]
           [--batch N] [--samples N] [--warmup N] [--iters N] [--threads N] [--bf16]
       bench/torch_w2v.py --verify-golden ../shared/golden/base-tiny
Prints one JSON line (the fields of w2v-bench's, with "impl": "torch").
"""
import argparse
import json
import math
import os
import resource
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# facebook/wav2vec2-base as Wav2Vec2ForSequenceClassification sees it (the
# keys that matter for the math; golden/base-full-config.json has them all).
BASE = {
    "conv_dim": [512] * 7, "conv_kernel": [10, 3, 3, 3, 3, 2, 2], "conv_stride": [5, 2, 2, 2, 2, 2, 2],
    "conv_bias": False, "feat_extract_norm": "group", "hidden_size": 768, "num_hidden_layers": 12,
    "num_attention_heads": 12, "intermediate_size": 3072, "num_conv_pos_embeddings": 128,
    "num_conv_pos_embedding_groups": 16, "do_stable_layer_norm": False, "layer_norm_eps": 1e-5,
    "classifier_proj_size": 256, "use_weighted_layer_sum": False, "hidden_dropout": 0.1,
    "attention_dropout": 0.1, "activation_dropout": 0.0, "feat_proj_dropout": 0.1, "layerdrop": 0.0,
    "mask_time_prob": 0.05, "mask_feature_prob": 0.0, "initializer_range": 0.02, "num_labels": 12,
    "model_type": "wav2vec2", "feat_proj_layer_norm": True, "num_buckets": 320, "max_bucket_distance": 800,
    "conv_pos_kernel_size": 19,
}
PREFIX = {"wav2vec2": "wav2vec2", "hubert": "hubert", "wavlm": "wavlm", "data2vec-audio": "data2vec_audio"}
MODES = ("infer", "train", "train-frozen")


def gelu(x):
    """Exact (erf) GELU whose backward always gets a contiguous gradient."""
    y = F.gelu(x)
    if y.requires_grad:
        y.register_hook(lambda g: g.contiguous())
    return y


def norm(module, x):
    """A GroupNorm or LayerNorm, in fp32 under autocast (torch >= 2.0 does it
    itself; torch 1.13 fails on bf16 input)."""
    if torch.is_autocast_cpu_enabled():
        with torch.autocast("cpu", enabled=False):
            return module(x.float())
    return module(x)


class ConvLayer(nn.Module):
    def __init__(self, c, i):
        super().__init__()
        cin = c["conv_dim"][i - 1] if i else 1
        cout = c["conv_dim"][i]
        self.conv = nn.Conv1d(cin, cout, c["conv_kernel"][i], stride=c["conv_stride"][i], bias=c["conv_bias"])
        self.channels_last_norm = c["feat_extract_norm"] == "layer" or c["model_type"] == "data2vec-audio"
        if self.channels_last_norm:
            self.layer_norm = nn.LayerNorm(cout)  # eps 1e-5 whatever the config says, as HF
        elif i == 0:
            self.layer_norm = nn.GroupNorm(cout, cout)
        else:
            self.layer_norm = None

    def forward(self, x):
        x = self.conv(x)
        if self.channels_last_norm:
            x = norm(self.layer_norm, x.transpose(1, 2)).transpose(1, 2)
        elif self.layer_norm is not None:
            x = norm(self.layer_norm, x)
        return gelu(x)


class FeatureEncoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv_layers = nn.ModuleList(ConvLayer(c, i) for i in range(len(c["conv_dim"])))

    def forward(self, x):
        x = x[:, None]
        for layer in self.conv_layers:
            x = layer(x)
        return x


class FeatureProjection(nn.Module):
    def __init__(self, c):
        super().__init__()
        if c["feat_proj_layer_norm"]:  # HuBERT's flag (distilHuBERT: off)
            self.layer_norm = nn.LayerNorm(c["conv_dim"][-1], eps=c["layer_norm_eps"])
        self.projection = nn.Linear(c["conv_dim"][-1], c["hidden_size"])
        self.dropout = nn.Dropout(c["feat_proj_dropout"])

    def forward(self, x):
        if hasattr(self, "layer_norm"):
            x = norm(self.layer_norm, x)
        return self.dropout(self.projection(x))


class PositionalConvEmbedding(nn.Module):
    def __init__(self, c):
        super().__init__()
        H, K = c["hidden_size"], c["num_conv_pos_embeddings"]
        conv = nn.Conv1d(H, H, K, padding=K // 2, groups=c["num_conv_pos_embedding_groups"])
        # torch < 2.1's weight_norm: weight_g [1, 1, K] and weight_v, as facebook/wav2vec2-base ships
        self.conv = nn.utils.weight_norm(conv, name="weight", dim=2)
        self.drop_last = K % 2 == 0

    def forward(self, x):
        x = self.conv(x.transpose(1, 2))
        if self.drop_last:
            x = x[:, :, :-1]
        return gelu(x).transpose(1, 2)


class PlainPositionalConvLayer(nn.Module):
    """data2vec-audio's: a grouped conv, a LayerNorm without weight and bias, GELU."""

    def __init__(self, c):
        super().__init__()
        H, K = c["hidden_size"], c["conv_pos_kernel_size"]
        self.conv = nn.Conv1d(H, H, K, padding=K // 2, groups=c["num_conv_pos_embedding_groups"])
        self.layer_norm = nn.LayerNorm(H, elementwise_affine=False)
        self.drop_last = K % 2 == 0

    def forward(self, x):
        x = self.conv(x)
        if self.drop_last:
            x = x[:, :, :-1]
        return gelu(norm(self.layer_norm, x.transpose(1, 2)).transpose(1, 2))


class PlainPositionalConvEmbedding(nn.Module):
    """data2vec-audio's stack of num_conv_pos_embeddings plain conv layers."""

    def __init__(self, c):
        super().__init__()
        self.layers = nn.ModuleList(PlainPositionalConvLayer(c) for _ in range(c["num_conv_pos_embeddings"]))

    def forward(self, x):
        x = x.transpose(1, 2)
        for layer in self.layers:
            x = layer(x)
        return x.transpose(1, 2)


def relpos_bucket(d, num_buckets, max_distance):
    """WavLM's bucket of each relative distance d (key - query): exact up to a
    quarter of the buckets, logarithmic to max_distance, the sign in the upper
    half."""
    half = num_buckets // 2
    exact = half // 2
    a = d.abs()
    large = exact + (torch.log(a.float() / exact) / math.log(max_distance / exact) * (half - exact)).long()
    return (d > 0).long() * half + torch.where(a < exact, a, large.clamp(max=half - 1))


class Attention(nn.Module):
    def __init__(self, c, first):
        super().__init__()
        H = c["hidden_size"]
        self.heads = c["num_attention_heads"]
        self.scaling = (H // self.heads) ** -0.5
        self.wavlm = c["model_type"] == "wavlm"
        if self.wavlm:
            self.gru_rel_pos_const = nn.Parameter(torch.ones(1, self.heads, 1, 1))
        self.k_proj, self.v_proj, self.q_proj, self.out_proj = (nn.Linear(H, H) for _ in range(4))
        if self.wavlm:
            self.gru_rel_pos_linear = nn.Linear(H // self.heads, 8)
            self.buckets = (c["num_buckets"], c["max_bucket_distance"])
            if first:  # layer 0 owns the embedding every layer's bias comes from
                self.rel_attn_embed = nn.Embedding(c["num_buckets"], self.heads)
        self.dropout = nn.Dropout(c["attention_dropout"])

    def forward(self, x, bias=None, valid=None):
        """x [B, T, H]; WavLM: bias [heads, T, T], None in layer 0, which makes
        it; valid [B, T]: the real frames, or None."""
        B, T, H = x.shape
        split = lambda t: t.view(B, T, self.heads, H // self.heads).transpose(1, 2)
        q = split(self.q_proj(x) * self.scaling)  # scaled after the bias, as HF
        k, v = split(self.k_proj(x)), split(self.v_proj(x))
        scores = q @ k.transpose(-1, -2)
        if self.wavlm:
            if bias is None:
                t = torch.arange(T)
                bias = self.rel_attn_embed(relpos_bucket(t[None, :] - t[:, None], *self.buckets)).permute(2, 0, 1)
            g = torch.sigmoid(self.gru_rel_pos_linear(split(x)).view(B, self.heads, T, 2, 4).sum(-1))
            gate = g[..., :1] * (g[..., 1:] * self.gru_rel_pos_const - 1.0) + 2.0  # [B, heads, T, 1]
            scores = scores + gate * bias
        if valid is not None:  # HF's additive mask on padded keys
            scores = scores + (~valid[:, None, None, :]).float() * torch.finfo(scores.dtype).min
        probs = self.dropout(torch.softmax(scores, dim=-1))
        return self.out_proj((probs @ v).transpose(1, 2).reshape(B, T, H)), bias


class FeedForward(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.intermediate_dropout = nn.Dropout(c["activation_dropout"])
        self.intermediate_dense = nn.Linear(c["hidden_size"], c["intermediate_size"])
        self.output_dense = nn.Linear(c["intermediate_size"], c["hidden_size"])
        self.output_dropout = nn.Dropout(c["hidden_dropout"])

    def forward(self, x):
        x = self.intermediate_dropout(gelu(self.intermediate_dense(x)))
        return self.output_dropout(self.output_dense(x))


class EncoderLayer(nn.Module):
    def __init__(self, c, first):
        super().__init__()
        H = c["hidden_size"]
        self.stable = c["do_stable_layer_norm"]
        self.attention = Attention(c, first)
        self.dropout = nn.Dropout(c["hidden_dropout"])
        self.layer_norm = nn.LayerNorm(H, eps=c["layer_norm_eps"])
        self.feed_forward = FeedForward(c)
        self.final_layer_norm = nn.LayerNorm(H, eps=c["layer_norm_eps"])

    def forward(self, h, bias, valid=None):
        if self.stable:  # pre-LN
            a, bias = self.attention(norm(self.layer_norm, h), bias, valid)
            h = h + self.dropout(a)
            return h + self.feed_forward(norm(self.final_layer_norm, h)), bias
        a, bias = self.attention(h, bias, valid)
        h = norm(self.layer_norm, h + self.dropout(a))
        return norm(self.final_layer_norm, h + self.feed_forward(h)), bias


class Encoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.stable = c["do_stable_layer_norm"]
        self.layerdrop = c["layerdrop"]
        plain = c["model_type"] == "data2vec-audio"
        self.pos_conv_embed = PlainPositionalConvEmbedding(c) if plain else PositionalConvEmbedding(c)
        self.layer_norm = nn.LayerNorm(c["hidden_size"], eps=c["layer_norm_eps"])
        self.dropout = nn.Dropout(c["hidden_dropout"])
        self.layers = nn.ModuleList(EncoderLayer(c, i == 0) for i in range(c["num_hidden_layers"]))
        self.keep_first = c["model_type"] == "wavlm"  # whose layer 0 makes the bias

    def forward(self, h, valid=None):
        """All hidden states, as HF's output_hidden_states; valid [B, T]: the
        real frames (padded ones are zeroed first), or None."""
        if valid is not None:
            h = h * valid[..., None]
        h = h + self.pos_conv_embed(h)
        if not self.stable:
            h = norm(self.layer_norm, h)
        h = self.dropout(h)
        states, bias = [h], None
        for i, layer in enumerate(self.layers):
            # LayerDrop draws for every layer, as HF does
            if not (self.training and torch.rand([]) < self.layerdrop and not (self.keep_first and i == 0)):
                h, bias = layer(h, bias, valid)
            states.append(h)
        if self.stable:
            states[-1] = norm(self.layer_norm, h)
        return states


class Backbone(nn.Module):
    def __init__(self, c):
        super().__init__()
        if c["mask_time_prob"] > 0 or c["mask_feature_prob"] > 0:
            self.masked_spec_embed = nn.Parameter(torch.rand(c["hidden_size"]))  # unused: no SpecAugment
        self.feature_extractor = FeatureEncoder(c)
        self.feature_projection = FeatureProjection(c)
        self.encoder = Encoder(c)

    def forward(self, x, valid=None):
        return self.encoder(self.feature_projection(self.feature_extractor(x).transpose(1, 2)), valid)


class Wav2Vec2Classifier(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.weighted = c["use_weighted_layer_sum"]
        if c["model_type"] not in PREFIX:
            sys.exit("torch_w2v: model_type %s is not implemented here" % c["model_type"])
        self.prefix = PREFIX[c["model_type"]]
        setattr(self, self.prefix, Backbone(c))  # HF's names: wav2vec2., hubert., data2vec_audio., wavlm.
        if self.weighted:
            self.layer_weights = nn.Parameter(torch.ones(c["num_hidden_layers"] + 1) / (c["num_hidden_layers"] + 1))
        self.projector = nn.Linear(c["hidden_size"], c["classifier_proj_size"])
        self.classifier = nn.Linear(c["classifier_proj_size"], c["num_labels"])
        self.apply(lambda m: init_weights(m, c["initializer_range"]))

    def forward(self, x, valid=None):
        """x [B, samples]; valid [B, frames]: the real frames, or None."""
        states = getattr(self, self.prefix)(x, valid)
        if self.weighted:
            h = (torch.stack(states, -1) * torch.softmax(self.layer_weights, -1)).sum(-1)
        else:
            h = states[-1]
        h = self.projector(h)
        if valid is None:
            return self.classifier(h.mean(1))
        return self.classifier((h * valid[..., None]).sum(1) / valid.sum(1, keepdim=True))

    def freeze_feature_encoder(self):
        for p in getattr(self, self.prefix).feature_extractor.parameters():
            p.requires_grad = False


def init_weights(m, std):
    """HF's _init_weights, roughly (values do not change the timing)."""
    if isinstance(m, nn.Linear):
        nn.init.normal_(m.weight, 0.0, std)
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Conv1d) and not hasattr(m, "weight_g"):
        nn.init.kaiming_normal_(m.weight)


def load_config(path):
    """BASE updated with a model directory's (or a file's) config.json."""
    c = dict(BASE)
    if path:
        with open(os.path.join(path, "config.json") if os.path.isdir(path) else path) as f:
            j = json.load(f)
        c.update({k: j[k] for k in BASE if k in j})
        if "id2label" in j:
            c["num_labels"] = len(j["id2label"])
    return c


def count_params(model):
    return sum(p.numel() for p in model.parameters())


def bench(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    t_setup = time.perf_counter()
    c = load_config(args.config)
    model = Wav2Vec2Classifier(c)
    nparams = count_params(model)
    x = torch.randn(args.batch, args.samples)  # unit variance, as normalised clips
    labels = torch.randint(0, c["num_labels"], (args.batch,))
    train = args.mode != "infer"
    if train:
        if args.mode == "train-frozen":
            model.freeze_feature_encoder()
        model.train()
        # Trainer's defaults: lr 5e-5, betas (0.9, 0.999), eps 1e-8, no weight decay, clipping at 1.0
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-5, weight_decay=0.0)
        lossf = nn.CrossEntropyLoss()
    else:
        model.eval()
    t_setup = time.perf_counter() - t_setup
    steps, phases, loss = [], [], None  # phases: forward, backward, optimizer (+ zero_grad) per timed step
    autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16)
    for it in range(args.warmup + args.iters):
        t = [time.perf_counter()]
        if train:
            with autocast():
                logits = model(x)
            loss = lossf(logits.float(), labels)
            t.append(time.perf_counter())
            loss.backward()
            t.append(time.perf_counter())
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            model.zero_grad()  # as Trainer, after the step
        else:
            with torch.no_grad(), autocast():
                model(x)
        t.append(time.perf_counter())
        if it >= args.warmup:
            steps.append(t[-1] - t[0])
            phases.append([b - a for a, b in zip(t, t[1:])])
    med = statistics.median(steps)
    out = {
        "impl": "torch", "mode": args.mode, "config": args.config or "base", "batch": args.batch,
        "samples": args.samples, "threads": torch.get_num_threads(), "warmup": args.warmup, "iters": args.iters,
        "params": nparams, "setup_s": t_setup, "median_s": med, "min_s": min(steps), "max_s": max(steps),
        "clips_per_s": args.batch / med, "rtf": med / (args.batch * args.samples / 16000),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "torch": torch.__version__,
        "precision": "bf16" if args.bf16 else "fp32",
    }
    if train:
        for i, name in enumerate(("forward_s", "backward_s", "optim_s")):
            out[name] = statistics.median(p[i] for p in phases)
        if math.isfinite(loss.item()):
            out["loss"] = loss.item()
    print(json.dumps(out, separators=(",", ":")))


# ---- golden check ----

def read_safetensors(path):
    dtypes = {"F32": np.float32, "F64": np.float64, "I64": np.int64}
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    tensors = {}
    for name, t in header.items():
        a, b = t["data_offsets"]
        tensors[name] = torch.from_numpy(np.frombuffer(data[a:b], dtype=dtypes[t["dtype"]]).reshape(t["shape"]).copy())
    return tensors, meta


def verify_golden(d):
    """Forward and backward of one golden case against HF's values."""
    torch.set_num_threads(1)
    c = load_config(d)
    model = Wav2Vec2Classifier(c)
    weights, _ = read_safetensors(os.path.join(d, "model.safetensors"))
    model.load_state_dict(weights, strict=True)
    inputs, _ = read_safetensors(os.path.join(d, "inputs.safetensors"))
    valid = None
    if "attention_mask" in inputs:  # frames of each example's real samples, as HF counts them
        n = torch.cat([inputs["attention_mask"].sum(1), torch.tensor([inputs["input_values"].shape[1]])])
        for k, st in zip(c["conv_kernel"], c["conv_stride"]):
            n = torch.div(n - k, st, rounding_mode="floor") + 1
        valid = n[:-1, None] > torch.arange(int(n[-1]))[None, :]  # [B, frames of the padded length]
    expected, meta = read_safetensors(os.path.join(d, "expected.safetensors"))
    grad_none = set(filter(None, meta.get("grad_none", "").split(",")))
    if any(".feature_extractor." in n for n in grad_none):
        model.freeze_feature_encoder()
    model.train()  # the golden configs have no dropout
    logits = model(inputs["input_values"], valid)
    loss = F.cross_entropy(logits, inputs["labels"])
    loss.backward()
    fails = []
    def check(name, got, want, tol):
        err = (got - want).abs().max().item()
        if not err <= tol:
            fails.append("%s: max |diff| %.3g > %.3g" % (name, err, tol))
        return err
    check("logits", logits.detach(), expected["logits"], 1e-6)
    check("loss", loss.detach(), expected["loss"], 1e-6)
    worst = 0.0
    for name, p in model.named_parameters():
        want = expected["grad." + name]
        if name in grad_none:
            if p.grad is not None and p.grad.abs().max() > 0:
                fails.append("grad.%s: should be None" % name)
            continue
        if name.endswith("k_proj.bias"):  # zero but for rounding: absolute only
            check("grad." + name, p.grad, want, 1e-10)
            continue
        scale = want.abs().max().item()
        worst = max(worst, check("grad." + name, p.grad, want, 1e-4 * scale + 1e-10) / (scale + 1e-30))
    print("torch_w2v: %s: %d parameters, logits, loss and %d gradients %s (worst gradient error %.2g of its scale)"
          % (d, count_params(model), len(list(model.parameters())) - len(grad_none),
             "match HF" if not fails else "DIFFER", worst))
    for f in fails:
        print("  " + f, file=sys.stderr)
    return 1 if fails else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=MODES, default="infer",
                    help="eval-mode forward under no_grad, or forward, backward and AdamW [infer]")
    ap.add_argument("--config", metavar="DIR", help="a model directory (its config.json) or a config.json "
                    "[facebook/wav2vec2-base]")
    ap.add_argument("--batch", type=int, default=8, help="clips per forward pass [8]")
    ap.add_argument("--samples", type=int, default=16000, help="samples per clip, 16 kHz [16000]")
    ap.add_argument("--warmup", type=int, default=2, help="untimed iterations first [2]")
    ap.add_argument("--iters", type=int, default=10, help="timed iterations [10]")
    ap.add_argument("--seed", type=int, default=0, help="torch.manual_seed [0]")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                    help="torch.set_num_threads [the cores available]")
    ap.add_argument("--bf16", action="store_true",
                    help='the forward pass under torch.autocast("cpu", dtype=torch.bfloat16)')
    ap.add_argument("--verify-golden", metavar="DIR", nargs="+",
                    help="check the forward pass and gradients against golden case directories (no attention mask)")
    args = ap.parse_args()
    if args.verify_golden:
        sys.exit(max(verify_golden(d) for d in args.verify_golden))
    if min(args.batch, args.samples, args.iters, args.threads) < 1 or args.warmup < 0:
        ap.error("--batch, --samples, --iters and --threads must be at least 1, --warmup at least 0")
    bench(args)


if __name__ == "__main__":
    main()
