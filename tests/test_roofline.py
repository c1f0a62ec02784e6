"""The roofline model of lesson 03 §7 (``helpers.lessons.roofline``): the intensities follow the formulas the
lesson states (FlashMLA's 2·h_q·s_q), batching moves the weights' intensity and not the cache's, and the
measured points are real decode steps."""

import matplotlib
import pytest

from helpers.config import preset
from helpers.lessons import roofline as rl
from helpers.model import Transformer
from helpers.params import attention_params

matplotlib.use("Agg")


def test_a_machine_has_a_ridge_and_two_roofs():
    m = rl.Machine("m", bandwidth=10e9, peak=50e9)
    assert m.ridge == pytest.approx(5.0)
    assert m.attainable(1.0) == pytest.approx(10e9) and m.attainable(100.0) == pytest.approx(50e9)
    assert (m.bound(4.9), m.bound(5.0)) == ("bandwidth-bound", "compute-bound")
    assert rl.H800_FLASHMLA.ridge == pytest.approx(220.0)


@pytest.mark.parametrize("heads,queries", [(4, 1), (128, 1), (128, 2), (16, 3)])
def test_the_absorbed_kernel_does_about_two_h_s_flops_per_latent_byte(heads, queries):
    cfg = rl.v3_layer(heads)
    kernel = rl.step_cost(cfg, "absorbed", batch=1, queries=queries, context=4096, weights=False)
    Dc, Dr = cfg.kv_lora_rank, cfg.qk_rope_head_dim
    # per cached position: 2·h·(Dc + Dr) for the scores and 2·h·Dc for the sum, over (Dc + Dr)·2 bytes
    assert kernel.intensity == pytest.approx(queries * heads * (2 * Dc + Dr) / (Dc + Dr))
    assert kernel.weight_bytes == 0


def test_expanded_kv_gives_each_cached_element_to_one_head():
    kernel = rl.step_cost(rl.v3_layer(128), "kv", queries=2, context=1000, weights=False)
    assert kernel.intensity == pytest.approx(2.0)  # 2 FLOPs per 2-byte element, per query position


def test_batching_raises_the_layers_intensity_but_not_the_kernels():
    cfg = rl.v3_layer(128)
    k1, k64 = (rl.step_cost(cfg, batch=b, weights=False) for b in (1, 64))
    l1, l64 = (rl.step_cost(cfg, batch=b) for b in (1, 64))
    assert k64.intensity == pytest.approx(k1.intensity)
    assert l64.intensity > 5 * l1.intensity
    assert l1.weight_bytes == 2 * attention_params(cfg) == l64.weight_bytes


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="path='mqa' must be one of"):
        rl.step_cost(rl.v3_layer(4), "mqa")
    with pytest.raises(ValueError, match="batch"):
        rl.step_cost(rl.v3_layer(4), batch=0)
    with pytest.raises(ValueError, match="heads"):
        rl.v3_layer(0)


def test_a_whole_model_step_counts_its_weights_and_cache():
    model = Transformer(preset("test"))
    cost = rl.model_step_cost(model, context=10)
    cfg = model.config
    assert cost.weight_bytes == 4 * (model.num_params() - model.tok_emb.weight.numel())
    assert cost.cache_bytes == 4 * 2 * cfg.n_layers * cfg.kv_heads * cfg.hd * 11


def test_measured_steps_are_real_decode_steps_and_the_plots_draw_them():
    import matplotlib.pyplot as plt

    steps = rl.measured_steps(("absorbed", "kv"), context=256, rounds=1)
    assert set(steps) == {"absorbed", "kv"}
    for cost, seconds in steps.values():
        assert seconds > 0 and cost.bytes > 0 and cost.flops > 0
    assert steps["absorbed"][0].intensity > steps["kv"][0].intensity  # the latent is shared by all heads
    machine = rl.Machine("m", 20e9, 60e9)
    fig, (a, b) = plt.subplots(1, 2)
    rl.plot_roofline(a, machine, {p: (c.intensity, c.flops / s, "C0") for p, (c, s) in steps.items()})
    rl.plot_fraction_of_peak(b, [machine, rl.H800_FLASHMLA], {"k": rl.step_cost(rl.v3_layer(8))})
    assert len(a.lines) >= 1 + 2 * len(steps) and len(b.lines) == 2 + 2
    plt.close(fig)
