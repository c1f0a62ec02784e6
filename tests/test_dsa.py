"""helpers.dsa: DeepSeek Sparse Attention (the lightning indexer over MLA's latent cache): the index
score formula, the top-k tie rule, gather == masked == dense MLA when k covers the context, cached ==
uncached, the training phases' gradients, recall, FP8-style keys, Hadamard, the cache and decode bills.
The Hugging Face parity checks are in test_interop_dsa.py."""

import math

import pytest
import torch
import torch.nn.functional as F
from testkit import randomise

from helpers import Transformer, preset
from helpers.attention import rope_tables
from helpers.dsa import (
    DecodeCost,
    Indexer,
    SparseMLA,
    decode_attention_cost,
    dsa_elements_per_token,
    dsa_layers,
    hadamard,
    indexer_kl,
    indexer_loss,
    indexer_parameters,
    indexer_recall,
    quantised_index_keys,
    record_stats,
    select_topk,
    selection_mask,
    set_dsa_phase,
    set_index_topk,
    tied_at_k,
)
from helpers.generate import generate
from helpers.kv_cache import KVCache, config_cache_bytes_per_token, measured_cache_bytes_per_token
from helpers.mla import MLA

# dim 32, 4 heads, Dq 24, Dc 32, Dr 8, 4 indexer heads of width 16, each query reads k = 4 latents
CFG = preset("test", attn_type="mla", q_lora_rank=24, index_n_heads=4, index_head_dim=16, index_topk=4)


def tables(cfg=CFG):
    return rope_tables(cfg.qk_rope_head_dim, cfg.max_seq_len, cfg.rope_theta)


def sparse_layer(cfg=CFG, B=2, T=12):
    layer = randomise(SparseMLA(cfg, 0))
    cos, sin = tables(cfg)
    return layer, torch.randn(B, T, cfg.dim), cos, sin


def dense_twin(layer: SparseMLA, cfg=CFG) -> MLA:
    """A plain MLA with the sparse layer's weights (everything but the indexer)."""
    dense = MLA(cfg, layer.layer_idx)
    state = {k: v for k, v in layer.state_dict().items() if not k.startswith("indexer.")}
    dense.load_state_dict(state)
    return dense.eval()


def chosen(idx: torch.Tensor, limit: int | None = None) -> list[list]:
    """Top-k indices as sorted python lists, one per row (optionally only those < ``limit``)."""
    rows = idx.reshape(-1, idx.shape[-1]).tolist()
    return [sorted(i for i in row if limit is None or i < limit) for row in rows]


# --- the config -----------------------------------------------------------------------------------
def test_config_validates_the_indexer_fields():
    assert CFG.is_sparse_attention
    assert not CFG.replace(index_n_heads=0).is_sparse_attention
    assert not preset("test").is_sparse_attention
    with pytest.raises(ValueError, match="index_n_heads=4 needs attn_type='mla'"):
        preset("test", q_lora_rank=24, index_n_heads=4)
    with pytest.raises(ValueError, match="index_n_heads=4 needs q_lora_rank > 0"):
        preset("test", attn_type="mla", index_n_heads=4)
    with pytest.raises(ValueError, match="index_head_dim=4 is smaller than its RoPE part qk_rope_head_dim=8"):
        CFG.replace(index_head_dim=4)
    for field in ["index_topk", "index_head_dim"]:
        with pytest.raises(ValueError, match=field):
            CFG.replace(**{field: 0})
    with pytest.raises(ValueError, match="index_n_heads"):
        CFG.replace(index_n_heads=-1)
    CFG.replace(index_head_dim=CFG.qk_rope_head_dim)  # the RoPE part may fill the whole key
    # the model builds a SparseMLA in every layer; SparseMLA refuses a config without an indexer
    assert [type(layer.attn) for layer in Transformer(CFG).layers] == [SparseMLA] * CFG.n_layers
    assert not dsa_layers(Transformer(CFG.replace(index_n_heads=0)))
    with pytest.raises(ValueError, match="index_n_heads > 0"):
        SparseMLA(CFG.replace(index_n_heads=0))


# --- the indexer ------------------------------------------------------------------------------------
def rope_half_split(v: torch.Tensor, pos: int, rope_dim: int, theta: float) -> torch.Tensor:
    """Rotate the first ``rope_dim`` dims of one vector by position ``pos``: frequency i turns the pair
    (i, i + Dr/2) (the half-split layout), written out pair by pair."""
    out = v.clone()
    half = rope_dim // 2
    for i in range(half):
        angle = pos * theta ** (-2 * i / rope_dim)
        a, b = v[i], v[i + half]
        out[i] = a * math.cos(angle) - b * math.sin(angle)
        out[i + half] = b * math.cos(angle) + a * math.sin(angle)
    return out


def explicit_index_scores(ix: Indexer, x, q_lat, start: int, S: int, x_keys) -> torch.Tensor:
    """I(t, s) = Σ_j w(t, j)·ReLU(d_I^-½ q(t, j)·k(s)), w = W_w x_t · H_I^-½, as a loop over (t, s, j);
    queries at positions start..start+T-1, keys at 0..S-1 (from ``x_keys``); the future is -inf."""
    B, T, _ = x.shape
    H_I, d_I, Dr, theta = ix.n_heads, ix.head_dim, ix.rope_dim, CFG.rope_theta
    out = torch.empty(B, T, S)
    with torch.no_grad():
        for b in range(B):
            normed = [F.layer_norm(ix.wk.weight @ x_keys[b, s], (d_I,), ix.k_norm.weight, ix.k_norm.bias,
                                   ix.k_norm.eps) for s in range(S)]
            keys = [rope_half_split(k, s, Dr, theta) for s, k in enumerate(normed)]
            for t in range(T):
                q_all = (ix.wq_b.weight @ q_lat[b, t]).view(H_I, d_I)
                w = ix.weights_proj.weight @ x[b, t] / math.sqrt(H_I)
                for s in range(S):
                    if s > start + t:
                        out[b, t, s] = float("-inf")
                        continue
                    total = 0.0
                    for j in range(H_I):
                        q = rope_half_split(q_all[j], start + t, Dr, theta)
                        total += w[j] * max(float(q @ keys[s]) / math.sqrt(d_I), 0.0)
                    out[b, t, s] = total
    return out


def test_index_scores_follow_the_formula():
    ix = randomise(Indexer(CFG))
    cos, sin = tables()
    B, T = 2, 6
    x, q_lat = torch.randn(B, T, CFG.dim), torch.randn(B, T, CFG.q_lora_rank)
    with torch.no_grad():
        keys = ix.keys(x, cos[:T], sin[:T])  # (B, T, d_I)
        scores = ix(x, q_lat, cos[:T], sin[:T], keys)
    want = explicit_index_scores(ix, x, q_lat, 0, T, x)
    assert torch.equal(torch.isinf(scores), torch.ones(T, T, dtype=torch.bool).triu(1).expand(B, T, T))
    torch.testing.assert_close(scores, want, atol=1e-5, rtol=1e-5)
    assert (want == 0).sum() < want.isfinite().sum()  # ReLU does not zero everything: a real check
    # the last 2 queries against all 6 keys (a decode with 4 cached positions) are the same rows
    with torch.no_grad():
        tail = ix(x[:, 4:], q_lat[:, 4:], cos[4:T], sin[4:T], keys)
    torch.testing.assert_close(tail, want[:, 4:], atol=1e-5, rtol=1e-5)


def test_indexer_rope_is_half_split_and_relative():
    ix = randomise(Indexer(CFG))
    cos, sin = tables()
    T, shift, Dr = 8, 11, CFG.qk_rope_head_dim
    x, q_lat = torch.randn(1, T, CFG.dim), torch.randn(1, T, CFG.q_lora_rank)
    with torch.no_grad():
        k0, k1 = ix.keys(x, cos[:T], sin[:T]), ix.keys(x, cos[shift:shift + T], sin[shift:shift + T])
        q0 = ix.queries(q_lat, cos[:T], sin[:T])
        q1 = ix.queries(q_lat, cos[shift:shift + T], sin[shift:shift + T])
        raw = ix.k_norm(ix.wk(x))
        assert torch.equal(k0[..., Dr:], raw[..., Dr:]) and torch.equal(q0[..., Dr:], q1[..., Dr:])
        assert not torch.allclose(k0[..., :Dr], k1[..., :Dr])  # the first Dr dims carry the position
        torch.testing.assert_close(k1[0, 3], rope_half_split(raw[0, 3], shift + 3, Dr, CFG.rope_theta))
        # q(t)·k(s) of the rotated part depends on t - s only: shifting both leaves it unchanged ...
        dots0 = torch.einsum("bthd,bsd->bths", q0[..., :Dr], k0[..., :Dr])
        dots1 = torch.einsum("bthd,bsd->bths", q1[..., :Dr], k1[..., :Dr])
        torch.testing.assert_close(dots1, dots0, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(ix(x, q_lat, cos[shift:shift + T], sin[shift:shift + T], k1),
                                   ix(x, q_lat, cos[:T], sin[:T], k0), atol=1e-5, rtol=1e-4)
        # ... shifting the queries alone does not
        mixed = torch.einsum("bthd,bsd->bths", q1[..., :Dr], k0[..., :Dr])
        assert not torch.allclose(mixed, dots0, atol=1e-3)


# --- the top-k selection and its tie rule -----------------------------------------------------------
def earliest_topk(row: list, k: int) -> list:
    """The positions of the k highest scores, ties going to the earlier position (a stable sort)."""
    return sorted(sorted(range(len(row)), key=lambda s: -row[s])[:k])


def test_select_topk_equals_topk_without_ties():
    scores = torch.randn(2, 5, 12)
    assert tied_at_k(scores, 4) == 0
    assert torch.equal(select_topk(scores, 4), scores.topk(4, dim=-1).indices)
    assert select_topk(scores, 30).shape == (2, 5, 12)  # k beyond S: every position


def test_select_topk_gives_ties_to_the_earlier_position():
    three_ones = torch.tensor([[[3.0, 1, 1, 1, 0, 2]]])  # 3 and 2, then one of three 1s: the first
    assert torch.equal(select_topk(three_ones, 3).sort(-1).values, torch.tensor([[[0, 1, 5]]]))
    scores = torch.randint(0, 3, (3, 6, 10)).float()  # three values over ten positions: ties everywhere
    k = 4
    assert tied_at_k(scores, k) > 6  # the precondition: the tie rule decides many rows
    want = [earliest_topk(row, k) for row in scores.reshape(-1, 10).tolist()]
    assert chosen(select_topk(scores, k)) == want


def test_select_topk_ignores_padding_and_prefill_equals_decode():
    """A row padded with -inf (a prefill's causal row) selects what the unpadded row (a decode step of
    exactly t + 1 positions) selects, ties included."""
    scores = torch.randint(0, 3, (2, 4, 7)).float()
    padded = torch.cat([scores, torch.full((2, 4, 9), float("-inf"))], dim=-1)
    assert tied_at_k(scores, 3) > 0
    for k in [1, 3, 5]:
        assert chosen(select_topk(padded, k)) == chosen(select_topk(scores, k))
    T, k = 12, 4
    causal = torch.randint(0, 2, (1, T, T)).float().masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1),
                                                                 float("-inf"))
    assert tied_at_k(causal, k) > 2  # the precondition: the tie rule decides several rows
    prefill = select_topk(causal, k)  # (1, T, k), future positions last for the first rows
    for t in range(T):
        decode = select_topk(causal[:, t:t + 1, : t + 1], k)  # one row of t + 1 positions
        assert chosen(prefill[:, t], limit=t + 1) == chosen(decode)
    keep = selection_mask(causal, k)
    assert keep.sum(-1).tolist() == [[min(k, t + 1) for t in range(T)]]
    assert not (keep & causal.isinf()).any()


def test_tied_at_k_counts_rows():
    inf = float("-inf")
    scores = torch.tensor([[[3.0, 1, 1, 0], [3, 2, 1, 0], [1, 1, inf, inf], [5, inf, inf, inf],
                            [2, 2, 2, 2]]])
    assert tied_at_k(scores, 1) == 2  # rows 2 and 4: two or more share the top score
    assert tied_at_k(scores, 2) == 2  # rows 0 (three reach the 2nd score, 1) and 4; row 2's -inf is no rival
    assert tied_at_k(scores, 3) == 1  # row 4; rows 2 and 3 tie only among -inf, which does not count
    assert tied_at_k(scores, 4) == 0  # all four selected: nothing left to choose
    with pytest.raises(ValueError, match="k"):
        select_topk(scores, 0)
    with pytest.raises(ValueError, match="k"):
        tied_at_k(scores, 0)


# --- SparseMLA: two paths, two modes, dense when k covers the context, the cache -------------------
def run_cached(layer, x, cos, sin, chunks, mode="absorbed"):
    """Feed ``x`` in chunks of the given lengths through one cache; the outputs concatenated."""
    cache, start, outs = KVCache(1), 0, []
    for n in chunks:
        outs.append(layer(x[:, start:start + n], cos[start:start + n], sin[start:start + n], cache=cache,
                          mode=mode))
        start += n
    assert cache.length == x.shape[1]
    return torch.cat(outs, dim=1)


@torch.no_grad()
def test_gather_equals_masked_and_cached_equals_uncached():
    layer, x, cos, sin = sparse_layer()
    T = x.shape[1]
    outs = {}
    for path in ["gather", "masked"]:
        layer.path = path
        outs[path] = layer(x, cos[:T], sin[:T])
        for chunks in [[5, 1, 1, 3, 1, 1], [1] * T]:  # prefill, single steps and a 3-token chunk
            torch.testing.assert_close(run_cached(layer, x, cos, sin, chunks), outs[path],
                                       atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(outs["gather"], outs["masked"], atol=1e-5, rtol=1e-5)
    # the selection bites: with k = 4 of up to 12 positions the output is not dense MLA's
    assert not torch.allclose(outs["gather"], dense_twin(layer)(x, cos[:T], sin[:T]), atol=1e-3)


@torch.no_grad()
def test_absorbed_equals_latent():
    layer, x, cos, sin = sparse_layer()
    T = x.shape[1]
    latent = layer(x, cos[:T], sin[:T], mode="latent")
    for path in ["gather", "masked"]:
        layer.path = path
        torch.testing.assert_close(layer(x, cos[:T], sin[:T], mode="absorbed"), latent, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(run_cached(layer, x, cos, sin, [4, 1, 7], mode="latent"), latent,
                               atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="'kv'"):
        layer(x, cos[:T], sin[:T], mode="kv")


@torch.no_grad()
def test_k_covering_the_context_is_dense_mla():
    layer, x, cos, sin = sparse_layer()
    T = x.shape[1]
    dense = dense_twin(layer)
    want = dense(x, cos[:T], sin[:T])
    for k in [T, T + 5]:
        layer.index_topk = k
        for path in ["gather", "masked"]:
            layer.path = path
            torch.testing.assert_close(layer(x, cos[:T], sin[:T]), want, atol=1e-5, rtol=1e-5)
    model = Transformer(CFG)
    assert set_index_topk(model, 7) == CFG.n_layers and {m.index_topk for m in dsa_layers(model)} == {7}
    with pytest.raises(ValueError, match="k=0"):
        set_index_topk(model, 0)


@pytest.mark.parametrize("path", ["gather", "masked"])
def test_model_cached_logits_equal_uncached(path):
    model = randomise(Transformer(CFG), std=0.1)
    set_dsa_phase(model, "inference", path)
    idx = torch.randint(0, CFG.vocab_size, (2, 16))
    with torch.no_grad():
        full = model(idx)
        cache = model.new_cache()
        steps = [model(idx[:, :6], cache=cache), model(idx[:, 6:9], cache=cache)]
        steps += [model(idx[:, t:t + 1], cache=cache) for t in range(9, 16)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-4, rtol=1e-4)
    c_kv, k_pe, k_idx = cache.layers[0]  # the cache holds the latent, the RoPE key and the index key
    assert (c_kv.shape[-1], k_pe.shape[-1], k_idx.shape) == (CFG.kv_lora_rank, CFG.qk_rope_head_dim,
                                                              (2, 16, CFG.index_head_dim))


@pytest.mark.parametrize("ties", [False, True], ids=["4-heads-randomised", "2-heads-default-init-ties"])
def test_generate_cached_equals_uncached(ties):
    """With 2 indexer heads and the default small init many index scores are exactly 0 and the k-th
    place is often tied: the stable tie rule keeps cached decoding equal to the full recomputation."""
    if ties:
        cfg = CFG.replace(index_n_heads=2)
        model = Transformer(cfg).eval()
    else:
        cfg = CFG
        model = randomise(Transformer(cfg), std=0.1)
    prompt = torch.randint(0, cfg.vocab_size, (2, 6))
    record_stats(model)
    with torch.no_grad():
        model(torch.randint(0, cfg.vocab_size, (2, 24)))
    n_tied = sum(tied_at_k(m.stats.index_scores, cfg.index_topk) for m in dsa_layers(model))
    if ties:
        assert n_tied > 0  # the precondition that makes the tie case a tie case
    record_stats(model, on=False)
    cached = generate(model, prompt, 18, return_logits=True)
    uncached = generate(model, prompt, 18, use_cache=False, return_logits=True)
    assert torch.equal(cached.tokens, uncached.tokens)
    torch.testing.assert_close(cached.step_logits, uncached.step_logits, atol=1e-4, rtol=1e-4)
    assert len(set(cached.tokens[0, 6:].tolist())) > 2  # a real sequence, not one token repeated


# --- the training phases ----------------------------------------------------------------------------
def grads(loss: torch.Tensor, module: torch.nn.Module) -> dict:
    """name → gradient of ``loss`` (None where it does not reach) for the trainable parameters."""
    named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    got = torch.autograd.grad(loss, [p for _, p in named], retain_graph=True, allow_unused=True)
    return {n: g for (n, _), g in zip(named, got)}


def reached(g) -> bool:
    return g is not None and bool(g.abs().sum() > 0)


def test_warmup_is_dense_and_trains_only_the_indexer():
    layer, x, cos, sin = sparse_layer()
    T = x.shape[1]
    assert set_dsa_phase(layer, "warmup") == 1
    out = layer(x, cos[:T], sin[:T])
    torch.testing.assert_close(out, dense_twin(layer)(x, cos[:T], sin[:T]), atol=1e-5, rtol=1e-5)
    kl = indexer_loss(layer)
    assert kl > 0
    g = grads(kl, layer)
    assert all(reached(g[n]) for n in g if n.startswith("indexer."))
    assert reached(g["wq_a.weight"])  # the indexer's input is not detached in the warm-up ...
    # the target (the main attention) is detached: the KL does not train the attention it imitates
    for n in ["wq_b.weight", "wkv_a.weight", "kv_norm.weight", "wkv_b.weight", "wo.weight"]:
        assert not reached(g[n]), n
    # ... so the warm-up freezes the rest, and then only the indexer learns
    mine = {id(p) for p in indexer_parameters(layer)}
    for p in layer.parameters():
        p.requires_grad_(id(p) in mine)
    layer(x, cos[:T], sin[:T])
    g = grads(indexer_loss(layer), layer)
    assert set(g) == {n for n, _ in layer.named_parameters() if n.startswith("indexer.")}
    assert all(reached(v) for v in g.values())


def test_sparse_phase_keeps_the_two_losses_apart():
    model = randomise(Transformer(CFG), std=0.1)
    assert set_dsa_phase(model, "sparse") == CFG.n_layers
    record_stats(model)
    idx = torch.randint(0, CFG.vocab_size, (2, 16))
    logits = model(idx)
    lm = F.cross_entropy(logits[:, :-1].reshape(-1, CFG.vocab_size), idx[:, 1:].reshape(-1))
    kl = indexer_loss(model)
    assert kl > 0
    g_kl, g_lm = grads(kl, model), grads(lm, model)
    for name in g_kl:
        if ".indexer." in name:
            assert reached(g_kl[name]), name
            assert not reached(g_lm[name]), name  # top-k is not differentiable: the LM loss stops there
        else:  # detached target and input: the KL reaches nothing outside the indexer
            assert not reached(g_kl[name]), name
    for name in ["tok_emb.weight", "layers.0.attn.wq_a.weight", "layers.0.attn.q_norm.weight"]:
        assert reached(g_lm[name]) and not reached(g_kl[name]), name
    # the KL of the sparse phase runs over the selected set only
    for m in dsa_layers(model):
        assert torch.equal(m.stats.keep.sum(-1).amax(), torch.tensor(CFG.index_topk))
    set_dsa_phase(model, "inference")
    model(idx)
    assert indexer_loss(model) == 0
    with pytest.raises(ValueError, match="phase"):
        set_dsa_phase(model, "train")
    with pytest.raises(ValueError, match="path"):
        set_dsa_phase(model, "sparse", path="fast")


def test_indexer_kl_by_hand():
    inf = float("-inf")
    target = torch.tensor([[[0.5, 0.25, 0.25, 0.0], [1.0, 0.0, 0.0, 0.0]]])
    scores = torch.tensor([[[1.0, 0.0, 0.0, inf], [2.0, 0.5, inf, inf]]])
    keep = scores.isfinite()
    e = math.e
    row0 = 0.5 * math.log(0.5 / (e / (e + 2))) + 2 * 0.25 * math.log(0.25 / (1 / (e + 2)))
    row1 = 1.0 * math.log(1.0 / (math.exp(2) / (math.exp(2) + math.exp(0.5))))
    assert indexer_kl(target, scores, keep).item() == pytest.approx((row0 + row1) / 2, rel=1e-5)


def test_indexer_kl_is_zero_at_the_target_and_ignores_the_rest():
    target = torch.rand(2, 5, 9)
    target = target / target.sum(-1, keepdim=True)
    keep = torch.rand(2, 5, 9) > 0.4
    keep[..., 0] = True
    on_keep = target * keep
    on_keep = on_keep / on_keep.sum(-1, keepdim=True)
    scores = torch.where(keep, on_keep.log() + 3.0, torch.randn(2, 5, 9) * 10)  # softmax = target on keep
    assert indexer_kl(target, scores, keep).abs() < 1e-6
    other = torch.randn(2, 5, 9)
    kl = indexer_kl(target, other, keep)
    assert kl > 1e-3
    # scores and target outside keep do not matter (the target is renormalised over keep)
    other2 = torch.where(keep, other, torch.randn(2, 5, 9) * 100)
    target2 = torch.where(keep, target, torch.rand(2, 5, 9))
    torch.testing.assert_close(indexer_kl(target2, other2, keep), kl)


# --- recall, FP8-style keys, Hadamard ----------------------------------------------------------------
def test_indexer_recall_by_hand():
    inf = float("-inf")
    attention = torch.tensor([[[1.0, 0, 0, 0], [0.6, 0.4, 0, 0], [0.5, 0.3, 0.2, 0], [0.1, 0.2, 0.3, 0.4]]])
    scores = torch.tensor([[[1.0, inf, inf, inf], [1, 2, inf, inf], [0.1, 0.9, 0.8, inf], [4, 3, 2, 1]]])
    r = indexer_recall(attention, scores, k=2)  # rows 0, 1 see ≤ 2 positions and are left out
    assert r.mass == pytest.approx((0.5 + 0.3) / 2)  # row 2 keeps 0.3 + 0.2, row 3 keeps 0.1 + 0.2
    assert r.set == pytest.approx((1 / 2 + 0) / 2)  # row 2 shares position 1 with {0, 1}, row 3 nothing
    # a decode row (T=1 of S=4) is not skipped
    last = indexer_recall(attention[:, 3:], scores[:, 3:], k=2)
    assert (last.mass, last.set) == pytest.approx((0.3, 0.0))
    with pytest.raises(ValueError, match="k=4"):
        indexer_recall(attention, scores, k=4)


def test_recall_is_one_when_the_indexer_scores_the_attention():
    attention = torch.rand(2, 8, 8).masked_fill(torch.ones(8, 8, dtype=torch.bool).triu(1), 0.0)
    attention = attention / attention.sum(-1, keepdim=True)
    scores = attention.masked_fill(attention == 0, float("-inf"))
    r = indexer_recall(attention, scores, k=3)
    assert r.set == 1.0
    assert r.mass == pytest.approx(attention[:, 3:].topk(3, dim=-1).values.sum(-1).mean().item())
    # attention that lives on at most k positions: the top-k holds all of its mass
    sparse = attention.masked_fill(attention < attention.topk(3, dim=-1).values[..., -1:], 0.0)
    sparse = sparse / sparse.sum(-1, keepdim=True)
    r = indexer_recall(sparse, sparse.clone(), k=3)
    assert (r.mass, r.set) == pytest.approx((1.0, 1.0))
    assert indexer_recall(sparse, torch.randn(2, 8, 8), k=3).mass < 0.9  # random scores do worse


def test_quantised_index_keys():
    keys = torch.randn(3, 10, 16)
    q = quantised_index_keys(keys)
    rel = (q - keys).norm(dim=-1) / keys.norm(dim=-1)
    assert 0 < rel.max() < 2 ** -4  # 3 mantissa bits: at most half a step of 2^-3 per element
    assert (quantised_index_keys(keys, mantissa_bits=7) - keys).norm() < (q - keys).norm() / 8
    # values on the E4M3 grid (largest 448 = 1.75·2^8) come back exactly, at any power-of-two scale
    grid = torch.tensor([448.0, -224.0, 1.5, 0.75, -3.5, 28.0, 0.125, 0.0])
    assert torch.equal(quantised_index_keys(grid * 2 ** -3), grid * 2 ** -3)
    torch.testing.assert_close(quantised_index_keys(grid * 0.37), grid * 0.37, atol=0, rtol=1e-6)
    # one scale per block keeps a tiny block's precision, one scale per key does not
    two_scales = torch.cat([torch.randn(4, 8), torch.randn(4, 8) * 1e-5], dim=-1)
    small = two_scales[:, 8:]

    def small_error(out):
        return ((out[:, 8:] - small).norm(dim=-1) / small.norm(dim=-1)).max()

    assert small_error(quantised_index_keys(two_scales)) > 0.1
    assert small_error(quantised_index_keys(two_scales, block=8)) < 2 ** -4


def test_hadamard_is_orthonormal_and_keeps_dot_products():
    for n in [1, 2, 4, 16]:
        h = hadamard(n)
        torch.testing.assert_close(h @ h.T, torch.eye(n))
        assert torch.equal(h.abs(), torch.full((n, n), n ** -0.5))
    h = hadamard(16)
    q, k = torch.randn(5, 16), torch.randn(7, 16)
    torch.testing.assert_close((q @ h) @ (k @ h).T, q @ k.T, atol=1e-5, rtol=1e-5)
    for bad in [6, 12, 0]:
        with pytest.raises(ValueError, match=f"n={bad}"):
            hadamard(bad)


# --- the bills --------------------------------------------------------------------------------------
@pytest.mark.parametrize("static", [False, True])
def test_measured_cache_bytes_equal_formula(static):
    cfg = CFG.replace(n_layers=3, index_head_dim=24)
    l, Dc, Dr, d_I = cfg.n_layers, cfg.kv_lora_rank, cfg.qk_rope_head_dim, cfg.index_head_dim
    assert dsa_elements_per_token(cfg) == l * (Dc + Dr + d_I)
    assert dsa_elements_per_token(cfg.replace(index_n_heads=0)) == l * (Dc + Dr)  # plain MLA
    model = Transformer(cfg)
    measured = measured_cache_bytes_per_token(model, n_tokens=9, static=static)
    assert measured == config_cache_bytes_per_token(cfg) == 4 * l * (Dc + Dr + d_I)


def test_decode_attention_cost_by_hand():
    cfg = CFG.replace(index_head_dim=16, index_n_heads=4)  # H 4, Dc 32, Dr 8, H_I 4, d_I 16
    S, k = 20, 4
    # dense: scores H·S·(Dc + Dr) + weighted sum H·S·Dc; reads S·(Dc + Dr)
    assert decode_attention_cost(cfg, S) == DecodeCost(4 * 20 * (32 + 8) + 4 * 20 * 32, 20 * (32 + 8))
    # sparse: the same attention over k latents, plus the indexer's H_I·S·d_I + S·H_I over S index keys
    sparse = decode_attention_cost(cfg, S, k)
    assert sparse == DecodeCost(4 * 4 * (32 + 8) + 4 * 4 * 32 + 4 * 20 * 16 + 20 * 4, 4 * (32 + 8) + 20 * 16)
    dense = decode_attention_cost(cfg, S)
    assert sparse.macs < dense.macs and sparse.elements_read < dense.elements_read
    # k covering the context: the same attention plus the indexer, so more than dense
    full = decode_attention_cost(cfg, S, k=S)
    assert full.macs > dense.macs and full.elements_read > dense.elements_read
    # without an indexer k only shortens the read
    plain = cfg.replace(index_n_heads=0)
    assert decode_attention_cost(plain, S, k) == DecodeCost(4 * 4 * 72, 4 * 40)
    with pytest.raises(ValueError, match="context"):
        decode_attention_cost(cfg, 0)


# --- configuration is the truth: k and the phase per call, the KL in the model's output ---------------
def _dsa_model():
    torch.manual_seed(0)
    return Transformer(CFG).eval()


def test_index_topk_per_call_equals_changing_the_default_and_changes_no_state():
    model, idx = _dsa_model(), torch.randint(0, CFG.vocab_size, (2, 12))
    per_call = model.run(idx, index_topk=7).logits
    assert [m.index_topk for m in dsa_layers(model)] == [CFG.index_topk] * CFG.n_layers  # nothing stored
    assert model.config.index_topk == CFG.index_topk
    set_index_topk(model, 7)
    assert model.config.index_topk == 7  # the configuration says what runs
    assert torch.equal(model(idx), per_call)
    assert not torch.equal(model.run(idx, index_topk=CFG.index_topk).logits, per_call)


def test_the_indexer_loss_comes_out_of_the_model_like_the_other_losses():
    model, idx = _dsa_model(), torch.randint(0, CFG.vocab_size, (2, 12))
    targets = torch.roll(idx, -1, dims=1)
    warm = model.run(idx, dsa_phase="warmup")
    assert warm.indexer_loss > 0 and torch.equal(warm.indexer_loss, indexer_loss(model))
    sparse = model.run(idx, targets, dsa_phase="sparse")
    assert torch.equal(sparse.loss, sparse.main_loss + sparse.aux_loss + sparse.indexer_loss)
    plain = model.run(idx, targets)  # inference: no KL, and none left over from the calls before
    assert float(plain.indexer_loss) == 0.0 and torch.equal(plain.loss, plain.main_loss + plain.aux_loss)


def test_dsa_settings_are_refused_for_a_model_without_dsa():
    model = Transformer(preset("test"))
    with pytest.raises(ValueError, match="need a DSA model"):
        model.run(torch.zeros(1, 4, dtype=torch.long), index_topk=2)
    with pytest.raises(ValueError, match="dsa_phase"):
        _dsa_model().run(torch.zeros(1, 4, dtype=torch.long), dsa_phase="train")
