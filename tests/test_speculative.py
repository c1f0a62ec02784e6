"""Self-speculative decoding: output identical to plain greedy, whatever the drafts; honest stats."""

import pytest
import torch

from helpers import generate
from helpers.config import preset
from helpers.model import Transformer
from helpers.speculative import speculative_generate, teacher_forced_acceptance


def mtp_model(seed: int = 0, **changes) -> Transformer:
    torch.manual_seed(seed)
    return Transformer(preset("test", mtp_depth=1, **changes)).eval()


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("prompt_len,n", [(1, 1), (1, 12), (5, 20), (9, 23)])
def test_identical_to_plain_greedy_untrained(prompt_len, n, fast):
    model = mtp_model()
    for seed in range(3):
        prompt = torch.randint(0, 256, (1, prompt_len), generator=torch.Generator().manual_seed(seed))
        res = speculative_generate(model, prompt, n, fast=fast)
        assert torch.equal(res.tokens, generate(model, prompt, n, fast=fast))
        assert res.new_tokens == n == len(res.accepted_mask)
        assert res.forward_passes == n - res.accepted_mask.count(True)  # an accepted draft saves one


def drafter(model, plain: torch.Tensor, right: torch.Tensor):
    """Replace module 1's draft by the plain greedy token (an oracle) where ``right`` says so and by
    a wrong token elsewhere, while the real module still runs (so its cache stays in step)."""
    real = model.mtp.draft_logits
    calls = []

    def draft_logits(m, hidden, tokens_ahead, cache):
        logits = real(m, hidden, tokens_ahead, cache).clone()
        pos = cache.length - 1 + 2  # the last position's draft is for t_{pos}
        if pos < plain.shape[1]:
            good = plain[0, pos].item()
            choice = good if right[len(calls) % len(right)] else (good + 1) % logits.shape[-1]
            logits[:, -1] = -1e4
            logits[:, -1, choice] = 1e4
        calls.append(pos)
        return logits

    model.mtp.draft_logits = draft_logits
    return calls


@pytest.mark.parametrize("pattern", [[True], [False], [True, False, True, True, False]])
def test_identical_whatever_the_drafts_and_the_stats_add_up(pattern):
    model = mtp_model(1)
    prompt = torch.randint(0, 256, (1, 4))
    n = 24
    plain = generate(model, prompt, n)
    drafter(model, plain, pattern)
    res = speculative_generate(model, prompt, n, fast=False)  # the oracle replaces the readable drafter
    assert torch.equal(res.tokens, plain)
    if pattern == [True]:
        assert res.acceptance_rate == 1.0
        # every step after the prefill yields two tokens, except a lone last one
        assert res.forward_passes == 1 + (n - 1) // 2 + (n - 1) % 2
    if pattern == [False]:
        assert res.accepted == 0 and res.tokens_per_forward == 1.0
    assert res.forward_passes == n - res.accepted  # each accepted draft saves one pass
    assert res.drafted <= res.forward_passes - 1  # the prefill and a lone last step draft nothing
    assert res.new_tokens == sum(1 for _ in res.accepted_mask) == n
    assert res.accepted == sum(res.accepted_mask)
    assert res.tokens_per_forward == pytest.approx(n / res.forward_passes)


def test_real_drafts_match_the_mtp_module_on_the_final_sequence():
    # the drafts the decoder makes are module 1's greedy guesses given the committed prefix
    model = mtp_model(2)
    prompt = torch.randint(0, 256, (1, 3))
    res = speculative_generate(model, prompt, 15)
    seq = res.tokens
    targets = torch.roll(seq, -1, 1)
    targets[:, -1] = -100
    full = model.run(seq, targets=targets).mtp.logits[0].argmax(-1)  # (1, T-1): guess for t_{i+2}
    for j, accepted in enumerate(res.accepted_mask):
        if accepted:  # token at position p was a draft made at position p - 2
            p = prompt.shape[1] + j
            assert full[0, p - 2] == seq[0, p]


def test_near_the_context_limit_and_zero_tokens():
    model = mtp_model(3)
    limit = model.config.max_seq_len
    prompt = torch.randint(0, 256, (1, limit - 5))
    res = speculative_generate(model, prompt, 5)
    assert torch.equal(res.tokens, generate(model, prompt, 5))
    assert torch.equal(speculative_generate(model, prompt, 0).tokens, prompt)


def test_bad_inputs_raise_clear_errors():
    plain = Transformer(preset("test"))
    prompt = torch.randint(0, 256, (1, 4))
    with pytest.raises(ValueError, match="mtp_depth=0"):
        speculative_generate(plain, prompt, 4)
    model = mtp_model()
    with pytest.raises(ValueError, match="B=2"):
        speculative_generate(model, torch.randint(0, 256, (2, 4)), 4)
    with pytest.raises(ValueError, match="max_seq_len"):
        speculative_generate(model, prompt, model.config.max_seq_len)
    with pytest.raises(ValueError, match="max_new_tokens"):
        speculative_generate(model, prompt, -1)
    model.mtp.target_shift = -1
    with pytest.raises(ValueError, match="target_shift=-1"):
        speculative_generate(model, prompt, 4)


def test_teacher_forced_acceptance_counts_agreements():
    model = mtp_model(4)
    seq = torch.randint(0, 256, (2, 13))
    x, y = seq[:, :-1], seq[:, 1:]
    out = model.run(x, targets=y)
    main, draft = out.logits.argmax(-1), out.mtp.logits[0].argmax(-1)
    by_hand = sum(int(draft[b, i] == main[b, i + 1]) for b in range(2) for i in range(11)) / 22
    assert teacher_forced_acceptance(model, x, y) == pytest.approx(by_hand)
    start = 7  # only the drafts for the tokens at positions 7.. of seq, made at positions i = start - 2 ..
    later = [int(draft[b, i] == main[b, i + 1]) for b in range(2) for i in range(start - 2, 11)]
    assert teacher_forced_acceptance(model, x, y, start=start) == pytest.approx(sum(later) / len(later))
    assert teacher_forced_acceptance(model, x, y, start=2) == teacher_forced_acceptance(model, x, y)


def test_bench_suite_runs_and_its_figures_are_consistent():
    from helpers import bench
    from helpers.bench import mtp as mtp_bench

    assert "mtp" in bench.suites()
    cfg = preset("test", mtp_depth=1)
    out = mtp_bench.run(quick=True, cfg=cfg, steps=3, n_new=6, prompt_len=8, main_layers=5)
    names = {"val_loss", "module_accuracy", "teacher_forced_acceptance", "acceptance_rate",
             "tokens_per_forward", "plain_ms_per_token", "speculative_ms_per_token", "speculative_speedup",
             "verify_over_step", "draft_over_step", "predicted_speedup", "trained_layers", "main_layers"}
    per_depth = {f"{n}[L={L}]" for n in ("speculative_speedup", "predicted_speedup", "draft_over_step")
                 for L in (cfg.n_layers, 5)}
    assert set(out) == {f"mtp.{n}" for n in names | per_depth}
    assert out["mtp.main_layers"] == 5
    assert out["mtp.speculative_speedup[L=5]"] == out["mtp.speculative_speedup"]
    assert 0 <= out["mtp.acceptance_rate"] <= 1 and 1 <= out["mtp.tokens_per_forward"] <= 2
    assert out["mtp.speculative_speedup"] == pytest.approx(
        out["mtp.plain_ms_per_token"] / out["mtp.speculative_ms_per_token"])


def test_a_deepened_model_decodes_and_drafts_exactly_as_the_trained_one():
    """``bench.mtp.deepened``: extra blocks with zero output projections change no token, no hidden state
    and no draft, only the cost of a main pass."""
    from helpers.bench.mtp import deepened

    model = mtp_model(6)
    deep = deepened(model, model.config.n_layers + 3)
    assert len(deep.layers) == model.config.n_layers + 3 and deep.num_params() > model.num_params()
    prompt = torch.randint(0, 256, (1, 5), generator=torch.Generator().manual_seed(0))
    a, b = speculative_generate(model, prompt, 20), speculative_generate(deep, prompt, 20)
    assert torch.equal(a.tokens, b.tokens) and a.accepted_mask == b.accepted_mask
    x = torch.randint(0, 256, (2, 12))
    with torch.no_grad():
        assert torch.allclose(model.run(x).hidden, deep.run(x).hidden, atol=1e-6)
    with pytest.raises(ValueError, match="fewer than"):
        deepened(model, 1)


def test_identical_for_a_deepseek_shaped_model():
    # MLA caches (c_kv, k_pe) and MoE blocks (the MTP block too, like V3's layer 61) crop and verify alike
    model = mtp_model(5, attn_type="mla", n_routed_experts=4, n_activated_experts=2, n_shared_experts=1,
                      n_dense_layers=1, balance="loss_free+seq_aux")
    assert type(model.mtp.layers[0].block.ffn).__name__ == "MoE"
    for seed in range(3):
        prompt = torch.randint(0, 256, (1, 5), generator=torch.Generator().manual_seed(seed))
        assert torch.equal(speculative_generate(model, prompt, 18).tokens, generate(model, prompt, 18))


def test_the_flat_path_drafts_and_accepts_exactly_as_the_readable_one():
    """``helpers.decode_plan`` behind the loop: the same tokens, the same drafts accepted. The two final
    norms keep one channel only and the head reads it with distinct weights, so main model and drafter
    each pick one of two tokens by that channel's sign: drafts are accepted about half the time."""
    model = mtp_model(2, n_kv_heads=2)
    with torch.no_grad():
        for norm in (model.norm, model.mtp.layers[0].norm):
            norm.weight.zero_()
            norm.weight[0] = 1.0
        model.head.weight[:, 0] = torch.linspace(-1, 1, model.config.vocab_size)
    accepted = 0
    for seed in range(4):
        prompt = torch.randint(0, 256, (1, 6), generator=torch.Generator().manual_seed(seed))
        lean, readable = (speculative_generate(model, prompt, 24, fast=f) for f in (True, False))
        assert torch.equal(lean.tokens, readable.tokens)
        assert lean.accepted_mask == readable.accepted_mask and lean.drafted == readable.drafted
        accepted += lean.accepted
    assert 0 < accepted < 4 * 22  # both outcomes occurred


@pytest.mark.parametrize("fast", [True, False])
def test_non_finite_logits_are_named_after_the_loop(fast):
    """The loop checks every main pass's logits once, at the end, and names the first bad step."""
    model = mtp_model(0)
    with torch.no_grad():
        model.head.weight[3, 0] = float("inf")
    with pytest.raises(FloatingPointError, match="generation step 0 "):
        speculative_generate(model, torch.zeros(1, 4, dtype=torch.long), 10, fast=fast)


def test_depth_sweep_uses_one_cost_measurement_and_one_tokens_per_pass_for_every_depth():
    """Lesson 05's depth curve: every depth timed in every round, each prediction from that depth's one
    cost measurement (the median over the rounds) and the one tokens-per-pass the prompts give."""
    from helpers.bench import mtp as mtp_bench

    model = mtp_model(3)
    L = model.config.n_layers
    prompts = [torch.randint(0, 256, (1, 6), generator=torch.Generator().manual_seed(s)) for s in range(2)]
    sweep = mtp_bench.depth_sweep(model, (L, L + 2), prompts, 8, rounds=3, cost_repeats=1,
                                  predict_only=(L + 3,))
    runs = [speculative_generate(model, p, 8) for p in prompts]
    assert sweep.tokens_per_forward == 16 / sum(r.forward_passes for r in runs)
    assert sweep.acceptance == sum(r.accepted for r in runs) / sum(r.drafted for r in runs)
    assert set(sweep.speedup) == {L, L + 2} and set(sweep.predicted) == {L, L + 2, L + 3}
    for depth in (L, L + 2, L + 3):
        costs = sweep.costs[depth]
        assert len(costs) == 3
        medians = {k: float(torch.tensor([c[k] for c in costs]).median()) for k in costs[0]}
        assert sweep.median_costs[depth] == medians
        assert sweep.predicted[depth] == mtp_bench.predicted_speedup(sweep.tokens_per_forward, medians)
    for depth in (L, L + 2):
        assert len(sweep.speedup[depth]) == 3
        for s, p, q in zip(sweep.speedup[depth], sweep.plain_ms[depth], sweep.speculative_ms[depth]):
            assert s == pytest.approx(p / q)
        lo, med, hi = sweep.quartiles(depth)
        assert lo <= med <= hi and med == pytest.approx(sweep.median("speedup", depth))
        assert 0 <= sweep.fraction_above_one(depth) <= 1

