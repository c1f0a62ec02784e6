"""Lesson 05 figures: self-speculative decoding with DeepSeek-V3's MTP module 1 as the drafter.

The model: the ``tiny`` preset (D=96, 3 layers, 6 heads) with one MTP module (``mtp_depth=1``,
λ = 0.3), trained here by a fixed recipe (seed 0, AdamW lr 3e-3, batch 16; ``--quick``: 300 steps of
64 tokens, full: 600 steps of 128 tokens) on ``pick_device()``, then decoded on the CPU in float32.
Prompts: 4 windows of 32 tokens from the validation split (2 prose, 2 code, fixed seed), 64 new
tokens each (full: 96), batch of one, greedy.

Why a deeper main model. DeepSeek-V3 drafts with one block against a 61-layer main model; our trained
model has 3 layers, so a draft costs about half a main step and speculation cannot pay. The speed
figures are therefore measured on the trained model *deepened* to ``MAIN_LAYERS`` = 24 main layers
(``deepened``): the trained blocks, then blocks whose output projections are zero. Those blocks do all
of a block's arithmetic (every product, attention over their own cache) and add exactly zero to the
residual stream, so the deepened model's tokens, hidden states and drafts are the trained model's
(acceptance is the trained drafter's) while each main pass costs what a 24-layer pass costs. Training
a real 24-layer model is out of the CPU budget; a real one would also have its own acceptance rate.

- ``mtp.val_loss``: the main model's next-token validation loss after training.
- ``mtp.module_accuracy``: module 1's top-1 accuracy on the token after next (validation).
- ``mtp.teacher_forced_acceptance``: on validation text, how often module 1's draft equals the main
  model's greedy choice one position later (``helpers.speculative.teacher_forced_acceptance``).
- ``mtp.trained_layers``, ``mtp.main_layers``: the trained depth (3) and the depth timed (24).
- ``mtp.acceptance_rate``: accepted / drafted during speculative decoding of the prompts.
- ``mtp.tokens_per_forward``: new tokens / main-model forward passes (plain cached decoding: 1).
- ``mtp.plain_ms_per_token``, ``mtp.speculative_ms_per_token``: time per new token of
  ``helpers.generate`` (cached greedy) and ``speculative_generate`` on the 24-layer model, both through
  the flat decode plan (``helpers.decode_plan``) with pre-allocated caches, taken in turn per prompt
  (``helpers.timing.interleaved``, 3 rounds, full: 5), the best (minimum) run of each, summed over the
  prompts.
- ``mtp.speculative_speedup``: plain / speculative time, same model, same prompts, same run. The run
  raises ``AssertionError`` if the speculative tokens differ from the plain greedy tokens.
- ``mtp.verify_over_step``, ``mtp.draft_over_step``: what limits the speed-up. The cost of a 2-token
  main pass (verification) and of one MTP draft, each over one plain 1-token cached step, after a
  64-token context (``forward_costs``: CPU time on one thread, best of the rounds).
- ``mtp.predicted_speedup``: the cost model, tokens per forward × step / (verify + draft), next to the
  measurement.
- ``mtp.speculative_speedup[L=n]``, ``mtp.predicted_speedup[L=n]``, ``mtp.draft_over_step[L=n]``: the
  same at main depth n (``--quick``: 3 and 24; full: 3, 6, 12, 24): how the speed-up grows as the
  draft becomes a smaller share of a main pass. At L=3 (the trained model as it is) speculation is
  slower than plain decoding.
Decoding is timed on one CPU thread (``threads=1``, restored afterwards): a batch of one through a
D=96 model gains nothing from a second thread, and on a shared machine thread synchronisation adds
noise that has nothing to do with speculation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import ModelConfig, preset
from ..data import load_corpus
from ..device import pick_device
from ..generate import generate
from ..model import Transformer
from ..speculative import decode_steps, speculative_generate, teacher_forced_acceptance
from ..timing import interleaved, stopwatch, torch_threads
from ..training import evaluate, train, training_step

CONFIG = preset("tiny", mtp_depth=1, mtp_lambda=0.3)


def trained_model(cfg: ModelConfig = CONFIG, steps: int = 600, seq_len: int = 128, batch_size: int = 16,
                  seed: int = 0, device=None) -> Transformer:
    """The fixed recipe: seeded init and batches, ``helpers.train`` defaults otherwise."""
    torch.manual_seed(seed)
    model = Transformer(cfg)
    train(model, load_corpus(), steps=steps, batch_size=batch_size, seq_len=seq_len, lr=3e-3,
          eval_every=steps, eval_iters=2, seed=seed, progress=False,
          device=device if device is not None else pick_device())
    return model.to("cpu").eval()


def prompts(n: int = 4, length: int = 32, seed: int = 0) -> list[torch.Tensor]:
    """``n`` validation windows of ``length`` tokens, alternating prose and code, each (1, length)."""
    corpus, gen = load_corpus(), torch.Generator().manual_seed(seed)
    domains = ["docs", "code"]
    return [corpus.get_batch("val", 1, length, generator=gen, domain=domains[i % 2]).x for i in range(n)]


def measure(model: Transformer, prompt_list: list[torch.Tensor], n_new: int, repeats: int = 3) -> dict:
    """Acceptance, tokens per forward and side-by-side timings (``repeats`` rounds per prompt, on one
    thread); asserts identical tokens."""
    drafted = accepted = forwards = produced = 0
    t_plain = t_spec = 0.0
    for p in prompt_list:
        res = speculative_generate(model, p, n_new)
        plain = generate(model, p, n_new)
        assert torch.equal(res.tokens, plain), "speculative tokens differ from plain greedy tokens"
        drafted, accepted = drafted + res.drafted, accepted + res.accepted
        forwards, produced = forwards + res.forward_passes, produced + res.new_tokens
        t = interleaved({"plain": lambda p=p: generate(model, p, n_new),
                         "spec": lambda p=p: speculative_generate(model, p, n_new)},
                        rounds=repeats, min_run_time=0, threads=1)
        t_plain, t_spec = t_plain + t["plain"].min, t_spec + t["spec"].min
    return {
        "acceptance_rate": accepted / max(drafted, 1),
        "tokens_per_forward": produced / forwards,
        "plain_ms_per_token": 1e3 * t_plain / produced,
        "speculative_ms_per_token": 1e3 * t_spec / produced,
        "speculative_speedup": t_plain / t_spec,
    }


def forward_costs(model: Transformer, context: int = 64, repeats: int = 20, fast: bool = True,
                  rounds: int = 7) -> dict[str, float]:
    """CPU milliseconds for one cached 1-token main step, one 2-token main pass (the verification), one
    1-position MTP draft (after a rejected draft) and one 2-position draft (after an accepted one, which
    hands the drafter both new tokens), each after about ``context`` cached positions, through the same moves
    ``speculative_generate`` makes (``helpers.speculative.decode_steps``: the flat decode plan when
    ``fast`` and the model allows it); one thread, inference mode. The three take turns for ``rounds``
    rounds of ``repeats`` calls each (``interleaved`` on the thread's CPU time); each figure is its best
    (minimum) round, per call. (With three rounds, one disturbed round in each of two figures put a
    2-token pass below a 1-token step; seven make that rare.)"""
    cfg = model.config
    gen = torch.Generator().manual_seed(0)
    idx = torch.randint(0, cfg.vocab_size, (1, context + 2), generator=gen)
    with torch.inference_mode():
        steps = decode_steps(model, context + 2, fast)
        _, hidden = steps.main(idx[:, :context])
        steps.draft(hidden, idx[:, 1:context + 1])

        def step(n):
            steps.main(idx[:, context:context + n])
            steps.crop(context)

        def draft(n):  # over n new positions: 1 after a rejected draft, 2 after an accepted one
            steps.draft(hidden[:, -n:], idx[:, context + 1 - n:context + 1])
            steps.crop_draft(context + 1 - n)

        steps.crop_draft(context - 1)  # the drafter one position behind, so both kinds fit the context
        fns = {"step_ms": lambda: step(1), "verify_ms": lambda: step(2), "draft_ms": lambda: draft(1),
               "draft2_ms": lambda: draft(2)}
        timings = interleaved(fns, rounds=rounds, number=repeats, threads=1, cpu_time=True)
    return {name: t.min * 1e3 for name, t in timings.items()}


def training_flops_ratio(cfg: ModelConfig, seq_len: int = 128) -> float:
    """Estimated cost of a training step with the MTP modules over one without: matmul FLOPs per token
    (6 per weight for forward and backward; 6·T·H·(Dqk + Dv)/2 more per block for causal attention
    scores), counting for each module its block, its projection M_k and one more pass through the shared
    output head. Norms, softmaxes and the optimiser are left out, so a measurement may run higher."""
    from ..params import param_count

    bill = param_count(cfg.replace(mtp_depth=0))
    qk = (cfg.qk_nope_head_dim + cfg.qk_rope_head_dim) if cfg.attn_type == "mla" else cfg.hd
    v = cfg.v_head_dim if cfg.attn_type == "mla" else cfg.hd
    scores = 6 * (seq_len / 2) * cfg.n_heads * (qk + v)  # per token per block, causal: half the keys
    main = 6 * (bill.active - bill.embedding) + cfg.n_layers * scores
    mtp_bill = param_count(cfg)
    per_module = mtp_bill.mtp / max(1, cfg.mtp_depth)  # block (active experts only if MoE) + M_k + norms
    if cfg.n_routed_experts:
        unused = (cfg.n_routed_experts - cfg.n_activated_experts) * 3 * cfg.dim * cfg.moe_inter_dim
        per_module -= unused
    extra = cfg.mtp_depth * (6 * (per_module + bill.head) + scores)
    return (main + extra) / main


def training_overhead(model: Transformer, data, *, batch_size: int = 16, seq_len: int = 128,
                      rounds: int = 3, autocast: torch.dtype | None = None) -> dict:
    """The MTP modules' training cost, measured once and the same way wherever a lesson quotes it: one
    forward and backward pass of a training batch (``helpers.training.training_step`` without an
    optimiser: ``train``'s step less the update), with the modules and without them (the same weights
    minus ``mtp.*``), taken in turns (``helpers.timing.interleaved``, best round), next to
    ``training_flops_ratio``. On the CPU the clock is the thread's CPU time on one thread (steady on a
    busy machine); on an accelerator it is the device's time (wall clock read after synchronising it:
    a CPU thread's time would count kernel launches only). ``autocast``: the dtype the run trains in
    (the GPU plan's bf16), so the cost is that of the real step. Returns ``measured_ratio``,
    ``flops_ratio``, the two step times in ms and ``clock`` (which one was read). No optimiser step is
    taken; the gradients are cleared afterwards."""
    cfg = model.config
    if model.mtp is None:
        raise ValueError(f"training_overhead needs a model with MTP modules, got mtp_depth={cfg.mtp_depth}")
    device = model.device
    plain = Transformer(cfg.replace(mtp_depth=0)).to(device)
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("mtp.")})
    b = data.get_batch("train", batch_size, seq_len, generator=torch.Generator().manual_seed(3),
                       device=device)
    was_training = model.training

    def step(m):  # the training step's forward and backward, as train() takes it (no update)
        return lambda: training_step(m, b, autocast=autocast)

    model.train()
    plain.train()
    on_cpu = device.type == "cpu"
    t = interleaved({"mtp": step(model), "plain": step(plain)}, rounds=rounds, number=1,
                    threads=1 if on_cpu else None, cpu_time=on_cpu)
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    mtp_ms, plain_ms = t["mtp"].min * 1e3, t["plain"].min * 1e3
    clock = "CPU time on one thread" if on_cpu else f"{device.type} device time (synchronised wall clock)"
    return {"measured_ratio": mtp_ms / plain_ms, "flops_ratio": training_flops_ratio(cfg, seq_len),
            "mtp_step_ms": mtp_ms, "plain_step_ms": plain_ms,
            "clock": clock + (f", {str(autocast).replace('torch.', '')} autocast" if autocast else "")}


MAIN_LAYERS = 24  # the headline's main-model depth, against one MTP block (DeepSeek-V3: 61 against 1)
DEPTHS = (3, 6, 12, 24)  # the full run's depth sweep (--quick: the trained depth and MAIN_LAYERS)


def predicted_speedup(tokens_per_forward: float, costs: dict[str, float]) -> float:
    """The cost model: a speculative round makes ``tokens_per_forward`` tokens for one verification
    pass plus one draft, where plain decoding pays one step per token. The draft covers two positions
    after an accepted draft and one after a rejected one, so its cost is weighted by the acceptance,
    taken as ``tokens_per_forward - 1``."""
    a = min(max(tokens_per_forward - 1, 0.0), 1.0)
    draft = a * costs["draft2_ms"] + (1 - a) * costs["draft_ms"]
    return tokens_per_forward * costs["step_ms"] / (costs["verify_ms"] + draft)


def depth_point(model: Transformer, n_layers: int, prompt_list: list[torch.Tensor], n_new: int,
                repeats: int = 3) -> dict[str, float]:
    """Measured and predicted speed-up of ``deepened(model, n_layers)``: ``measure``'s figures plus
    ``verify_over_step``, ``draft_over_step`` and ``predicted_speedup`` (``forward_costs`` over five
    rounds, the model's measured tokens per forward)."""
    deep = deepened(model, n_layers)
    figures = measure(deep, prompt_list, n_new, repeats=repeats)
    costs = forward_costs(deep, context=min(64, deep.config.max_seq_len - 2), repeats=2 * repeats + 4)
    figures["verify_over_step"] = costs["verify_ms"] / costs["step_ms"]
    figures["draft_over_step"] = costs["draft_ms"] / costs["step_ms"]
    figures["predicted_speedup"] = predicted_speedup(figures["tokens_per_forward"], costs)
    return figures


def run(quick: bool, cfg: ModelConfig = CONFIG, steps: int | None = None, n_new: int | None = None,
        prompt_len: int = 32, main_layers: int = MAIN_LAYERS,
        depths: tuple[int, ...] | None = None) -> dict[str, float]:
    steps = steps or (300 if quick else 600)
    seq_len = min(64 if quick else 128, cfg.max_seq_len)
    n_new = n_new or (64 if quick else 96)
    model = trained_model(cfg, steps=steps, seq_len=seq_len)
    corpus = load_corpus()
    batch = corpus.get_batch("val", 16, seq_len, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model.run(batch.x, targets=batch.y)
    figures = {
        "val_loss": evaluate(model, corpus, batch_size=16, seq_len=seq_len, iters=4),
        "module_accuracy": out.mtp.accuracy[0],
        "teacher_forced_acceptance": teacher_forced_acceptance(model, batch.x, batch.y),
        "trained_layers": cfg.n_layers,
        "main_layers": main_layers,
    }
    prompt_list, repeats = prompts(length=prompt_len), 3 if quick else 5
    depths = depths or ((cfg.n_layers, main_layers) if quick else tuple(sorted({*DEPTHS, main_layers})))
    for n_layers in depths:
        point = depth_point(model, n_layers, prompt_list, n_new, repeats)
        if n_layers == main_layers:  # the headline figures
            figures.update(point)
        figures.update({f"{name}[L={n_layers}]": point[name]
                        for name in ("speculative_speedup", "predicted_speedup", "draft_over_step")})
    return {f"mtp.{k}": float(v) for k, v in figures.items()}


def deepened(model: Transformer, n_layers: int) -> Transformer:
    """A copy of ``model`` with ``n_layers`` main blocks: its own, then blocks whose two output
    projections (``wo``, ``w2``) are zero. Such a block computes everything a block computes (its
    products and attention over its own cache) and adds exactly zero to the residual stream, so the
    copy's tokens, hidden states and drafts are the original's while each main forward pass costs what
    an ``n_layers``-deep model's costs. Holds the drafter's agreement fixed while the depth ratio
    moves (lesson 05's cost model; ``depth_sweep``)."""
    cfg = model.config
    if n_layers < cfg.n_layers:
        raise ValueError(f"n_layers={n_layers} is fewer than the model's {cfg.n_layers}")
    deep = Transformer(cfg.replace(n_layers=n_layers)).to(model.device)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("mtp.")}
    state.update({f"mtp.{k}": v for k, v in model.mtp.state_dict().items()} if model.mtp is not None else {})
    missing, unexpected = deep.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith(tuple(f"layers.{i}." for i in range(cfg.n_layers, n_layers)))
                         for k in missing):
        raise RuntimeError(f"deepened: unexpected keys {unexpected} or missing {missing}")
    with torch.no_grad():
        for block in deep.layers[cfg.n_layers:]:
            block.attn.wo.weight.zero_()
            block.ffn.w2.weight.zero_()
    return deep.eval()


@dataclass
class DepthSweep:
    """``depth_sweep``'s result: per main-model depth, one entry per round.

    ``depths``: the depths timed; ``predicted``, ``median_costs`` and ``costs`` also hold the
    ``predict_only`` ones. ``speedup[L]``: measured plain / speculative CPU time of decoding every
    prompt, one ratio per round (the two decoders taken in turn inside the round). ``costs[L]``:
    ``forward_costs`` per round; ``median_costs[L]``: each cost's median over the rounds, the one cost
    measurement of depth ``L`` that every prediction for it uses; ``predicted[L]``: the cost model on
    ``median_costs[L]`` with the sweep's one ``tokens_per_forward`` (the deepened copies decode the
    trained model's tokens, so they share it: asserted). ``tokens_per_forward`` is also the ceiling: a
    free drafter and a free second position."""

    depths: tuple[int, ...]
    rounds: int
    tokens_per_forward: float
    acceptance: float
    n_new: int
    n_prompts: int
    speedup: dict[int, list[float]]
    plain_ms: dict[int, list[float]]  # ms per new token of plain cached greedy decoding, per round
    speculative_ms: dict[int, list[float]]  # the same for self-speculative decoding
    predicted: dict[int, float]
    median_costs: dict[int, dict[str, float]]
    costs: dict[int, list[dict[str, float]]]

    def quartiles(self, L: int) -> tuple[float, float, float]:
        """(25th percentile, median, 75th percentile) of the measured speed-up over the rounds at ``L``."""
        q = torch.tensor(self.speedup[L], dtype=torch.float64).quantile(
            torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64))
        return float(q[0]), float(q[1]), float(q[2])

    def cost_ratio(self, L: int, name: str) -> float:
        """``median_costs[L][name]`` over one plain step's (``'verify_ms'``, ``'draft_ms'``, ...)."""
        return self.median_costs[L][name] / self.median_costs[L]["step_ms"]

    def median(self, which: str, L: int) -> float:
        """The median over the rounds of ``which`` (``'speedup'``, ``'plain_ms'``, ``'speculative_ms'``)."""
        return float(torch.tensor(getattr(self, which)[L], dtype=torch.float64).median())

    def fraction_above_one(self, L: int) -> float:
        """The share of rounds at depth ``L`` in which speculative decoding was the faster one."""
        return sum(s > 1 for s in self.speedup[L]) / len(self.speedup[L])


def depth_sweep(model: Transformer, depths: tuple[int, ...], prompt_list: list[torch.Tensor], n_new: int,
                rounds: int = 10, cost_repeats: int = 10, predict_only: tuple[int, ...] = ()) -> DepthSweep:
    """Measured and predicted speed-up of ``deepened(model, L)`` at every depth ``L``, over ``rounds``
    rounds. In each round every depth takes its turn (so drifting machine load hits them alike): its
    forward costs (``forward_costs``, one round of ``cost_repeats`` calls each), then plain and
    speculative decoding of all the prompts, in turn (who goes first alternates by round), on one
    thread, each read as that thread's CPU time (``stopwatch(cpu_time=True)``: time other processes
    hold the core is not counted). Every decoder has run once per prompt before the rounds (the token
    check below), so no round is a cold start. Asserts that every depth's speculative tokens equal the
    trained model's greedy tokens. ``predict_only``: depths whose costs are measured in every round
    (so they have a prediction) but whose decoding is not timed (DeepSeek-V3's 61)."""
    deep = {L: deepened(model, L) for L in depths}
    only = {L: deepened(model, L) for L in predict_only}
    drafted = accepted = forwards = 0
    for p in prompt_list:
        want = generate(model, p, n_new)
        for L, m in deep.items():
            res = speculative_generate(m, p, n_new)
            assert torch.equal(res.tokens, want), f"depth {L}: speculative tokens differ from greedy"
            assert torch.equal(generate(m, p, n_new), want), f"depth {L}: the deepened copy decodes otherwise"
        drafted, accepted = drafted + res.drafted, accepted + res.accepted
        forwards += res.forward_passes
    tpf = n_new * len(prompt_list) / forwards
    speedup = {L: [] for L in depths}
    plain_ms = {L: [] for L in depths}
    speculative_ms = {L: [] for L in depths}
    costs = {L: [] for L in (*depths, *predict_only)}
    with torch_threads(1):
        for r in range(rounds):
            for L, m in {**deep, **only}.items():
                costs[L].append(forward_costs(m, context=min(64, m.config.max_seq_len - 2),
                                              repeats=cost_repeats, rounds=1))
                if L not in deep:
                    continue
                seconds = {}
                order = ("plain", "spec") if r % 2 == 0 else ("spec", "plain")  # who goes first alternates
                for name in order:
                    decode = generate if name == "plain" else speculative_generate
                    with stopwatch(cpu_time=True) as clock:
                        for p in prompt_list:
                            decode(m, p, n_new)
                    seconds[name] = clock.seconds
                speedup[L].append(seconds["plain"] / seconds["spec"])
                plain_ms[L].append(1e3 * seconds["plain"] / (n_new * len(prompt_list)))
                speculative_ms[L].append(1e3 * seconds["spec"] / (n_new * len(prompt_list)))
    median_costs = {L: {k: float(torch.tensor([c[k] for c in cs]).median()) for k in cs[0]}
                    for L, cs in costs.items()}
    predicted = {L: predicted_speedup(tpf, c) for L, c in median_costs.items()}
    return DepthSweep(tuple(depths), rounds, tpf, accepted / max(drafted, 1), n_new, len(prompt_list),
                      speedup, plain_ms, speculative_ms, predicted, median_costs, costs)
