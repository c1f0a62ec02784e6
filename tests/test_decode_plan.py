"""The flat decode step (``helpers.decode_plan``) against the readable model it rearranges: the same
logits to float rounding, the same greedy and sampled tokens, the same MTP drafts; models it does not
cover are named and left to the readable path."""

import math

import pytest
import torch

from helpers.attention import apply_rope, rope_tables
from helpers.config import preset
from helpers.decode_plan import DecodePlan, DraftPlan, folded_norm_weight, row_scale, scale_eps
from helpers.generate import generate
from helpers.model import Transformer
from helpers.mtp import MTPCache

ATOL = 2e-5


def model_with(seed: int = 0, **changes) -> Transformer:
    torch.manual_seed(seed)
    return Transformer(preset("test", **changes)).eval()


def test_rope_as_two_elementwise_calls_equals_rotate_half():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 3 * 8)  # (B, T, heads·Dh), heads side by side
    cos, sin = rope_tables(8, 5)
    signed = torch.cat([-sin[:, :4], sin[:, 4:]], dim=1)
    swapped = x.unflatten(-1, (3, 2, 4)).flip(-2).flatten(-3)  # each head's halves exchanged
    got = torch.addcmul(x * cos.repeat(1, 3), swapped, signed.repeat(1, 3))
    want = apply_rope(x.view(2, 5, 3, 8).transpose(1, 2), cos, sin).transpose(1, 2).reshape(2, 5, 24)
    assert torch.allclose(got, want, atol=1e-6)


def test_the_folded_norm_equals_rmsnorm_then_the_product():
    model = model_with(0)
    block = model.layers[0]
    with torch.no_grad():
        block.attn_norm.weight.uniform_(0.5, 1.5)  # a gain that is not all ones
        x = torch.randn(4, model.config.dim) * 3
        want = block.attn_norm(x) @ torch.cat([block.attn.wq.weight, block.attn.wk.weight]).t()
        folded = folded_norm_weight(block.attn_norm, block.attn.wq, block.attn.wk)
        got = (x @ folded) * row_scale(x, scale_eps(x.shape[-1], block.attn_norm.eps, x))
    assert torch.allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("kv_heads", [None, 2, 1])  # MHA, GQA, MQA
def test_prefill_steps_verification_and_crop_match_the_model(kv_heads):
    model = model_with(1, n_kv_heads=kv_heads)
    idx = torch.randint(0, 256, (2, 20), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        want = model(idx)  # (B, T, V): the readable model, no cache
        plan = DecodePlan(model, 2, 24)
        got = [plan.logits(plan.step(idx[:, :9]))]  # a prefill
        for t in range(9, 12):  # single steps
            got.append(plan.logits(plan.step(idx[:, t:t + 1])))
        plan.step(torch.zeros(2, 3, dtype=torch.long))  # three positions to be rolled back
        plan.crop(12)
        got.append(plan.logits(plan.step(idx[:, 12:14])))  # 2 positions after a cached prefix
        got.append(plan.logits(plan.step(idx[:, 14:20])))
        assert plan.length == 20
    assert torch.allclose(torch.cat(got, dim=1), want, atol=ATOL)


@pytest.mark.parametrize("kv_heads", [None, 1])
def test_generate_takes_the_plan_and_matches_the_readable_loop(kv_heads):
    model = model_with(2, n_kv_heads=kv_heads)
    prompt = torch.randint(0, 256, (3, 5), generator=torch.Generator().manual_seed(1))
    fast, readable = (generate(model, prompt, 20, return_logits=True, fast=f) for f in (True, False))
    assert torch.equal(fast.tokens, readable.tokens)
    assert torch.allclose(fast.step_logits, readable.step_logits, atol=ATOL)
    sampled = [generate(model, prompt, 20, temperature=0.9, top_k=40, seed=3, fast=f) for f in (True, False)]
    assert torch.equal(*sampled)


def test_the_draft_plan_matches_the_mtp_module():
    model = model_with(3, mtp_depth=1, n_kv_heads=2)
    torch.manual_seed(4)
    hidden, ahead = torch.randn(1, 7, model.config.dim), torch.randint(0, 256, (1, 7))
    with torch.inference_mode():
        cache = MTPCache(model.config, 16)
        plan = DraftPlan(model, 16)
        for lo, hi in ((0, 5), (5, 6), (6, 7)):  # a prefill, then one position at a time
            want = model.mtp.draft_logits(model, hidden[:, lo:hi], ahead[:, lo:hi], cache)[0, -1]
            assert torch.allclose(plan.draft(hidden[:, lo:hi], ahead[:, lo:hi]), want, atol=ATOL)


DEEPSEEK_SHAPED = {  # MLA (with and without a query latent), MoE with groups, biases and a shared expert
    "mla+moe": dict(attn_type="mla", q_lora_rank=24, kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=4,
                    v_head_dim=8, n_routed_experts=8, n_activated_experts=2, n_shared_experts=1,
                    n_dense_layers=1, n_expert_groups=4, n_limited_groups=2, score_func="sigmoid",
                    route_scale=2.5),
    "mla, no query latent": dict(attn_type="mla", q_lora_rank=0),
    "moe, softmax, no shared": dict(n_routed_experts=4, n_activated_experts=2, score_func="softmax"),
}


def with_router_biases(model: Transformer) -> Transformer:
    with torch.no_grad():  # loss-free balancing moves these; non-zero biases change the choices
        for module in model.modules():
            if type(module).__name__ == "Gate":
                module.bias.uniform_(-0.05, 0.05, generator=torch.Generator().manual_seed(0))
    return model


@pytest.mark.parametrize("name", list(DEEPSEEK_SHAPED))
def test_mla_and_moe_models_match_the_readable_model(name):
    model = with_router_biases(model_with(7, **DEEPSEEK_SHAPED[name]))
    assert DecodePlan.unsupported(model) is None
    idx = torch.randint(0, 256, (2, 18), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        want = model(idx)
        plan = DecodePlan(model, 2, 20)
        got = [plan.logits(plan.step(idx[:, :7]))]  # a prefill (the readable MoE for many tokens)
        got += [plan.logits(plan.step(idx[:, t:t + 1])) for t in range(7, 10)]
        plan.step(torch.zeros(2, 2, dtype=torch.long))
        plan.crop(10)
        got.append(plan.logits(plan.step(idx[:, 10:18])))
        assert torch.allclose(torch.cat(got, dim=1), want, atol=ATOL)
        one = DecodePlan(model, 1, 20)  # batch 1: one token at a time takes the gathered experts
        steps = [one.logits(one.step(idx[:1, :5]))]
        steps += [one.logits(one.step(idx[:1, t:t + 1])) for t in range(5, 18)]
        assert torch.allclose(torch.cat(steps, dim=1), want[:1], atol=ATOL)
    prompt = idx[:1, :4]
    assert torch.equal(generate(model, prompt, 14), generate(model, prompt, 14, fast=False))


def test_the_mla_weights_fold_w_uk_the_scale_and_w_uv_exactly():
    from helpers.decode_plan import _mla_weights

    model = model_with(8, **DEEPSEEK_SHAPED["mla+moe"])
    block, attn = model.layers[0], model.layers[0].attn
    first, query, out = _mla_weights(block)
    H, Dn, Dr, Dv, Dc, Dq = (attn.n_heads, attn.nope_dim, attn.rope_dim, attn.v_dim, attn.kv_lora_rank,
                             attn.q_lora_rank)
    assert first.shape == (model.config.dim, Dq + Dc + Dr)
    assert query.shape == (Dq, H * (Dc + Dr)) and out.shape == (H * Dc, model.config.dim)
    torch.manual_seed(0)
    c_q, o_lat = torch.randn(3, Dq), torch.randn(3, H, Dc)
    with torch.no_grad():
        w_uk, w_uv = attn.up_weights()
        q = attn.wq_b(attn.q_norm.weight * c_q).view(3, H, Dn + Dr)  # the readable query, gain included
        q_lat = torch.einsum("bhn,hnc->bhc", q[..., :Dn], w_uk) * attn.softmax_scale
        folded = (c_q / math.sqrt(Dq)) @ query  # folded_norm convention: √Dq lives in the weight
        assert torch.allclose(folded.view(3, H, Dc + Dr)[..., :Dc], q_lat, atol=1e-5)
        want = attn.wo(torch.einsum("bhc,hvc->bhv", o_lat, w_uv).reshape(3, H * Dv))
        assert torch.allclose(o_lat.reshape(3, H * Dc) @ out, want, atol=1e-5)


@pytest.mark.parametrize("changes,named", [
    (dict(attn_type="mla", q_lora_rank=24, index_n_heads=2, index_topk=4), "SparseMLA"),
    (dict(attn_type="mla"), "mode 'latent'"),
])
def test_models_it_does_not_cover_are_named_and_generate_still_works(changes, named):
    model = model_with(0, **changes)
    if "latent" in named:
        from helpers.mla import set_mla_mode

        set_mla_mode(model, "latent")
    assert named in DecodePlan.unsupported(model)
    with pytest.raises(ValueError, match="does not cover"):
        DecodePlan(model, 1, 8)
    prompt = torch.randint(0, 256, (1, 4))
    assert torch.equal(generate(model, prompt, 6), generate(model, prompt, 6, fast=False))


def test_other_dtypes_and_models_without_mtp_are_named():
    model = model_with(0).double()
    assert "float64" in DecodePlan.unsupported(model)
    assert "no MTP module" in DraftPlan.unsupported(model_with(0))


def test_a_step_past_the_plans_length_is_refused():
    with pytest.raises(ValueError, match="DecodePlan.max_len"):
        DecodePlan(model_with(0), 1, 10_000)  # longer than the model's context
    plan = DecodePlan(model_with(0), 1, 4)
    with torch.inference_mode():
        plan.step(torch.zeros(1, 3, dtype=torch.long))
        with pytest.raises(ValueError, match="holds 4 positions: 3 cached \\+ 2 new"):
            plan.step(torch.zeros(1, 2, dtype=torch.long))
        with pytest.raises(ValueError, match="crop length=5 outside"):
            plan.crop(5)


def test_weights_changed_after_a_plan_was_built_reach_the_next_plan():
    model = model_with(5)
    prompt = torch.randint(0, 256, (1, 4))
    before = generate(model, prompt, 8, return_logits=True).step_logits
    with torch.no_grad():
        model.layers[0].attn.wq.weight.mul_(3.0)  # in-place updates, as an optimiser step makes
        model.layers[1].ffn_norm.weight.mul_(0.5)
    after = generate(model, prompt, 8, return_logits=True, fast=True).step_logits
    readable = generate(model, prompt, 8, return_logits=True, fast=False).step_logits
    assert not torch.allclose(before, after, atol=1e-3)
    assert torch.allclose(after, readable, atol=ATOL)
