"""The bad-input table: every row is a mistake a learner can make with the public API, the error type
it must raise and the words that must name the problem. Each error must come from the course's own
code (the innermost frame lies in ``helpers/``), never from deep inside torch: a learner reading the
traceback should see what to change, not ``IndexError: index out of range in self``.

The rows also cover what used to go *silently* wrong (a negative ``grad_clip`` that trained backwards,
``rope_theta=nan``, a negative γ that pushed the bias the wrong way, a batch-1 step after a batch-2
prefill that broadcast, greedy decoding that picked a NaN's index, ``assert_close`` passing NaN).
"""

from __future__ import annotations

import math
import os
import re
import traceback
from pathlib import Path

import pytest
import torch

import helpers
from helpers import KVCache, StaticKVCache, TrainConfig, Transformer, assert_close, generate, preset
from helpers.attention import Attention
from helpers.data import ByteTokenizer, Corpus, load_corpus
from helpers.device import pick_device
from helpers.kv_quant import QuantizedKVCache, quantize
from helpers.lessons.cache_calc import cache_bytes
from helpers.lessons.gqa import kv_head_of, pool_heads, to_gqa
from helpers.lessons.routing_toy import simulate_routing
from helpers.mla import MLA
from helpers.moe import (
    MoE,
    expert_counts,
    loss_free_update,
    routing_stats,
    seq_aux_loss,
    switch_aux_loss,
)
from helpers.mtp import depth_inputs
from helpers.speculative import speculative_generate

HELPERS = Path(helpers.__file__).resolve().parent
NAN, INF = float("nan"), float("inf")
CUDA = torch.cuda.is_available()

torch.manual_seed(0)
CFG = preset("test")  # D=32, H=4, V=256, max_seq_len=32
MODEL = Transformer(CFG).eval()
MLA_CFG = preset("test", attn_type="mla")
MLA_MODEL = Transformer(MLA_CFG).eval()
MOE_CFG = preset("test", n_routed_experts=4, n_activated_experts=2)
MTP_MODEL = Transformer(preset("test", mtp_depth=1)).eval()
NAN_MODEL = Transformer(CFG).eval()
with torch.no_grad():
    NAN_MODEL.head.weight[3, 0] = NAN  # one poisoned output row: its logit is NaN
NAN_MTP_MODEL = Transformer(preset("test", mtp_depth=1)).eval()
with torch.no_grad():
    NAN_MTP_MODEL.head.weight[3, 0] = NAN
TEXT = "def f(x):\n    return x + 1\n" * 40
CORPUS = Corpus({"docs": "The quick brown fox jumps over the lazy dog. " * 40, "code": TEXT})

IDS = torch.randint(0, 256, (2, 8))
X = torch.randn(2, 5, 32)
COS, SIN = MODEL.rope_cos[:5], MODEL.rope_sin[:5]
MLA_COS, MLA_SIN = MLA_MODEL.rope_cos[:5], MLA_MODEL.rope_sin[:5]


def ids(*shape, value=None, dtype=torch.long):
    return torch.full(shape, value, dtype=dtype) if value is not None else torch.randint(0, 256, shape)


def kv(b=1, g=2, t=3, d=8, dtype=torch.float32):
    return torch.randn(b, g, t, d, dtype=dtype), torch.randn(b, g, t, d, dtype=dtype)


def cache_after(cache, *updates):
    """Apply every update but the last; return a thunk that applies the last (the one that must fail)."""
    *first, last = updates
    for layer, tensors in first:
        cache.update(layer, *tensors)
    return lambda: cache.update(last[0], *last[1])


def with_env(name, value, fn):
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        return fn()
    finally:
        if old is None:
            del os.environ[name]
        else:
            os.environ[name] = old


def model_prefill_then_step(model, static):
    cache = model.new_cache(static=static, max_len=16)
    with torch.no_grad():
        model(ids(2, 4), cache=cache)  # batch 2 prefill
    return lambda: model(ids(1, 1), cache=cache)  # then a batch-1 step


# (id, thunk, error type, regex the message must match)
ROWS = [
    # --- ModelConfig: types, finiteness, signs, choices, divisibility ---------------------------------
    ("cfg-dim-float", lambda: preset("test", dim=2.5), TypeError, r"dim must be an int, got 2\.5"),
    ("cfg-dim-str", lambda: preset("test", dim="64"), TypeError, r"dim must be an int, got '64'"),
    ("cfg-layers-bool", lambda: preset("test", n_layers=True), TypeError, r"n_layers must be an int"),
    ("cfg-dim-zero", lambda: preset("test", dim=0), ValueError, r"dim=0 must be positive"),
    ("cfg-heads-neg", lambda: preset("test", n_heads=-1), ValueError, r"n_heads=-1 must be positive"),
    ("cfg-theta-nan", lambda: preset("test", rope_theta=NAN), ValueError, r"rope_theta=nan must be finite"),
    ("cfg-theta-zero", lambda: preset("test", rope_theta=0), ValueError, r"rope_theta=0\.0 must be > 0"),
    ("cfg-eps-neg", lambda: preset("test", norm_eps=-1e-6), ValueError, r"norm_eps=-1e-06 must be > 0"),
    ("cfg-route-scale", lambda: preset("test", route_scale=0), ValueError, r"route_scale=0\.0 must be > 0"),
    ("cfg-alpha-neg", lambda: preset("test", aux_loss_alpha=-0.1), ValueError,
     r"aux_loss_alpha=-0\.1 must be >= 0"),
    ("cfg-gamma-neg", lambda: preset("test", bias_update_speed=-0.1), ValueError,
     r"bias_update_speed=-0\.1 must be >= 0"),
    ("cfg-lambda-inf", lambda: preset("test", mtp_lambda=INF), ValueError, r"mtp_lambda=inf must be finite"),
    ("cfg-heads-divide", lambda: preset("test", dim=96, n_heads=5), ValueError,
     r"dim=96 is not divisible by n_heads=5"),
    ("cfg-kv-heads-divide", lambda: preset("test", n_kv_heads=3), ValueError,
     r"n_heads=4 is not divisible by n_kv_heads=3"),
    ("cfg-head-dim-odd", lambda: preset("test", head_dim=5), ValueError, r"head_dim=5 must be even for RoPE"),
    ("cfg-head-width-odd", lambda: preset("test", dim=20, n_heads=4), ValueError,
     r"dim/n_heads=20/4=5 must be even for RoPE"),
    ("cfg-attn-type", lambda: preset("test", attn_type="gqa"), ValueError, r"attn_type='gqa' must be one of"),
    ("cfg-attn-impl", lambda: preset("test", attn_impl="flash"), ValueError, r"attn_impl='flash' must be one"),
    ("cfg-score-func", lambda: preset("test", score_func="relu"), ValueError, r"score_func='relu'"),
    ("cfg-balance", lambda: preset("test", balance="aux_free"), ValueError, r"balance='aux_free' must be one"),
    ("cfg-tie-str", lambda: preset("test", tie_embeddings="yes"), TypeError,
     r"tie_embeddings must be True or False"),
    ("cfg-k-over-e", lambda: preset("test", n_routed_experts=4, n_activated_experts=5), ValueError,
     r"n_activated_experts=5 exceeds n_routed_experts=4"),
    ("cfg-groups-divide", lambda: preset("test", n_routed_experts=6, n_expert_groups=4), ValueError,
     r"n_routed_experts=6 is not divisible by n_expert_groups=4"),
    ("cfg-limited-groups", lambda: preset("test", n_routed_experts=8, n_expert_groups=2, n_limited_groups=3),
     ValueError, r"n_limited_groups=3 exceeds n_expert_groups=2"),
    ("cfg-groups-hold-k", lambda: preset("test", n_routed_experts=8, n_expert_groups=4, n_limited_groups=1,
                                         n_activated_experts=4), ValueError, r"cannot hold n_activated"),
    ("cfg-dense-layers", lambda: preset("test", n_routed_experts=4, n_dense_layers=5), ValueError,
     r"n_dense_layers=5 exceeds n_layers=2"),
    ("cfg-rope-odd", lambda: preset("test", qk_rope_head_dim=3), ValueError,
     r"qk_rope_head_dim=3 must be even"),
    ("cfg-mtp-neg", lambda: preset("test", mtp_depth=-1), ValueError, r"mtp_depth=-1 must be >= 0"),
    ("cfg-latent-zero", lambda: preset("test", kv_lora_rank=0), ValueError, r"kv_lora_rank=0 must be positive"),
    ("cfg-unknown-field", lambda: CFG.replace(dims=64), ValueError, r"unknown ModelConfig field.*dims"),
    ("cfg-unknown-preset", lambda: preset("huge"), ValueError, r"unknown preset 'huge'"),
    # --- TrainConfig, train, evaluate ----------------------------------------------------------------
    ("tc-steps-zero", lambda: TrainConfig(steps=0), ValueError, r"TrainConfig\.steps=0 must be positive"),
    ("tc-steps-float", lambda: TrainConfig(steps=10.5), TypeError, r"TrainConfig\.steps must be an int"),
    ("tc-batch-str", lambda: TrainConfig(batch_size="16"), TypeError, r"TrainConfig\.batch_size must be an int"),
    ("tc-lr-zero", lambda: TrainConfig(lr=0), ValueError, r"TrainConfig\.lr=0\.0 must be > 0"),
    ("tc-lr-nan", lambda: TrainConfig(lr=NAN), ValueError, r"TrainConfig\.lr=nan must be finite"),
    ("tc-clip-neg", lambda: TrainConfig(grad_clip=-1), ValueError, r"TrainConfig\.grad_clip=-1\.0 must be >= 0"),
    ("tc-decay-neg", lambda: TrainConfig(weight_decay=-0.01), ValueError, r"weight_decay=-0\.01 must be >= 0"),
    ("tc-min-lr-high", lambda: TrainConfig(min_lr_ratio=1.5), ValueError, r"min_lr_ratio=1\.5 must be <= 1"),
    ("tc-min-lr-neg", lambda: TrainConfig(min_lr_ratio=-0.1), ValueError, r"min_lr_ratio=-0\.1 must be >= 0"),
    ("tc-warmup-neg", lambda: TrainConfig(warmup=-1), ValueError, r"TrainConfig\.warmup=-1 must be >= 0"),
    ("train-unknown-setting", lambda: helpers.train(MODEL, CORPUS, stepz=3), TypeError,
     r"unknown setting.*stepz"),
    ("train-tc-dict", lambda: helpers.train(MODEL, CORPUS, {"steps": 1}), TypeError,
     r"tc must be a TrainConfig"),
    ("train-bad-override", lambda: helpers.train(MODEL, CORPUS, grad_clip=-1.0), ValueError,
     r"grad_clip=-1\.0 must be >= 0"),
    pytest.param("train-cuda-absent", lambda: helpers.train(MODEL, CORPUS, steps=1, device="cuda"),
                 ValueError, r"device='cuda' asks for CUDA.*COURSE_DEVICE",
                 marks=pytest.mark.skipif(CUDA, reason="CUDA is available here")),
    ("evaluate-iters-zero", lambda: helpers.evaluate(MODEL, CORPUS, iters=0), ValueError,
     r"evaluate\.iters=0 must be positive"),
    ("evaluate-seq-float", lambda: helpers.evaluate(MODEL, CORPUS, seq_len=2.0), TypeError,
     r"evaluate\.seq_len must be an int"),
    # --- devices ---------------------------------------------------------------------------------------
    ("device-misspelt", lambda: pick_device("gpu"), ValueError, r"device='gpu' is not a device name"),
    ("device-env-misspelt", lambda: with_env("COURSE_DEVICE", "tpu", pick_device), ValueError,
     r"COURSE_DEVICE='tpu' is not a device name"),
    ("device-type", lambda: pick_device(3), TypeError, r"a device must be a string"),
    pytest.param("device-cuda-index", lambda: pick_device("cuda:7"), ValueError, r"asks for CUDA",
                 marks=pytest.mark.skipif(CUDA, reason="CUDA is available here")),
    # --- the model's token ids ------------------------------------------------------------------------
    ("ids-float", lambda: MODEL(torch.rand(1, 4)), TypeError, r"idx must hold integer token ids"),
    ("ids-bool", lambda: MODEL(torch.ones(1, 4, dtype=torch.bool)), TypeError, r"integer token ids"),
    ("ids-1d", lambda: MODEL(ids(4)), ValueError, r"idx must be 2-D \(B, T\), got shape \(4,\)"),
    ("ids-3d", lambda: MODEL(ids(1, 2, 3)), ValueError, r"idx must be 2-D"),
    ("ids-empty", lambda: MODEL(ids(1, 0)), ValueError, r"at least one row and one position"),
    ("ids-too-big", lambda: MODEL(ids(1, 3, value=256)), ValueError, r"token ids outside \[0, 256\).*256"),
    ("ids-negative", lambda: MODEL(ids(1, 3, value=-1)), ValueError, r"outside \[0, 256\).*-1"),
    ("ids-list", lambda: MODEL([[1, 2, 3]]), TypeError, r"idx must be a torch tensor"),
    ("ids-too-long", lambda: MODEL(ids(1, 40)), ValueError, r"exceeds max_seq_len=32"),
    ("ids-wrong-device", lambda: MODEL(torch.zeros(1, 2, dtype=torch.long, device="meta")), ValueError,
     r"idx is on meta but the model is on cpu"),
    ("targets-shape", lambda: MODEL.run(IDS, targets=IDS[:, :4]), ValueError, r"targets have shape \(2, 4\)"),
    ("targets-float", lambda: MODEL.run(IDS, targets=IDS.float()), TypeError, r"targets must hold integer"),
    ("targets-oov", lambda: MODEL.run(IDS, targets=torch.full_like(IDS, 300)), ValueError,
     r"targets holds token ids outside"),
    ("cache-type", lambda: MODEL(IDS, cache={}), TypeError, r"cache must be a KVCache"),
    ("new-cache-too-long", lambda: MODEL.new_cache(static=True, max_len=1000), ValueError,
     r"max_len=1000 must be <= 32"),
    # --- attention and MoE modules called directly --------------------------------------------------
    ("attn-float64", lambda: MODEL.layers[0].attn(X.double(), COS, SIN), TypeError,
     r"x has dtype torch\.float64 but the module's weights are torch\.float32"),
    ("attn-2d", lambda: MODEL.layers[0].attn(X[0], COS, SIN), ValueError, r"x must have shape \(B, T, D=32\)"),
    ("attn-width", lambda: MODEL.layers[0].attn(X[..., :16], COS, SIN), ValueError, r"D=32.*\(2, 5, 16\)"),
    ("attn-int", lambda: MODEL.layers[0].attn(X.long(), COS, SIN), TypeError, r"x must be a float tensor"),
    ("attn-rope", lambda: MODEL.layers[0].attn(X, COS[:4], SIN[:4]), ValueError,
     r"RoPE table cos must have shape \(T=5, 8\)"),
    ("attn-not-tensor", lambda: Attention(CFG)(X.tolist(), COS, SIN), TypeError, r"x must be a torch tensor"),
    ("mla-float64", lambda: MLA_MODEL.layers[0].attn(X.double(), MLA_COS, MLA_SIN), TypeError,
     r"float64 but the module's weights are torch\.float32"),
    ("mla-width", lambda: MLA(MLA_CFG)(X[..., :8], MLA_COS, MLA_SIN), ValueError, r"D=32"),
    ("mla-rope", lambda: MLA(MLA_CFG)(X, MLA_COS[:, :4], MLA_SIN[:, :4]), ValueError,
     r"cos must have shape \(T=5, 8\)"),
    ("mla-mode", lambda: MLA(MLA_CFG, mode="fast"), ValueError, r"mode='fast' must be one of"),
    ("moe-float64", lambda: MoE(MOE_CFG)(X.double()), TypeError, r"float64 but the module's weights"),
    ("moe-2d", lambda: MoE(MOE_CFG)(X[0]), ValueError, r"x must have shape \(B, T, D=32\)"),
    # --- generation -------------------------------------------------------------------------------------
    ("gen-n-float", lambda: generate(MODEL, ids(1, 4), 2.5), TypeError, r"max_new_tokens must be an int"),
    ("gen-n-neg", lambda: generate(MODEL, ids(1, 4), -1), ValueError, r"max_new_tokens=-1 must be >= 0"),
    ("gen-temp-neg", lambda: generate(MODEL, ids(1, 4), 2, temperature=-1), ValueError,
     r"temperature=-1\.0 must be >= 0"),
    ("gen-temp-nan", lambda: generate(MODEL, ids(1, 4), 2, temperature=NAN), ValueError,
     r"temperature=nan must be finite"),
    ("gen-top-k", lambda: generate(MODEL, ids(1, 4), 2, temperature=1.0, top_k=0), ValueError,
     r"top_k=0 must be positive"),
    ("gen-prompt-oov", lambda: generate(MODEL, ids(1, 4, value=999), 2), ValueError,
     r"prompt holds token ids outside \[0, 256\)"),
    ("gen-prompt-float", lambda: generate(MODEL, torch.zeros(1, 4), 2), TypeError, r"prompt must hold integer"),
    ("gen-too-long", lambda: generate(MODEL, ids(1, 4), 30), ValueError, r"exceeds the model's context"),
    ("gen-cache-type", lambda: generate(MODEL, ids(1, 4), 2, cache=[]), TypeError, r"cache must be a KVCache"),
    ("gen-seed-str", lambda: generate(MODEL, ids(1, 4), 2, seed="0"), TypeError, r"seed must be an int"),
    ("gen-nan-logits", lambda: generate(NAN_MODEL, ids(1, 4), 3), FloatingPointError,
     r"non-finite logits at generation step 0 \(1 NaN"),
    ("gen-nan-uncached", lambda: generate(NAN_MODEL, ids(1, 4), 3, use_cache=False), FloatingPointError,
     r"non-finite logits"),
    ("spec-no-mtp", lambda: speculative_generate(MODEL, ids(1, 4), 4), ValueError, r"needs MTP modules"),
    ("spec-batch", lambda: speculative_generate(MTP_MODEL, ids(2, 4), 4), ValueError, r"batch B=2"),
    ("spec-prompt-oov", lambda: speculative_generate(MTP_MODEL, ids(1, 4, value=256), 4), ValueError,
     r"prompt holds token ids outside"),
    ("spec-nan-logits", lambda: speculative_generate(NAN_MTP_MODEL, ids(1, 4), 4), FloatingPointError,
     r"non-finite logits"),
    # --- caches: checked on every update ------------------------------------------------------------
    ("cache-layers-zero", lambda: KVCache(0), ValueError, r"KVCache\.n_layers=0 must be positive"),
    ("cache-layers-float", lambda: KVCache(2.0), TypeError, r"n_layers must be an int"),
    ("static-max-len", lambda: StaticKVCache(2, 0), ValueError, r"StaticKVCache\.max_len=0 must be positive"),
    ("cache-batch-step", lambda: cache_after(KVCache(1), (0, kv(b=2)), (0, kv(b=1)))(), ValueError,
     r"layer 0 of the cache holds tensor 0 as batch 2 .* this update brings batch 1.*reset"),
    ("cache-width-step", lambda: cache_after(KVCache(1), (0, kv(d=8)), (0, kv(d=4)))(), ValueError,
     r"8-wide .* brings batch 1 of 2×4-wide"),
    ("cache-dtype-step", lambda: cache_after(KVCache(1), (0, kv()), (0, kv(dtype=torch.float64)))(), ValueError,
     r"float32 .* float64"),
    ("cache-count-step", lambda: cache_after(KVCache(1), (0, kv()), (0, kv()[:1]))(), ValueError,
     r"stores 2 tensors per position, this update brings 1"),
    ("cache-cross-layer", lambda: cache_after(KVCache(2), (0, kv(b=2)), (1, kv(b=1)))(), ValueError,
     r"layer 1 gets batch 1 .* layer 0 of the same cache holds batch 2"),
    ("cache-pair-disagree", lambda: KVCache(1).update(0, kv(b=2)[0], kv(b=1)[1]), ValueError,
     r"tensor 1 has shape \(1, 2, 3, 8\).*must share the batch"),
    ("cache-layer-idx", lambda: KVCache(2).update(5, *kv()), IndexError, r"layer_idx=5 outside \[0, 2\)"),
    ("cache-not-tensor", lambda: KVCache(1).update(0, [1.0, 2.0]), ValueError, r"tensor 0 must be a tensor"),
    ("static-batch-step", lambda: cache_after(StaticKVCache(1, 8), (0, kv(b=2)), (0, kv(b=1)))(), ValueError,
     r"holds tensor 0 as batch 2"),
    ("static-overflow", lambda: cache_after(StaticKVCache(1, 4), (0, kv(t=3)), (0, kv(t=3)))(), ValueError,
     r"cache overflow: 3 cached \+ 3 new > max_len=4"),
    ("quant-batch-step", lambda: cache_after(QuantizedKVCache(1), (0, kv(b=2)), (0, kv(b=1)))(), ValueError,
     r"holds tensor 0 as batch 2"),
    ("quant-bits", lambda: QuantizedKVCache(1, bits=1), ValueError, r"bits=1 must be an int in \[2, 8\]"),
    ("quant-group", lambda: QuantizedKVCache(1, group_size=0), ValueError, r"group_size=0 must be positive"),
    ("quant-int-values", lambda: QuantizedKVCache(1).update(0, *(t.long() for t in kv())), TypeError,
     r"quantises float keys and values"),
    ("model-static-batch-step", lambda: model_prefill_then_step(MODEL, True)(), ValueError,
     r"holds tensor 0 as batch 2"),
    ("model-dynamic-batch-step", lambda: model_prefill_then_step(MODEL, False)(), ValueError,
     r"holds tensor 0 as batch 2"),
    ("mla-latent-cache-batch-step", lambda: model_prefill_then_step(MLA_MODEL, False)(), ValueError,
     r"holds tensor 0 as batch 2"),
    ("cache-crop", lambda: KVCache(1).crop(3), ValueError, r"crop length=3 outside \[0, 0\]"),
    ("cache-crop-float", lambda: KVCache(1).crop(1.5), TypeError, r"crop\.length must be an int"),
    # --- MoE balance and routing ----------------------------------------------------------------------
    ("lf-gamma-neg", lambda: loss_free_update(torch.zeros(4), torch.ones(4), -0.1), ValueError,
     r"loss_free_update\.gamma=-0\.1 must be >= 0"),
    ("lf-gamma-nan", lambda: loss_free_update(torch.zeros(4), torch.ones(4), NAN), ValueError,
     r"gamma=nan must be finite"),
    ("lf-shapes", lambda: loss_free_update(torch.zeros(4), torch.ones(3), 0.1), ValueError,
     r"load has shape \(3,\) but bias has \(4,\)"),
    ("switch-alpha-neg", lambda: switch_aux_loss(torch.rand(6, 4), torch.zeros(6, 2, dtype=torch.long), -1),
     ValueError, r"switch_aux_loss\.alpha=-1\.0 must be >= 0"),
    ("seq-alpha-neg", lambda: seq_aux_loss(torch.rand(2, 3, 4), torch.zeros(2, 3, 2, dtype=torch.long), -1),
     ValueError, r"seq_aux_loss\.alpha=-1\.0 must be >= 0"),
    ("seq-shapes", lambda: seq_aux_loss(torch.rand(6, 4), torch.zeros(6, 2, dtype=torch.long), 0.1),
     ValueError, r"probs \(B, T, E\) and indices \(B, T, K\)"),
    ("counts-range", lambda: expert_counts(torch.tensor([[0, 7]]), 4), ValueError,
     r"expert indices must be in \[0, 4\)"),
    ("toy-top-k", lambda: simulate_routing(top_k=0), ValueError, r"simulate_routing\.top_k=0 must be positive"),
    ("toy-top-k-over", lambda: simulate_routing(n_experts=4, top_k=5), ValueError, r"top_k=5 must be <= 4"),
    ("toy-gamma-neg", lambda: simulate_routing(gamma=-0.1), ValueError, r"gamma=-0\.1 must be >= 0"),
    ("toy-steps-float", lambda: simulate_routing(steps=2.5), TypeError, r"steps must be an int"),
    ("routing-stats-dense", lambda: routing_stats(MODEL, CORPUS), ValueError, r"needs a model with MoE layers"),
    # --- GQA conversion --------------------------------------------------------------------------------
    ("gqa-divide", lambda: to_gqa(MODEL, 3), ValueError, r"n_heads=4 is not divisible by n_kv_heads=3"),
    ("gqa-float", lambda: to_gqa(MODEL, 2.5), TypeError, r"n_kv_heads must be an int"),
    ("gqa-not-model", lambda: to_gqa("model", 2), TypeError, r"to_gqa needs a helpers Transformer"),
    ("gqa-mla", lambda: to_gqa(MLA_MODEL, 2), ValueError, r"MLA has no per-head K/V projections"),
    ("gqa-pool-method", lambda: pool_heads(torch.zeros(16, 4), 4, 2, 4, method="max"), ValueError,
     r"method='max' must be one of"),
    ("gqa-kv-zero", lambda: kv_head_of(4, 0), ValueError, r"n_kv_heads=0 must be positive"),
    # --- quantisation, the cache calculator, MTP wiring ------------------------------------------------
    ("quant-int", lambda: quantize(torch.ones(2, 4, dtype=torch.long)), ValueError, r"must be a floating"),
    ("quant-axis", lambda: quantize(torch.ones(2, 4), axis="row"), ValueError, r"axis='row' must be one of"),
    ("quant-bits-9", lambda: quantize(torch.ones(2, 4), bits=9), ValueError, r"bits=9 must be an int"),
    ("quant-groups", lambda: quantize(torch.ones(8, 4), axis="channel", group_size=3), ValueError,
     r"S=8 positions must be a positive multiple of group_size=3"),
    ("calc-model", lambda: cache_bytes("Nope-7B", "MHA", 1024), ValueError, r"unknown model 'Nope-7B'"),
    ("calc-context", lambda: cache_bytes("Llama-3-8B", "MHA", 0), ValueError, r"context_len=0 must be"),
    ("calc-dtype", lambda: cache_bytes("Llama-3-8B", "MHA", 8, dtype="fp7"), ValueError, r"unknown dtype 'fp7'"),
    ("calc-variant", lambda: cache_bytes("Llama-3-8B", "XYZ", 8), ValueError, r"unknown variant 'XYZ'"),
    ("mtp-depth-zero", lambda: depth_inputs(IDS, IDS, 0), ValueError, r"depth k=0 must be >= 1"),
    ("mtp-depth-float", lambda: depth_inputs(IDS, IDS, 1.5), TypeError, r"depth_inputs\.k must be an int"),
    ("mtp-unshifted-targets", lambda: MTP_MODEL.run(IDS, targets=IDS), ValueError,
     r"targets must be idx shifted left by one"),
    # --- the byte tokenizer -----------------------------------------------------------------------------
    ("tok-encode-int", lambda: ByteTokenizer().encode(5), TypeError, r"int"),
    ("tok-decode-range", lambda: ByteTokenizer().decode([65, 300]), ValueError, r"\[0, 256\).*300"),
    ("tok-decode-float", lambda: ByteTokenizer().decode([65, 1.5]), TypeError, r"token 1 is 1\.5"),
    ("corpus-missing-domain", lambda: Corpus({"docs": TEXT}), ValueError, r"code"),
    ("corpus-text-type", lambda: Corpus({"docs": TEXT, "code": 5}), TypeError, r"texts\['code'\] must be a str"),
    ("batch-split", lambda: CORPUS.get_batch("test", 2, 8), ValueError, r"split='test' must be 'train' or 'val'"),
    ("batch-size-float", lambda: CORPUS.get_batch("train", 2.5, 8), TypeError, r"batch_size must be an int"),
    ("batch-too-long", lambda: CORPUS.get_batch("val", 2, 10_000), ValueError, r"seq_len=10000 is longer"),
    ("batch-domain", lambda: CORPUS.get_batch("train", 2, 8, domain="poetry"), ValueError, r"domain='poetry'"),
    ("corpus-not-found", lambda: load_corpus("/nonexistent/course/data"), FileNotFoundError,
     r"not found.*/nonexistent/course/data"),
    # --- the proof tool ---------------------------------------------------------------------------------
    ("close-nan-actual", lambda: assert_close(torch.tensor([NAN, 1.0]), torch.tensor([1.0, 1.0])),
     AssertionError, r"1 NaN in actual"),
    ("close-nan-both", lambda: assert_close(torch.tensor([NAN]), torch.tensor([NAN])), AssertionError,
     r"1 NaN in actual; 1 NaN in expected"),
    ("close-nan-expected", lambda: assert_close(torch.ones(3), torch.tensor([1.0, NAN, NAN])),
     AssertionError, r"2 NaN in expected"),
    ("close-inf-actual", lambda: assert_close(torch.tensor([INF]), torch.tensor([1.0])), AssertionError,
     r"1 inf in actual"),
    ("close-inf-signs", lambda: assert_close(torch.tensor([INF]), torch.tensor([-INF])), AssertionError,
     r"1 inf in actual .*1 inf in expected"),
    ("close-shapes", lambda: assert_close(torch.ones(3), torch.ones(4)), AssertionError, r"shapes differ"),
    ("close-atol", lambda: assert_close(torch.ones(3), torch.ones(3), atol=-1), ValueError,
     r"atol=-1 and rtol=1e-05 must be numbers >= 0"),
]


def _id(row) -> str:
    return row.values[0] if hasattr(row, "values") else row[0]


def test_the_table_is_long_and_unique():
    names = [_id(r) for r in ROWS]
    assert len(names) >= 80 and len(set(names)) == len(names)


@pytest.mark.parametrize("name, thunk, error, words", ROWS, ids=[_id(r) for r in ROWS])
def test_bad_input_fails_clearly_in_course_code(name, thunk, error, words):
    with pytest.raises(error, match=words) as info:
        thunk()
    assert raised_by_course(info.value), f"{name}: not raised by a `raise` in helpers/: {info.value!r}"


def raised_by_course(err: BaseException) -> bool:
    """The innermost Python frame is a ``raise`` statement in ``helpers/`` (a torch error surfacing
    from a helpers line, such as a failed ``torch.cat``, does not count)."""
    frame = traceback.extract_tb(err.__traceback__)[-1]
    inside = HELPERS in Path(frame.filename).resolve().parents
    return inside and (frame.line or "").lstrip().startswith("raise")


def test_inputs_that_look_odd_but_are_fine():
    """The checks refuse what is wrong and nothing else."""
    assert preset("test", rope_theta=500000).rope_theta == 500000  # an int where a float is expected
    assert TrainConfig(grad_clip=0, min_lr_ratio=1, weight_decay=0).grad_clip == 0  # 0 switches clipping off
    targets = IDS.clone()
    targets[:, -1] = -100  # the ignored target
    assert math.isfinite(MODEL.run(IDS, targets=targets).main_loss.item())
    assert_close(torch.tensor([INF, -INF, 1.0]), torch.tensor([INF, -INF, 1.0]))  # the same inf matches
    assert_close([1.0, 2.0], [1.0, 2.0])  # lists are accepted
    cache = KVCache(1)
    cache.update(0, *kv(b=2))
    cache.reset()
    cache.update(0, *kv(b=1))  # a new batch after reset is fine
    with torch.no_grad():
        MODEL(IDS.int())  # int32 ids are integer ids too


def classify(row) -> str:
    """clear: the right error with the right words from the course's code; unclear: raised in the
    course's code but another type or other words; obscure: raised from outside it (torch, Python);
    silent: no error at all."""
    name, thunk, error, words = row.values if hasattr(row, "values") else row
    try:
        thunk()
    except Exception as err:
        if not raised_by_course(err):
            return "obscure"
        return "clear" if isinstance(err, error) and re.search(words, str(err)) else "unclear"
    return "silent"


if __name__ == "__main__":  # python tests/test_bad_inputs.py: count the table's outcomes on this checkout
    from collections import Counter

    results = {_id(r): classify(r) for r in ROWS}
    print(dict(Counter(results.values())), f"of {len(ROWS)} rows")
    for name, outcome in results.items():
        if outcome != "clear":
            print(f"  {outcome:8s} {name}")
