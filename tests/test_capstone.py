"""Lesson 06: the whole DeepSeek-V3 model against transformers' DeepseekV3ForCausalLM, the export back,
the parameter bill, and the capstone's run plan."""

import pytest
import torch

import helpers
from helpers import Transformer, preset
from helpers.capstone import (
    CPU_CONFIG,
    Dashboard,
    cache_bytes_per_token,
    deepseek_v3_config,
    hf_generate,
    matched_baseline,
    measured_cache_bytes_per_token,
    measured_param_count,
    param_count,
    plan_for,
    plot_training_summary,
)
from helpers.interop import to_hf


# --- the parameter bill -------------------------------------------------------------------------------
def test_param_count_hand_formula():
    cfg = CPU_CONFIG.replace(max_seq_len=64)
    D, V, L, H = 96, 256, 3, 6
    mla = (D * 48 + 48 + 48 * H * (16 + 8)) + (D * (32 + 8) + 32 + 32 * H * (16 + 16)) + H * 16 * D
    expert = 3 * D * 96
    moe = 8 * expert + 1 * expert + 8 * D  # routed, shared, router
    dense = 3 * D * 256
    total = 2 * V * D + L * (mla + 2 * D) + D + dense + 2 * moe
    active = total - 2 * (8 - 2) * expert
    mtp = 2 * D + 2 * D * D + (2 * D + mla + moe) + D  # its block is an MoE block, like V3's layer 61
    pc = param_count(cfg)
    assert (pc.total, pc.active, pc.mtp) == (total, active, mtp)
    assert Transformer(cfg).num_params() == total + mtp


@pytest.mark.parametrize("cfg", [CPU_CONFIG.replace(max_seq_len=32),
                                 CPU_CONFIG.replace(q_lora_rank=0, tie_embeddings=True, n_shared_experts=0,
                                                    mtp_depth=2, max_seq_len=32),
                                 preset("test"), preset("test", n_kv_heads=1, head_dim=4)],
                         ids=["capstone", "no-q-lora-tied-mtp2", "mha", "mqa"])
def test_param_count_equals_the_built_model(cfg):
    assert param_count(cfg) == measured_param_count(Transformer(cfg))
    if not cfg.is_moe:
        assert param_count(cfg).active == param_count(cfg).total


def test_deepseek_v3_bill_matches_the_report():
    pc = param_count(deepseek_v3_config())
    assert abs(pc.total / 671e9 - 1) < 0.01  # "671B total parameters"
    assert abs(pc.active / 37e9 - 1) < 0.03  # "37B activated for each token"


def test_matched_baseline_is_lesson_00_model():
    base = matched_baseline(CPU_CONFIG)
    assert base == preset("tiny", max_seq_len=CPU_CONFIG.max_seq_len)
    assert abs(param_count(base).total / param_count(CPU_CONFIG).active - 1) < 0.01


def test_cache_bytes_formula_equals_measured():
    for cfg in [CPU_CONFIG.replace(max_seq_len=64), preset("tiny", max_seq_len=64)]:
        assert measured_cache_bytes_per_token(Transformer(cfg)) == cache_bytes_per_token(cfg)
    assert cache_bytes_per_token(CPU_CONFIG) * 4 < cache_bytes_per_token(preset("tiny"))


# --- training -----------------------------------------------------------------------------------------
def test_v3_balance_recipe_moves_bias_and_adds_sequence_loss():
    import matplotlib

    matplotlib.use("Agg")
    corpus = helpers.load_corpus()
    cfg = CPU_CONFIG.replace(dim=32, n_heads=2, q_lora_rank=16, kv_lora_rank=16, inter_dim=64,
                             moe_inter_dim=32, max_seq_len=32, bias_update_speed=0.01)
    model = Transformer(cfg)
    dash = Dashboard(model, every=2, live=False)
    hist = helpers.train(model, corpus, steps=4, batch_size=2, seq_len=16, eval_every=4, eval_iters=1,
                         progress=False, device="cpu", callback=dash)
    dash.finish()
    losses, routing = dash.losses, dash.routing.history
    assert losses.step == [0, 1, 2, 3] and routing.counts_array().shape == (4, 2, 8)  # main MoE layers
    assert (routing.counts_array().sum(-1) == 2 * 16 * 2).all()  # every token to K=2 experts, per layer
    assert all(b > 0 for b in losses.balance)  # the sequence-wise loss is on ...
    assert routing.bias_array()[-1].abs().sum() > 0  # ... and so is the bias balancing
    assert all(m == m for m in losses.mtp) and hist.final_val_loss == hist.final_val_loss
    fig = plot_training_summary(dash, hist)
    assert len(fig.axes) == 3


def test_train_under_bf16_autocast_runs_on_cpu():
    corpus = helpers.load_corpus()
    cfg = CPU_CONFIG.replace(dim=32, n_heads=2, q_lora_rank=16, kv_lora_rank=16, inter_dim=64,
                             moe_inter_dim=32, max_seq_len=32)
    model = Transformer(cfg)
    hist = helpers.train(model, corpus, steps=2, batch_size=2, seq_len=16, eval_every=2, eval_iters=1,
                         progress=False, device="cpu", autocast=torch.bfloat16)
    assert all(torch.isfinite(torch.tensor(hist.train_loss))) and hist.final_val_loss < 6.0
    assert model.tok_emb.weight.dtype == torch.float32  # autocast keeps the weights in float32


def test_plan_for_cpu_and_gpu():
    cpu = plan_for("cpu")
    assert cpu.config == CPU_CONFIG and cpu.autocast is None and not cpu.compile
    gpu = plan_for("cuda", compile=True)  # only reads the device type: works without a GPU
    assert gpu.autocast == torch.bfloat16 and gpu.compile and gpu.tokens > cpu.tokens
    assert param_count(gpu.config).active > param_count(cpu.config).active


@pytest.mark.gpu
def test_gpu_smoke_bf16_compile_and_hf_parity():
    from helpers.capstone import compile_dense_parts

    device = torch.device("cuda")
    corpus = helpers.load_corpus()
    plan = plan_for(device, compile=True)
    model = Transformer(plan.config.replace(n_layers=2, max_seq_len=128)).to(device)
    assert compile_dense_parts(model) >= 2
    hist = helpers.train(model, corpus, steps=5, batch_size=4, seq_len=64, eval_every=5, eval_iters=1,
                         progress=False, device=device, autocast=plan.autocast)
    assert hist.final_val_loss < 6.0
    model.eval()
    hf = to_hf(model)
    prompt = torch.randint(0, 256, (1, 8), device=device)
    with torch.no_grad():
        helpers.assert_close(model(prompt), hf(prompt).logits, atol=1e-3, rtol=1e-3)
    assert torch.equal(helpers.generate(model, prompt, 16), hf_generate(hf, prompt, 16))


# --- the exercises: each check accepts the reference solution and rejects the typical mistakes ---------
def solution_active_params(cfg):
    pc = param_count(cfg)
    return pc.total - pc.n_moe_layers * (cfg.n_routed_experts - cfg.n_activated_experts) * pc.expert


def solution_rope_permutation(rope_dim):
    return torch.cat([torch.arange(0, rope_dim, 2), torch.arange(1, rope_dim, 2)])


def solution_tokens_per_forward(acceptance):
    return 1 + acceptance


def test_exercise_checks():
    from helpers.exercises import l06

    assert l06.check_active_params(solution_active_params)
    assert not l06.check_active_params(lambda cfg: param_count(cfg).total)
    assert not l06.check_active_params(lambda cfg: param_count(cfg).active + param_count(cfg).mtp)
    assert not l06.check_active_params(lambda cfg: None)
    assert l06.check_rope_permutation(solution_rope_permutation)
    assert not l06.check_rope_permutation(lambda d: solution_rope_permutation(d).argsort())
    assert not l06.check_rope_permutation(lambda d: torch.arange(d))
    assert l06.check_tokens_per_forward(solution_tokens_per_forward)
    assert not l06.check_tokens_per_forward(lambda a: 2 * a)


@pytest.mark.slow
def test_bench_suite_names_and_values():
    import math

    from helpers import bench
    from helpers.bench import capstone as suite

    assert "capstone" in bench.suites()
    cfg = CPU_CONFIG.replace(dim=32, n_heads=2, q_lora_rank=16, kv_lora_rank=16, inter_dim=64,
                             moe_inter_dim=32, max_seq_len=48)
    out = suite.run(True, cfg=cfg, new_tokens=8, batch_size=2, seq_len=16)  # raises if tokens differ
    assert set(out) == {"capstone.train_tokens_per_s", "capstone.decode_ms_per_token",
                        "capstone.hf_decode_ms_per_token", "capstone.ours_over_hf"}
    assert all(isinstance(v, float) and math.isfinite(v) and v > 0 for v in out.values())
    ratio = out["capstone.decode_ms_per_token"] / out["capstone.hf_decode_ms_per_token"]
    assert out["capstone.ours_over_hf"] == ratio
