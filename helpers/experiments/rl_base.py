"""Lesson 08's second sweep: when does RL pay? GRPO against distillation from a teacher that knows a
procedure, against fine-tuning on the true labels, from bases of three strengths (DeepSeek-R1 §4.1).

R1's §4.1 argues that distilling a strong model beats running RL on a small one. Its own account of why
RL works (§2.2) needs a base that is sometimes right: a group whose outputs are all wrong has advantages
that are all 0 (``helpers.grpo.group_advantages``) and teaches nothing. So the answer should depend on
the base's strength, and this sweep measures it:

* **the base**: the ``tiny`` student fine-tuned on true bare answers for ``BASE_BUDGETS`` steps (one run
  per seed, snapshotted at each budget: the bases of a seed are nested, weak ⊂ middling ⊂ strong);
* **the teacher** (``train_procedure_teacher``): a model trained once (deterministic, seed 0) to write
  the scratchpad of ``helpers.tasks.scratchpad`` (the sum's digits as column addition makes them, then the
  answer), on training problems only: it never sees a held-out pair;
* **three arms from each base, at equal student compute** (token-passes, ``ComputeMeter``; GRPO's
  ``grpo_steps`` set the budget):
  - ``GRPO``: the exact-answer reward on the bare format, one update per batch;
  - ``distil``: fine-tuning on the teacher's greedy scratchpads for fresh problems (the teacher's
    generation is counted as teacher compute, not student compute);
  - ``labels``: fine-tuning on the true bare answers: the control, which differs from ``distil`` in what
    the teacher adds (the scratchpad, and its few mistakes) and in nothing else (same problems, same
    batches, same learning rate rule, same compute).
* GRPO runs ``grpo_steps`` = 160 steps, the budget the learning-rate grid ran at;
* graded on the final answer only (``scratchpad.graded_accuracy``), on ``heldout.held_out_problems``;
  every training stage draws through ``heldout.sample_training_problems``. Each arm's learning rate was
  picked on ``LR_GRID`` (``scripts/rl_base_lr.py``: seed 5, the middle base, best final in-distribution
  accuracy; ``results/sweeps/rl_base_lr.json``).

Recorded per seed: held-out accuracy at ``checkpoints`` points of each arm (the trajectories), the
share of zero-signal groups at every GRPO step, split into those whose eight answers were all wrong and
all right (``SIGNAL_KINDS``), final in-distribution accuracy.

``python scripts/sweep.py rl_base --seeds 0 1 2 --part a`` (and ``--seeds 3 4 --part b``), then
``--merge``, writes ``results/sweeps/rl_base.json``.
"""

from __future__ import annotations

import copy

import torch

from ..config import ModelConfig
from ..distill import ComputeMeter, generation_passes
from ..grpo import grpo_step
from ..model import Transformer
from ..plan import scaled_recipe
from ..reproduce import build_meta
from ..tasks import arith, heldout, scratchpad
from ..timing import synced_clock, torch_threads
from ..training import optimizer_step
from ..validate import check_choice, check_int
from . import distill as dsw
from .sweep import THREADS, write_sweep

TEACHER_CONFIG = ModelConfig(dim=128, n_layers=3, n_heads=4, inter_dim=384, max_seq_len=128)
TEACHER_RECIPE = dict(steps=1000, batch=64, lr=1e-3, seed=0, digits=2)
BASE_BUDGETS = (500, 1000, 2000)  # base_steps: weak, middling, strong (the pilot: 1%, 72%, 88% on seed 0)
RECIPE = dict(base_lr=3e-3, sft_batch=64, digits=2, grpo_steps=160, grpo_prompts=16, group_size=8,
              beta=0.04, checkpoints=4, in_dist_problems=300)
LR_GRID = {"GRPO": (1e-4, 3e-4, 1e-3), "distil": (3e-4, 1e-3, 3e-3), "labels": (3e-4, 1e-3, 3e-3)}
LR = {"GRPO": 3e-4, "distil": 3e-3, "labels": 3e-3}  # chosen on LR_GRID (results/sweeps/rl_base_lr.json)
ARMS = ("GRPO", "distil", "labels")
SIGNAL_KINDS = ("zero_signal", "all_wrong", "all_right")  # per GRPO step: groups without signal, and why
LR_SEED = 5  # the grid's seed: not one of the sweep's seeds


def arm_name(arm: str, base_steps: int) -> str:
    """A sweep arm: ``"GRPO @1000"``: the arm from the base of ``base_steps``, ``"base @1000"``."""
    return f"{arm} @{base_steps}"


_TEACHERS: dict = {}


def train_procedure_teacher(steps: int | None = None, seed: int | None = None) -> Transformer:
    """The scratchpad teacher: ``TEACHER_CONFIG`` trained ``steps`` steps on scratchpad rows of training
    problems (never a held-out pair). Deterministic on one thread; cached per (steps, seed)."""
    r = TEACHER_RECIPE
    steps = check_int("steps", r["steps"] if steps is None else steps, min_value=1)
    seed = r["seed"] if seed is None else check_int("seed", seed, min_value=0)
    if (steps, seed) not in _TEACHERS:
        with torch_threads(THREADS):
            torch.manual_seed(seed)
            model = Transformer(TEACHER_CONFIG)
            opt = torch.optim.AdamW(model.parameters(), lr=r["lr"], weight_decay=0.0)
            gen = torch.Generator().manual_seed(seed)
            for _ in range(steps):
                problems = heldout.sample_training_problems(r["batch"], r["digits"], gen)
                b = arith.sft_batch(problems, [scratchpad.scratchpad(p) for p in problems])
                optimizer_step(opt, model.run(b.x, b.y).loss)
        _TEACHERS[(steps, seed)] = model.eval()
    return _TEACHERS[(steps, seed)]


def nested_bases(seed: int, budgets=None) -> dict[int, Transformer]:
    """Seed ``seed``'s base student after each of ``budgets`` steps of fine-tuning on true bare answers
    (one run, snapshotted), on training problems only."""
    budgets = sorted(check_int("budget", b, min_value=1) for b in (budgets or BASE_BUDGETS))
    r = scaled_recipe(RECIPE)
    out = {}
    with torch_threads(THREADS):
        model, opt, gen = dsw.new_student(seed, r["base_lr"])
        done = 0
        for b in budgets:
            for _ in range(b - done):
                batch = arith.sft_batch(heldout.sample_training_problems(r["sft_batch"], r["digits"], gen))
                optimizer_step(opt, model.run(batch.x, batch.y).loss)
            done = b
            out[b] = copy.deepcopy(model).eval()
    return out


def grpo_marks(seed: int) -> list[float]:
    """GRPO's student compute at each checkpoint, without running it: its problems come from their own
    generator, and a step costs at most 4 · Σ_groups generation_passes(B_g · Gs, T_g, n_g) (every length
    group samples ``group_size`` rows of up to its largest ``Problem.budget`` new tokens, then trains on
    them once). It is an upper bound: ``grpo.sample_groups`` stops a group early once every row has
    written its terminator, so a base that answers short spends a little less (under 1.5% in the
    committed sweep), and the SFT arms, which stop at these marks, get that little more."""
    r = scaled_recipe(RECIPE)
    every = max(1, r["grpo_steps"] // r["checkpoints"])
    gen, total, marks = torch.Generator().manual_seed(1000 + seed), 0, []
    for step in range(r["grpo_steps"]):
        problems = heldout.sample_training_problems(r["grpo_prompts"], r["digits"], gen)
        for plen, idxs in arith.by_prompt_length(problems).items():
            n = max(problems[i].budget for i in idxs)
            total += 4 * generation_passes(len(idxs) * r["group_size"], plen, n)  # sample 1×, train 3×
        if (step + 1) % every == 0:
            marks.append(float(total))
    return marks


def run_grpo(base: Transformer, seed: int, lr: float, test, seen_like) -> dict:
    """GRPO from ``base``: held-out accuracy at checkpoints, the zero-signal share per step, the budget.
    The problems and the sampling draw from two generators, so the problems (and the compute,
    ``grpo_marks``) are the same whatever the model does."""
    r = scaled_recipe(RECIPE)
    every = max(1, r["grpo_steps"] // r["checkpoints"])
    model, ref = copy.deepcopy(base).train(), copy.deepcopy(base).eval()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    gen, meter = torch.Generator().manual_seed(1000 + seed), ComputeMeter()
    sampling = torch.Generator().manual_seed(3000 + seed)
    curve = {"compute": [0.0], "accuracy": [scratchpad.graded_accuracy(base, test)],
             **{k: [] for k in SIGNAL_KINDS}}
    start = synced_clock()
    for step in range(r["grpo_steps"]):
        problems = heldout.sample_training_problems(r["grpo_prompts"], r["digits"], gen)
        out = grpo_step(model, ref, opt, problems,
                        r["group_size"], beta=r["beta"], generator=sampling, meter=meter)
        for k in SIGNAL_KINDS:
            curve[k].append(out[k])
        if (step + 1) % every == 0:
            curve["compute"].append(float(meter.total))
            curve["accuracy"].append(scratchpad.graded_accuracy(model, test))
            model.train()
    return {"accuracy": curve["accuracy"][-1], "in_distribution_accuracy":
            scratchpad.graded_accuracy(model, seen_like), "student_compute": float(meter.total),
            "reference_compute": float(meter.reference_total),
            **{f"{k}_mean": sum(curve[k]) / len(curve[k]) for k in SIGNAL_KINDS},
            "train_seconds": synced_clock() - start, "curve": curve}


def run_sft(arm: str, base: Transformer, seed: int, lr: float, marks: list[float], test, seen_like,
            teacher: Transformer | None = None) -> dict:
    """``distil`` (the teacher's greedy scratchpads) or ``labels`` (true bare answers) from ``base``, up to
    the last of ``marks`` in student token-passes; held-out accuracy at each mark."""
    arm = check_choice("arm", arm, ("distil", "labels"))
    if arm == "distil" and teacher is None:
        raise ValueError("arm 'distil' needs the teacher")
    r = scaled_recipe(RECIPE)
    model = copy.deepcopy(base).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    gen, meter = torch.Generator().manual_seed(2000 + seed), ComputeMeter()
    curve = {"compute": [0.0], "accuracy": [scratchpad.graded_accuracy(base, test)]}
    start, m, budget = synced_clock(), 0, marks[-1]
    while True:
        problems = heldout.sample_training_problems(r["sft_batch"], r["digits"], gen)
        if arm == "distil":
            decoded = arith.decode_greedy(teacher, problems, max(scratchpad.budget(p) for p in problems))
            b = arith.sft_batch(problems, [arith.answer_of(c) for c in decoded.completions])
        else:
            b = arith.sft_batch(problems)
        if meter.total + 3 * b.tokens > budget:  # the next step would pass GRPO's compute: stop
            break
        if arm == "distil":
            meter.teacher_generate(decoded.passes)
        optimizer_step(opt, model.run(b.x, b.y).loss)
        meter.train(b.tokens)
        while m < len(marks) and meter.total >= marks[m]:
            curve["compute"].append(float(meter.total))
            curve["accuracy"].append(scratchpad.graded_accuracy(model, test))
            model.train()
            m += 1
    if m < len(marks):  # stopped short of the last mark (the next step would pass it): the end point
        curve["compute"].append(float(meter.total))
        curve["accuracy"].append(scratchpad.graded_accuracy(model, test))
    fmt = scratchpad.format_share(model, test)
    return {"accuracy": curve["accuracy"][-1], "in_distribution_accuracy":
            scratchpad.graded_accuracy(model, seen_like), "student_compute": float(meter.total),
            "teacher_compute": float(meter.teacher_total), "uses_scratch": fmt["uses_scratch"],
            "train_seconds": synced_clock() - start, "curve": curve}


def run_arms(seed: int, base: Transformer, lrs: dict, teacher: Transformer, arms=ARMS) -> dict:
    """Every arm of ``arms`` from one base, ``lrs[arm]`` each, each to GRPO's student compute
    (``grpo_marks``: the same whatever the learning rate or the base)."""
    test = heldout.held_out_problems()
    seen_like = heldout.in_distribution_problems(RECIPE["in_dist_problems"])
    out = {"base": {"accuracy": scratchpad.graded_accuracy(base, test),
                    "in_distribution_accuracy": scratchpad.graded_accuracy(base, seen_like)}}
    with torch_threads(THREADS):
        marks = grpo_marks(seed)
        if "GRPO" in arms:
            out["GRPO"] = run_grpo(base, seed, lrs["GRPO"], test, seen_like)
        for arm in ("distil", "labels"):
            if arm in arms:
                out[arm] = run_sft(arm, base, seed, lrs[arm], marks, test, seen_like, teacher)
    return out


def teacher_accuracy(teacher: Transformer | None = None) -> dict:
    """The teacher on the held-out problems: exact scratchpads and right final answers."""
    return scratchpad.format_share(teacher or train_procedure_teacher(), heldout.held_out_problems())


def _records(seed: int, name: str, res: dict) -> list[dict]:
    return [{"arm": name, "seed": seed, "metric": k, "value": float(v)} for k, v in res.items()
            if k != "curve"]


def run_rl_base_seed(seed: int, corpus=None, arms=None, log=None) -> dict:
    """One seed of the sweep: the nested bases, then every arm from each (``arms``: names like
    ``"GRPO @1000"`` or bare ``"GRPO"``; default all). ``corpus`` is unused (the registry's signature)."""
    teacher = train_procedure_teacher()
    runs, curves = [], {}
    for steps, base in nested_bases(seed).items():
        wanted = [a for a in ARMS if arms is None or a in arms or arm_name(a, steps) in arms]
        if not wanted:
            continue
        res = run_arms(seed, base, LR, teacher, wanted)
        for arm, r in res.items():
            name = arm_name(arm, steps)
            if "curve" in r:
                curves[name] = r["curve"]
            runs += _records(seed, name, r)
            if log:
                log(f"rl_base seed {seed} {name:<12} held-out {r['accuracy']:.3f}")
    return {"seed": seed, "runs": runs, "curves": curves, "uptrain": None}


def write_rl_base_sweep(per_seed: list[dict], path=None):
    meta = {"student": vars(dsw.STUDENT), "teacher": vars(TEACHER_CONFIG), "teacher_recipe": TEACHER_RECIPE,
            "base_budgets": list(BASE_BUDGETS), "recipe": RECIPE, "lr": LR, "lr_grid": LR_GRID,
            "lr_rule": f"seed {LR_SEED}, base @{BASE_BUDGETS[1]}: the grid value with the best final "
                       "in-distribution accuracy (ties: the smaller)",
            "held_out": {"n": heldout.N_HELD_OUT, "seed": heldout.HELD_OUT_SEED, "closed_under_swap": True},
            "threads": THREADS, **build_meta(), "device": "cpu",
            "made_by": "python scripts/sweep.py rl_base --seeds … --part …, then --merge"}
    return write_sweep("rl_base", per_seed, path, meta=meta)


def accuracy_pp(sweep, base_steps: int, arms=("base", *ARMS), metric: str = "accuracy"):
    """One base budget's arms as paired runs in percentage points (``PairedRuns``: differences read as pp),
    arms named bare ("GRPO", not "GRPO @1000")."""
    from ..compare import PairedRuns

    runs = sweep.runs(metric, [arm_name(a, base_steps) for a in arms])
    return PairedRuns.from_values({a: {s: 100 * v for s, v in runs.values[arm_name(a, base_steps)].items()}
                                   for a in arms})


def zero_signal_curves(sweep, base_steps: int, kind: str = "zero_signal") -> dict[int, list[float]]:
    """{seed: the share of GRPO's groups with no signal at each step} from the base of ``base_steps``;
    ``kind`` "all_wrong" or "all_right" gives the share whose answers were all wrong, or all right."""
    kind = check_choice("kind", kind, SIGNAL_KINDS)
    return {s: sweep.curves[s][arm_name("GRPO", base_steps)][kind] for s in sweep.seeds}


def pilot_rows(kind: str) -> list[dict]:
    """The committed pilot's rows of one kind ("teacher", "base"), from ``results/pilots/distill.jsonl``
    (written by ``scripts/rl_base_pilot.py``)."""
    import json

    from .sweep import ROOT

    path = ROOT / "results" / "pilots" / "distill.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in rows if r.get("pilot") == kind]
