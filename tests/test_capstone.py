"""helpers.lessons.capstone: lesson 06's configurations and run plan, and training the tiny DeepSeek-V3 with
its balance recipe (the Hugging Face checks are in test_interop_deepseek.py, the parameter bill in
test_params.py)."""

import pytest
import torch

import helpers
from helpers import Transformer
from helpers.interop import to_hf
from helpers.lessons.capstone import (
    CPU_CONFIG,
    Dashboard,
    hf_generate,
    param_count,
    plan_for,
    plot_training_summary,
)


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
    titles = [a.get_title() for a in fig.axes]
    # the losses, the routing-share heatmap and its colour bar, one bias heatmap per main MoE layer and
    # their shared colour bar: 2 MoE layers, so 6 axes (the MTP block's MoE layer is not drawn)
    assert "losses" in titles and len(fig.axes) == 6


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
    from helpers.lessons.capstone import compile_dense_parts

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
                        "capstone.hf_decode_ms_per_token", "capstone.ours_over_hf",
                        "capstone.hf_static_ms_per_token", "capstone.hf_best_ms_per_token",
                        "capstone.ours_over_hf_best"}
    assert out["capstone.hf_best_ms_per_token"] == min(out["capstone.hf_decode_ms_per_token"],
                                                       out["capstone.hf_static_ms_per_token"])
    assert all(isinstance(v, float) and math.isfinite(v) and v > 0 for v in out.values())
    ratio = out["capstone.decode_ms_per_token"] / out["capstone.hf_decode_ms_per_token"]
    assert out["capstone.ours_over_hf"] == ratio


def _columns():
    from helpers.lessons.capstone import CPU_CONFIG, Column
    from helpers.params import matched_baseline, param_count

    base = Column(param_count(matched_baseline(CPU_CONFIG)), (1.25, 0.01), (60.0, 2.0), 4608.0, 1.0)
    ours = Column(param_count(CPU_CONFIG), (1.20, 0.02), (150.0, 4.0), 480.0, 2.5)
    return base, ours


def _cells(markdown):
    rows = [line.strip().strip("|").split("|") for line in markdown.splitlines()]
    assert {len(r) for r in rows} == {3}  # every row has the table's three columns
    return {r[0].strip(): [c.strip() for c in r[1:]] for r in rows[2:]}


def test_results_table_puts_each_models_figures_in_its_own_column():
    from types import SimpleNamespace

    from helpers.lessons.capstone import results_table

    base, ours = _columns()
    table = _cells(results_table(base, ours, quality=SimpleNamespace(mean=-0.05, half_width=0.01),
                                 time_ratio=2.5, tokens=1000, threads=2, n_decode=120, device="cpu"))
    assert table["parameters, active per token"] == [f"{base.params.active:,}", f"{ours.params.active:,}"]
    assert table["parameters, total"][1] == f"{ours.params.total:,} (+{ours.params.mtp:,} MTP)"
    assert table["validation loss (nats/byte), 5 seeds, mean ± 95%"] == ["1.250 ± 0.010", "1.200 ± 0.020"]
    assert table["paired difference, ours − baseline"] == ["", "-0.050 ± 0.010"]
    assert table["training seconds (CPU plan, 2 threads, sweep)"] == ["60 ± 2", "150 ± 4 (2.50x)"]
    assert table["cache bytes per token (fp32, measured = formula)"] == ["4,608", "480"]
    decode = "decode ms per token (greedy, cache on, 120 tokens, cpu, best of 3 runs)"
    assert table[decode] == ["1.00", "2.50"]


def test_summary_table_states_what_each_mechanism_saves_from_the_figures_given():
    from types import SimpleNamespace

    from helpers.lessons.capstone import summary_table

    base, ours = _columns()
    table = _cells(summary_table(
        base, ours, quality=SimpleNamespace(mean=-0.05, half_width=0.01), time_ratio=2.5, cache_speedup=3.0,
        n_tokens=100, gqa_groups=2, n_heads=6, gqa_cache_bytes=1536.0, v3_cache_bytes=(1152, 32768),
        v3_active_fraction=0.055, max_vio=0.12, aux_alpha=1e-4, spec_tokens_per_forward=1.6, spec_accept=0.7,
        tf_accept=0.65, mtp_cost={"measured_ratio": 1.2, "flops_ratio": 1.1}))
    assert list(table)[0] == "01 · KV cache" and len(table) == 7
    assert table["01 · KV cache"][0].startswith("decode 3.0x faster")
    assert "4,608 bytes" in table["01 · KV cache"][1]
    assert "4,608 → 1,536 bytes/token (3x)" in table["02 · GQA, G=2 of H=6"][0]
    assert "4,608 → 480 bytes/token here" in table["03 · MLA (absorbed)"][0]
    assert table["04 · DeepSeekMoE"][0].endswith(f"({ours.params.active_fraction:.0%}); V3: 5.5%")
    assert table["05 · MTP (D=1)"][1].startswith("1.20x a training step measured (1.10x by FLOPs)")
    assert table["06 · all of it, vs the baseline"] == [
        "cache 9.6x smaller; val. loss -0.050 ± 0.010 (5 seeds)",
        "2.5x the training time; decode 2.5x the time per token at this tiny size"]
