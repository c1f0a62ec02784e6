"""helpers.exercises: every exercise check accepts the reference solution, rejects the typical wrong
answers and tolerates None (not attempted). Lesson 00's solutions live in helpers/exercises/solutions.py
(the notebook points a stuck learner there); the later lessons' solutions are written out here, beside
the checks that must accept them."""

import torch

from helpers.config import preset
from helpers.exercises import l00, l02, solutions
from helpers.kv_cache import KVCache
from helpers.params import param_count


def test_l00_param_count():
    cfg = preset("tiny")
    assert l00.check_param_count(solutions.l00_param_count(cfg), cfg)
    assert not l00.check_param_count(solutions.l00_param_count(cfg) - 1, cfg)
    assert not l00.check_param_count(None, cfg)


def test_l00_rmsnorm():
    assert l00.check_rmsnorm(solutions.l00_rmsnorm)
    assert not l00.check_rmsnorm(lambda x, w, eps: x * w)  # forgot to normalise
    assert not l00.check_rmsnorm(lambda x, w, eps: w * x / x.pow(2).mean(-1, keepdim=True).sqrt())  # no eps
    assert not l00.check_rmsnorm(  # eps outside the square root
        lambda x, w, eps: w * x / (x.pow(2).mean(-1, keepdim=True).sqrt() + eps))

    def todo(x, w, eps):
        raise NotImplementedError

    assert not l00.check_rmsnorm(todo)


def test_l00_causal_mask():
    assert l00.check_causal_mask(solutions.l00_causal_mask)
    assert not l00.check_causal_mask(lambda t, s: torch.ones(t, s, dtype=torch.bool).tril())


# --- lesson 01 exercises: reference solutions, and checks that accept them and reject wrong answers ---
class SolutionCache(KVCache):
    def update(self, layer_idx, *new):
        old = self.layers[layer_idx]
        full = tuple(new) if old is None else tuple(torch.cat([o, n], dim=-2) for o, n in zip(old, new))
        self.layers[layer_idx] = full
        return full


class ForgetfulCache(KVCache):  # returns only the new positions: attention would not see the past
    def update(self, layer_idx, *new):
        self.layers[layer_idx] = tuple(new)
        return tuple(new)


class TodoCache(KVCache):
    def update(self, layer_idx, *new):
        raise NotImplementedError


def test_l01_cache_size():
    from helpers.exercises import l01

    solution = 2 * 80 * 8 * 128 * 2 * 32_768 * 4  # K and V · layers · G · Dh · fp16 bytes · tokens · batch
    assert l01.check_cache_size(solution)
    assert not l01.check_cache_size(solution // 2)
    assert not l01.check_cache_size(solution * 8)
    assert not l01.check_cache_size(None)


def test_l01_cache_update():
    from helpers.exercises import l01

    assert l01.check_cache_update(SolutionCache)
    assert not l01.check_cache_update(ForgetfulCache)
    assert not l01.check_cache_update(TodoCache)


def test_l01_quantize_per_token():
    from helpers.exercises import l01

    def solution(x):
        scale = x.abs().amax(dim=-1, keepdim=True) / 127
        return torch.round(x / scale).clamp(-127, 127).to(torch.int8), scale

    def per_tensor(x):  # one scale for everything: wrong shape
        scale = x.abs().max() / 127
        return torch.round(x / scale).to(torch.int8), scale

    def todo(x):
        raise NotImplementedError

    assert l01.check_quantize_per_token(solution)
    assert not l01.check_quantize_per_token(per_tensor)
    assert not l01.check_quantize_per_token(lambda x: (x.to(torch.int8), x.abs().amax(-1, keepdim=True)))
    assert not l01.check_quantize_per_token(todo)


# --- exercises: each check accepts the solution, rejects a wrong answer, tolerates None ----------
def solution_cache_bytes(n_layers, n_kv_heads, head_dim, bytes_per_element):
    return 2 * n_layers * n_kv_heads * head_dim * bytes_per_element


def solution_repeat_kv(k, n_rep):
    return k.repeat_interleave(n_rep, dim=1)  # (B, G·n_rep, S, Dh)


def solution_mean_pool(weight, n_from, n_to, head_dim):
    return weight.view(n_to, n_from // n_to, head_dim, -1).mean(1).reshape(n_to * head_dim, -1)


def test_l02_exercise_checks():
    assert l02.check_cache_bytes(solution_cache_bytes)
    assert not l02.check_cache_bytes(lambda l, g, dh, b: l * g * dh * b)  # forgot V
    assert not l02.check_cache_bytes(lambda *a: None)
    assert l02.check_repeat_kv(solution_repeat_kv)
    assert not l02.check_repeat_kv(lambda k, n: k.repeat(1, n, 1, 1))  # tiles instead of interleaving
    assert not l02.check_repeat_kv(lambda k, n: None)
    assert l02.check_mean_pool(solution_mean_pool)
    assert not l02.check_mean_pool(lambda w, a, b, dh: w.view(b, a // b, dh, -1)[:, 0].reshape(b * dh, -1))
    assert not l02.check_mean_pool(lambda w, a, b, dh: w.view(-1, a // b, w.shape[1]).mean(1))  # rows
    assert not l02.check_mean_pool(lambda *a: None)


# --- the lesson's exercises: each check accepts the reference solution and rejects wrong answers ---
def solution_mla_cache_bytes(n_layers, n_heads, kv_lora_rank, qk_nope_head_dim, qk_rope_head_dim,
                             v_head_dim, bytes_per_element):
    return n_layers * (kv_lora_rank + qk_rope_head_dim) * bytes_per_element


def solution_value_absorption(weights, c_kv, wkv_b, n_heads, qk_nope_head_dim, v_head_dim):
    w_uv = wkv_b.view(n_heads, qk_nope_head_dim + v_head_dim, -1)[:, qk_nope_head_dim:]  # (H, Dv, Dc)
    o_lat = weights @ c_kv.unsqueeze(1)  # (B, H, T, Dc): weighted sum of latents
    return o_lat @ w_uv.transpose(1, 2)  # (B, H, T, Dv)


def solution_output_fold(wkv_b, wo, n_heads, qk_nope_head_dim, v_head_dim):
    w_uv = wkv_b.view(n_heads, qk_nope_head_dim + v_head_dim, -1)[:, qk_nope_head_dim:]  # (H, Dv, Dc)
    D = wo.shape[0]
    return torch.einsum("dhv,hvc->dhc", wo.view(D, n_heads, v_head_dim), w_uv).reshape(D, -1)


def test_l03_exercise_checks():
    from helpers.exercises import l03

    assert l03.check_mla_cache_bytes(solution_mla_cache_bytes)
    assert not l03.check_mla_cache_bytes(lambda l, h, dc, dn, dr, dv, b: l * dc * b)  # forgot k_pe
    assert not l03.check_mla_cache_bytes(lambda l, h, dc, dn, dr, dv, b: l * h * (dn + dr + dv) * b)
    assert not l03.check_mla_cache_bytes(lambda *a: None)
    assert l03.check_value_absorption(solution_value_absorption)

    def wrong_half(weights, c_kv, wkv_b, h, dn, dv):  # used W_UK's rows instead of W_UV's
        w = wkv_b.view(h, dn + dv, -1)[:, :dv]
        return weights @ c_kv.unsqueeze(1) @ w.transpose(1, 2)

    assert not l03.check_value_absorption(wrong_half)

    def not_absorbed(weights, c_kv, wkv_b, h, dn, dv):  # right values, but V rebuilt for every position
        w_uv = wkv_b.view(h, dn + dv, -1)[:, dn:]  # (H, Dv, Dc)
        v = torch.einsum("bsc,hvc->bhsv", c_kv, w_uv)  # (B, H, S, Dv)
        return weights @ v

    assert not l03.check_value_absorption(not_absorbed)
    assert not l03.check_value_absorption(lambda *a: None)
    assert l03.check_output_fold(solution_output_fold)
    assert not l03.check_output_fold(  # heads mixed up: contracted in the wrong order
        lambda wkv_b, wo, h, dn, dv: solution_output_fold(wkv_b, wo, h, dn, dv).view(
            wo.shape[0], -1, h).transpose(1, 2).reshape(wo.shape[0], -1))
    assert not l03.check_output_fold(lambda *a: None)


# --- lesson 04 exercises: reference solutions, and the checks accept them and reject wrong answers ----
def solution_f_and_P(probs, indices):
    E = probs.shape[1]
    f = torch.bincount(indices.flatten(), minlength=E).float() / indices.numel()
    return f, probs.mean(0)


def solution_bias_update(bias, load, gamma):
    return bias + gamma * torch.sign(load.float().mean() - load.float())


def solution_max_vio(counts):
    c = counts.float()
    return ((c.max() - c.mean()) / c.mean()).item()


def test_l04_exercise_checks():
    from helpers.exercises import l04

    assert l04.check_f_and_P(solution_f_and_P)
    assert not l04.check_f_and_P(lambda p, i: (p.mean(0), p.mean(0)))  # soft f
    assert not l04.check_f_and_P(
        lambda p, i: (torch.bincount(i.flatten(), minlength=p.shape[1]).float() / i.shape[0], p.mean(0)))
    assert not l04.check_f_and_P(lambda p, i: None)
    assert l04.check_bias_update(solution_bias_update)
    assert not l04.check_bias_update(lambda b, l, g: b - g * torch.sign(l.mean() - l))  # sign flipped
    assert not l04.check_bias_update(lambda b, l, g: b + g * (l.mean() - l))  # no sign()
    assert l04.check_max_vio(solution_max_vio)
    assert not l04.check_max_vio(lambda c: (c.float().max() / c.float().mean()).item())
    assert not l04.check_max_vio(lambda c: None)


# --- lesson 05 exercise checks, proven against reference solutions -------------------------------
def solution_depth_targets(idx, targets, k):
    T = idx.shape[1]
    return idx[:, k:], targets[:, k:T]


def solution_mtp_loss(depth_losses, lam):
    return lam / len(depth_losses) * sum(depth_losses)


def solution_acceptance(main_logits, draft_logits, targets):
    main = main_logits.argmax(-1)[:, 1:]  # (B, T-1): the main model's choice for t_{i+2}, at i+1
    return (draft_logits.argmax(-1) == main).float().mean().item()


def test_l05_exercise_checks():
    from helpers.exercises import l05

    assert l05.check_depth_targets(solution_depth_targets)
    assert not l05.check_depth_targets(lambda idx, tg, k: (idx[:, k:], idx[:, k:]))  # the leak
    assert not l05.check_depth_targets(lambda idx, tg, k: (idx[:, k:], tg[:, k - 1:-1]))  # shifted
    assert not l05.check_depth_targets(lambda *a: None)
    assert l05.check_mtp_loss(solution_mtp_loss)
    assert not l05.check_mtp_loss(lambda ls, lam: lam * sum(ls))  # forgot 1/D
    assert not l05.check_mtp_loss(lambda ls, lam: None)
    assert l05.check_acceptance(solution_acceptance)
    assert l05.check_acceptance(  # a tensor answer is fine too
        lambda m, d, t: (d.argmax(-1) == m.argmax(-1)[:, 1:]).float().mean())


def test_l05_acceptance_rejects_the_answers_learners_give(capsys):
    from helpers.exercises import l05

    same_position = lambda m, d, t: (d.argmax(-1) == m.argmax(-1)[:, :-1]).float().mean()  # noqa: E731
    assert not l05.check_acceptance(same_position)
    assert "same position" in capsys.readouterr().out
    draft_is_right = lambda m, d, t: (d.argmax(-1) == t[:, 1:]).float().mean()  # noqa: E731
    assert not l05.check_acceptance(draft_is_right)
    assert "how often the draft is right" in capsys.readouterr().out
    main_is_right = lambda m, d, t: (m.argmax(-1) == t).float().mean()  # noqa: E731
    assert not l05.check_acceptance(main_is_right)
    assert not l05.check_acceptance(lambda m, d, t: (d.argmax(-1) == m.argmax(-1)[:, 1:]).float())  # no mean
    assert not l05.check_acceptance(lambda m, d, t: None)
    assert "not attempted" in capsys.readouterr().out


# --- the exercises: each check accepts the reference solution and rejects the typical mistakes ---------
def solution_active_params(cfg):
    pc = param_count(cfg)
    return pc.total - pc.n_moe_layers * (cfg.n_routed_experts - cfg.n_activated_experts) * pc.expert


def solution_rope_permutation(rope_dim):
    return torch.cat([torch.arange(0, rope_dim, 2), torch.arange(1, rope_dim, 2)])


def solution_l06_tokens_per_forward(acceptance):
    return 1 + acceptance


def test_l06_exercise_checks():
    from helpers.exercises import l06

    assert l06.check_active_params(solution_active_params)
    assert not l06.check_active_params(lambda cfg: param_count(cfg).total)
    assert not l06.check_active_params(lambda cfg: param_count(cfg).active + param_count(cfg).mtp)
    assert not l06.check_active_params(lambda cfg: None)
    assert l06.check_rope_permutation(solution_rope_permutation)
    assert not l06.check_rope_permutation(lambda d: solution_rope_permutation(d).argsort())
    assert not l06.check_rope_permutation(lambda d: torch.arange(d))
    assert l06.check_tokens_per_forward(solution_l06_tokens_per_forward)
    assert not l06.check_tokens_per_forward(lambda a: 2 * a)


def test_l06_active_params_states_its_convention_and_names_each_wrong_count(capsys):
    """The exact answer depends on what counts; the exercise states it (the routers' selection bias is a
    buffer, not a parameter; the routers and shared experts are active) and the hint names the slip."""
    from helpers.exercises import l06

    def with_bias(cfg):  # counts the selection bias b_i of every routed expert in every MoE layer
        pc = param_count(cfg)
        return pc.active + pc.n_moe_layers * cfg.n_routed_experts

    assert not l06.check_active_params(with_bias)
    assert "buffer" in capsys.readouterr().out
    assert not l06.check_active_params(lambda cfg: param_count(cfg).active - param_count(cfg).router)
    assert "router centroids" in capsys.readouterr().out
    assert not l06.check_active_params(lambda cfg: param_count(cfg).active - param_count(cfg).shared_experts)
    assert "shared experts" in capsys.readouterr().out
    assert "buffer" in l06.check_active_params.__doc__


def test_l06_convention_matches_the_built_model():
    """The convention is what the model holds: the selection bias is a buffer, every other router weight
    and norm a parameter, so param_count's active figure is the parameters a token touches."""
    from helpers.lessons.capstone import CPU_CONFIG
    from helpers.model import Transformer

    torch.manual_seed(0)
    model = Transformer(CPU_CONFIG)
    buffers = {name for name, _ in model.named_buffers()}
    params = {name for name, _ in model.named_parameters()}
    assert {"layers.1.ffn.gate.bias", "layers.2.ffn.gate.bias"} <= buffers  # the selection bias
    assert {"layers.1.ffn.gate.weight", "layers.2.ffn.gate.weight"} <= params  # the centroids
    assert not any(name.endswith("gate.bias") for name in params)
    assert solution_active_params(CPU_CONFIG) == param_count(CPU_CONFIG).active


def test_a_check_displays_nothing_more_than_its_printed_verdict(capsys):
    """A check ends its notebook cell: a bare True/False would be echoed (and saved) under the verdict."""
    from helpers.exercises import report

    ok, bad = report(True, "x"), report(False, "y", "hint")
    assert ok and not bad and ok == True and bad == False  # noqa: E712 (the comparison is the point)
    assert ok._ipython_display_() is None and repr(bad) == "Checked(False)"
    assert "✅ x: correct" in capsys.readouterr().out


# --- lesson 07 exercise checks, proven against reference solutions -------------------------------
def solution_l07_index_scores(q, k, w):
    T, S = q.shape[0], k.shape[0]
    per_head = torch.relu(torch.einsum("tjd,sd->tjs", q, k) / q.shape[-1] ** 0.5)  # (T, H_I, S)
    scores = torch.einsum("tj,tjs->ts", w, per_head)
    future = torch.arange(S).unsqueeze(0) > torch.arange(S - T, S).unsqueeze(1)
    return scores.masked_fill(future, float("-inf"))


def solution_l07_decode_reads(cfg, context, k):
    return context * cfg.index_head_dim + min(k, context) * (cfg.kv_lora_rank + cfg.qk_rope_head_dim)


def solution_l07_indexer_kl(p, scores, keep):
    logq = scores.masked_fill(~keep, float("-inf")).log_softmax(-1)
    pk = p * keep
    pk = pk / pk.sum(-1, keepdim=True)
    terms = torch.where(pk > 0, pk * (pk.clamp_min(1e-30).log() - logq), torch.zeros_like(pk))
    return terms.sum(-1).mean()


def test_l07_exercise_checks():
    from helpers.exercises import l07

    assert l07.check_index_scores(solution_l07_index_scores)
    # the typical slips: ReLU after summing the heads, no causal mask, softmax instead of ReLU
    assert not l07.check_index_scores(lambda q, k, w: torch.relu(
        torch.einsum("tj,tjs->ts", w, torch.einsum("tjd,sd->tjs", q, k) / q.shape[-1] ** 0.5)))
    assert not l07.check_index_scores(lambda q, k, w: torch.einsum(
        "tj,tjs->ts", w, torch.relu(torch.einsum("tjd,sd->tjs", q, k) / q.shape[-1] ** 0.5)))
    assert not l07.check_index_scores(lambda q, k, w: solution_l07_index_scores(q, k, w).softmax(-1))
    assert not l07.check_index_scores(lambda q, k, w: None)
    assert l07.check_decode_reads(solution_l07_decode_reads)
    assert not l07.check_decode_reads(lambda cfg, S, k: k * (cfg.kv_lora_rank + cfg.qk_rope_head_dim))
    assert not l07.check_decode_reads(
        lambda cfg, S, k: S * cfg.index_head_dim + k * (cfg.kv_lora_rank + cfg.qk_rope_head_dim))
    assert l07.check_indexer_kl(solution_l07_indexer_kl)
    causal = lambda p, keep: torch.ones_like(keep).tril(p.shape[1] - p.shape[0])  # noqa: E731
    assert not l07.check_indexer_kl(lambda p, s, keep: solution_l07_indexer_kl(p, s, causal(p, keep)))
    assert not l07.check_indexer_kl(
        lambda p, s, keep: solution_l07_indexer_kl(s.softmax(-1), p.clamp_min(1e-9).log(), keep))


# --- lesson 08 exercise checks, proven against reference solutions -------------------------------
def l08_grpo_loss(normalise=True, pick=torch.minimum, kl_sign=1.0, kl_flip=False, use_mask=True):
    """The reference GRPO loss (defaults) and, with one argument changed, a mistake learners make."""
    def fn(logp, old, ref, rewards, mask, eps, beta):
        adv = rewards - rewards.mean(dim=1, keepdim=True)
        if normalise:
            adv = adv / (rewards.std(dim=1, keepdim=True, correction=0) + 1e-6)
        adv = adv.flatten()[:, None]  # (B·Gs, 1)
        ratio = (logp - old).exp()
        surrogate = pick(ratio * adv, ratio.clamp(1 - eps, 1 + eps) * adv)
        d = (logp - ref) if kl_flip else (ref - logp)
        kl = d.exp() - d - 1
        m = mask if use_mask else torch.ones_like(mask)
        per_seq = lambda x: ((x * m).sum(1) / m.sum(1)).mean()  # noqa: E731
        return -(per_seq(surrogate) - kl_sign * beta * per_seq(kl))
    return fn


solution_l08_grpo_loss = l08_grpo_loss()


def solution_l08_advantages(r):
    std = r.std(dim=-1, keepdim=True, unbiased=False)
    adv = (r - r.mean(dim=-1, keepdim=True)) / (std + 1e-6)
    return torch.where(std > 0, adv, torch.zeros_like(adv))


def l08_wrong_grpo_losses():
    return {"no clip": l08_grpo_loss(pick=lambda u, c: u), "wrong side": l08_grpo_loss(pick=torch.maximum),
            "no min": l08_grpo_loss(pick=lambda u, c: c), "not normalised": l08_grpo_loss(normalise=False),
            "kl sign": l08_grpo_loss(kl_sign=-1.0), "kl flipped": l08_grpo_loss(kl_flip=True),
            "no mask": l08_grpo_loss(use_mask=False)}


def test_l08_exercise_checks(capsys):
    from helpers.exercises import l08

    assert l08.check_grpo_loss(solution_l08_grpo_loss)
    for name, wrong in l08_wrong_grpo_losses().items():
        assert not l08.check_grpo_loss(wrong), name
    out = capsys.readouterr().out
    for hint in ("clip the ratio", "not the max", "keep the unclipped branch", "normalise the advantages",
                 "is a penalty", "r = π_ref / π_θ"):
        assert hint in out, hint
    assert not l08.check_grpo_loss(lambda *a: None)
    assert l08.check_advantages(solution_l08_advantages)
    assert not l08.check_advantages(
        lambda r: (r - r.mean(-1, keepdim=True)) / (r.std(-1, keepdim=True) + 1e-6))
    assert not l08.check_advantages(lambda r: r - r.mean(-1, keepdim=True))
    assert l08.check_zero_signal(lambda p, g: p ** g + (1 - p) ** g)
    assert not l08.check_zero_signal(lambda p, g: (1 - p) ** g)
    assert "add p^Gs" in capsys.readouterr().out
    assert not l08.check_zero_signal(lambda p, g: 1 - p)


# --- lesson 09 exercise checks, proven against reference solutions -------------------------------
def solution_l09_block_scales(x, block):
    br, bc = block
    R, C = x.shape
    amax = x.float().reshape(R // br, br, C // bc, bc).abs().amax(dim=(1, 3))
    return torch.where(amax > 0, amax / 448.0, torch.ones_like(amax))


def solution_l09_promoted_sum(p, bits, nc):
    from helpers.fp8 import round_bits

    partial = torch.zeros(p.shape[0], dtype=torch.float64)
    total = torch.zeros(p.shape[0], dtype=torch.float32)
    for k in range(p.shape[1]):
        partial = round_bits(partial + p[:, k], bits)
        if (k + 1) % nc == 0:
            total, partial = total + partial.float(), torch.zeros_like(partial)
    return (total + partial.float()).double()


def test_l09_exercise_checks():
    import math

    from helpers.exercises import l09
    from helpers.fp8 import round_bits

    assert l09.check_block_scales(solution_l09_block_scales)
    assert not l09.check_block_scales(lambda x, b: 1 / solution_l09_block_scales(x, b))
    assert not l09.check_block_scales(lambda x, b: solution_l09_block_scales(x, b) * 448)
    assert not l09.check_block_scales(  # one scale per tensor
        lambda x, b: torch.full_like(solution_l09_block_scales(x, b), x.abs().max().item() / 448))
    assert not l09.check_block_scales(lambda x, b: None)
    assert l09.check_promoted_sum(solution_l09_promoted_sum)
    assert not l09.check_promoted_sum(lambda p, bits, nc: solution_l09_promoted_sum(p, bits, p.shape[1] + 1))

    def no_reset(p, bits, nc):  # promotes, but never restarts the partial sum: it is counted twice
        partial = torch.zeros(p.shape[0], dtype=torch.float64)
        total = torch.zeros(p.shape[0], dtype=torch.float32)
        for k in range(p.shape[1]):
            partial = round_bits(partial + p[:, k], bits)
            if (k + 1) % nc == 0:
                total = total + partial.float()
        return (total + partial.float()).double()

    assert not l09.check_promoted_sum(no_reset)
    assert not l09.check_promoted_sum(lambda p, bits, nc: p.sum(-1))
    assert l09.check_fp8_weight_bytes(lambda R, C: R * C + 4 * math.ceil(R / 128) * math.ceil(C / 128))
    assert not l09.check_fp8_weight_bytes(lambda R, C: R * C)
    assert not l09.check_fp8_weight_bytes(lambda R, C: R * C + 4 * (R * C) // (128 * 128))
# --- lesson 10 exercise checks, proven against reference solutions -------------------------------
def _l10_token_rank(n, w):
    return torch.cat([torch.full((len(c),), r) for r, c in enumerate(torch.tensor_split(torch.arange(n), w))])


def solution_l10_send_counts(idx, w, e):
    n, k = idx.shape
    token_rank = _l10_token_rank(n, w)
    out = torch.zeros(w, w, dtype=torch.long)
    for t in range(n):
        for j in range(k):
            out[token_rank[t], int(idx[t, j]) // (e // w)] += 1
    return out


def solution_l10_cross_node(idx, w, e, ranks_per_node):
    n = idx.shape[0]
    token_rank = _l10_token_rank(n, w)
    total = 0
    for t in range(n):
        nodes = {int(x) // (e // w) // ranks_per_node for x in idx[t]}
        total += len(nodes - {int(token_rank[t]) // ranks_per_node})
    return total


def test_l10_exercise_checks():
    from helpers.exercises import l10

    assert l10.check_send_counts(solution_l10_send_counts)
    assert not l10.check_send_counts(lambda idx, w, e: solution_l10_send_counts(idx, w, e).T)
    assert not l10.check_send_counts(lambda idx, w, e: (solution_l10_send_counts(idx, w, e) > 0).long())
    assert not l10.check_send_counts(lambda idx, w, e: None)
    assert l10.check_cross_node(solution_l10_cross_node)
    assert not l10.check_cross_node(lambda idx, w, e, r: solution_l10_cross_node(idx, w, e, 1))
    assert not l10.check_cross_node(
        lambda idx, w, e, r: sum(int(x) // (e // w) // r != t * w // idx.shape[0] // r
                                 for t in range(idx.shape[0]) for x in idx[t]))
    assert l10.check_bubble(lambda pp, f, b: (pp - 1) * (f + b))
    assert not l10.check_bubble(lambda pp, f, b: pp * (f + b))
    assert not l10.check_bubble(lambda pp, f, b: (pp - 1) * f)
