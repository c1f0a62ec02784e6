"""The committed seed sweep behind lesson 08: distillation against RL for a small model, at course scale.

Two experiments share the shipped teacher (``lessons.teacher.load_teacher``: width 192, 4 layers, trained
on the corpus and on addition by ``scripts/train_teacher.py``) and the ``tiny`` student (0.38M parameters):

* ``lm`` (language modelling, equal student compute): the student trains for ``LM_RECIPE`` steps on
  the corpus alone (``"data only"``), with logit distillation (``"logit KD"``: ``helpers.distill.kd_loss``
  against the teacher's softened distribution on the same batches, T = 2, α = 0.5), or on text the
  teacher wrote (``"sequence KD"``: a pool of teacher samples continuing corpus prompts, generated once
  for every seed). Every arm processes the same number of student tokens; the teacher's own compute
  (its forward passes, its generated tokens) is recorded for the side table. Measured: the student's
  loss on the real validation text.
* ``rl`` (the verifiable task, equal student compute): a student first fine-tuned for ``BASE_STEPS`` on
  addition so that it is sometimes right (the "base model" RL needs), then trained on from that base
  (a) by GRPO with the exact-answer reward (``helpers.grpo``) and (b) by fine-tuning on the teacher's
  greedy answers to fresh problems, each until the same student compute (token-passes,
  ``helpers.distill.ComputeMeter``). Accuracy on 300 held-out problems at checkpoints.

``python scripts/sweep.py distill`` writes ``results/sweeps/distill.json``.
"""

from __future__ import annotations

import copy

import torch

from ..config import preset
from ..data import Corpus
from ..distill import ComputeMeter, generation_passes, kd_loss
from ..generate import generate
from ..grpo import grpo_step
from ..lessons.teacher import load_teacher
from ..model import Transformer
from ..plan import scaled_recipe
from ..reproduce import build_meta
from ..tasks import arith, heldout
from ..timing import synced_clock, torch_threads
from ..training import optimizer_step, run_steps
from ..validate import check_choice
from .sweep import SEEDS, THREADS, write_sweep  # noqa: F401  (SEEDS: this sweep's seeds)

STUDENT = preset("tiny")
LM_RECIPE = dict(steps=300, batch_size=16, seq_len=127, lr=3e-3, temperature=2.0, alpha=0.5,
                 prompt_len=16, pool_seed=12345, checkpoints=6)
RL_RECIPE = dict(base_steps=1000, base_lr=3e-3, sft_batch=64, digits=2, grpo_steps=200, grpo_prompts=16,
                 group_size=8, grpo_lr=3e-4, beta=0.04, sft_lr=3e-3, checkpoints=4, test_problems=300,
                 test_seed=99)
EVAL = dict(batch_size=16, seq_len=128, iters=8, seed=7)
LM_ARMS = ("data only", "logit KD", "sequence KD")
# Controls added after the first sweep (python scripts/sweep.py distill --arms … --part …, then --extend):
# data only given logit KD's *total* FLOPs (more steps on more corpus batches), and sequence KD's targets
# without its text: on data only's own corpus batches, the target of each position is k bytes sampled from
# the teacher's distribution there (temperature 1), so sequence KD's two differences from data only are
# measured one at a time (who wrote the input text; one teacher sample per position against the true byte,
# against k of them).
EQUAL_FLOPS_ARM = "data only, logit KD's FLOPs"
SAMPLED_ARMS = {"sampled KD k=1": 1, "sampled KD k=8": 8}
LM_CONTROL_ARMS = (EQUAL_FLOPS_ARM, *SAMPLED_ARMS)
ALL_LM_ARMS = (*LM_ARMS, *LM_CONTROL_ARMS)
RL_ARMS = ("GRPO", "SFT on the teacher's answers")


@torch.no_grad()
def val_loss(model: Transformer, corpus: Corpus) -> float:
    gen = torch.Generator().manual_seed(EVAL["seed"])
    losses = []
    for _ in range(EVAL["iters"]):
        b = corpus.get_batch("val", EVAL["batch_size"], EVAL["seq_len"], generator=gen)
        losses.append(model.run(b.x, b.y).main_loss.item())
    return sum(losses) / len(losses)


_POOL: dict = {}


@torch.no_grad()
def teacher_text_pool(teacher: Transformer, corpus: Corpus) -> tuple[torch.Tensor, int]:
    """(N, seq_len + 1) teacher-written windows: ``prompt_len`` corpus bytes, then the teacher's sampled
    continuation (temperature 1), enough for every step of an arm; and the teacher token-passes spent."""
    r = scaled_recipe(LM_RECIPE)
    source = getattr(teacher, "weights_source", None)  # the same shipped file loaded again: the same pool
    key = (source.sha256 if source is not None else id(teacher), r["pool_seed"], r["steps"])
    if key not in _POOL:
        gen = torch.Generator().manual_seed(r["pool_seed"])
        rows, passes, n_new = [], 0, r["seq_len"] + 1 - r["prompt_len"]
        for i in range(r["steps"]):
            b = corpus.get_batch("train", r["batch_size"], r["prompt_len"], generator=gen)
            rows.append(generate(teacher, b.x, n_new, temperature=1.0, seed=r["pool_seed"] + i))
            passes += generation_passes(r["batch_size"], r["prompt_len"], n_new)
        _POOL[key] = (torch.cat(rows), passes)
    return _POOL[key]


def new_student(seed: int, lr: float) -> tuple[Transformer, torch.optim.Optimizer, torch.Generator]:
    """Seed ``seed``'s fresh student, its optimiser (AdamW, constant ``lr``, no weight decay) and its
    batch generator, made in this order (the order fixes the numbers)."""
    torch.manual_seed(seed)
    student = Transformer(STUDENT)
    opt = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=0.0)
    return student, opt, torch.Generator().manual_seed(seed)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def equal_flops_steps(teacher: Transformer, steps: int | None = None) -> int:
    """Data-only steps whose FLOPs reach logit KD's total over ``steps`` steps (default the recipe's):
    logit KD's token costs 3 · 2N_s (the student's forward and backward) + 2N_t (the teacher's forward),
    data only's 3 · 2N_s, so the ratio is 1 + N_t / (3 N_s); rounded up."""
    steps = scaled_recipe(LM_RECIPE)["steps"] if steps is None else steps
    with torch.device("meta"):  # the shapes only: no memory, and no draw from the global random stream
        n_s = n_params(Transformer(STUDENT))
    n_t = n_params(teacher)
    return -(-steps * (3 * n_s + n_t) // (3 * n_s))  # ceil, in integers


def sampled_targets(t_logits: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """(B, T, V) teacher logits → (B·T, k) bytes drawn from softmax(t_logits) at each position."""
    probs = t_logits.float().softmax(-1).flatten(0, 1)  # (B·T, V)
    return torch.multinomial(probs, k, replacement=True, generator=generator)


def sampled_kd_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of (B, T, V) student logits against (B·T, k) sampled targets, averaged over the k
    samples and the positions: with k → ∞ it tends to CE against the teacher's distribution itself."""
    logp = logits.log_softmax(-1).flatten(0, 1)  # (B·T, V)
    return -logp.gather(1, targets).mean()


def train_lm_arm(arm: str, seed: int, corpus: Corpus, teacher: Transformer) -> dict:
    """One LM arm, one seed: the student's validation loss, its compute and the teacher's."""
    arm = check_choice("arm", arm, ALL_LM_ARMS)
    r = dict(scaled_recipe(LM_RECIPE))
    if arm == EQUAL_FLOPS_ARM:
        r["steps"] = equal_flops_steps(teacher, r["steps"])
    k = SAMPLED_ARMS.get(arm)
    sampling = torch.Generator().manual_seed(4000 + seed) if k else None  # apart from the batches' stream
    with torch_threads(THREADS):
        student, opt, gen = new_student(seed, r["lr"])
        meter = ComputeMeter()
        pool, pool_passes = teacher_text_pool(teacher, corpus) if arm == "sequence KD" else (None, 0)
        curve, every = {"compute": [0.0], "val_loss": [val_loss(student.eval(), corpus)]}, \
            max(1, r["steps"] // r["checkpoints"])
        student.train()
        start, eval_seconds = synced_clock(), [0.0]

        def step_fn(step):
            if pool is not None:
                rows = pool[step * r["batch_size"]:(step + 1) * r["batch_size"]]
                x, y = rows[:, :-1], rows[:, 1:]
            else:
                b = corpus.get_batch("train", r["batch_size"], r["seq_len"], generator=gen)
                x, y = b.x, b.y
            logits = student(x)  # (B, T, V)
            if arm == "logit KD" or k:
                with torch.no_grad():
                    t_logits = teacher(x)
                meter.teacher_forward(x.numel())
            if arm == "logit KD":
                loss = kd_loss(logits, t_logits, y, r["temperature"], r["alpha"]).loss
            elif k:
                loss = sampled_kd_loss(logits, sampled_targets(t_logits, k, sampling))
            else:
                loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())
            meter.train(x.numel())
            return loss

        def on_step(step, loss):
            if (step + 1) % every == 0 and step + 1 < r["steps"]:  # the learning curve, off the clock
                tick = synced_clock()
                curve["compute"].append(float(meter.total))
                curve["val_loss"].append(val_loss(student.eval(), corpus))
                student.train()
                eval_seconds[0] += synced_clock() - tick

        run_steps(opt, r["steps"], step_fn, callback=on_step)
        seconds = synced_clock() - start - eval_seconds[0]
        if pool is not None:
            meter.teacher_generate(pool_passes)
        final = val_loss(student.eval(), corpus)
        curve["compute"].append(float(meter.total))
        curve["val_loss"].append(final)
        return {"val_loss": final, "student_compute": float(meter.total),
                "teacher_compute": float(meter.teacher_total), "train_seconds": seconds, "curve": curve}


def test_problems() -> list:
    return arith.sample_problems(RL_RECIPE["test_problems"], RL_RECIPE["digits"],
                                 torch.Generator().manual_seed(RL_RECIPE["test_seed"]))


def training_sampler(held_out: bool = False):
    """How every RL-experiment stage draws its problems: ``arith.sample_problems`` (the committed sweep),
    or with ``held_out=True`` ``heldout.sample_training_problems``, which never returns a held-out pair."""
    return heldout.sample_training_problems if held_out else arith.sample_problems


def base_student(seed: int, held_out: bool = False) -> tuple[Transformer, torch.Generator]:
    """The RL experiment's base: the student fine-tuned on correct answers for ``base_steps``
    (``held_out=True``: never on a held-out problem, ``helpers.tasks.heldout``)."""
    r = scaled_recipe(RL_RECIPE)
    sample = training_sampler(held_out)
    with torch_threads(THREADS):
        model, opt, gen = new_student(seed, r["base_lr"])

        def step_fn(step):
            b = arith.sft_batch(sample(r["sft_batch"], r["digits"], gen))
            return model.run(b.x, b.y).loss

        run_steps(opt, r["base_steps"], step_fn)
    return model.eval(), gen


def run_rl_arms(seed: int, teacher: Transformer, arms=RL_ARMS, held_out: bool = False) -> dict:
    """Both RL-experiment arms from one base: accuracy curves against student compute. With
    ``held_out=True`` no stage trains on a held-out problem and the curves are held-out accuracy
    (``heldout.held_out_problems``); ``in_distribution_accuracy`` is then also reported per arm."""
    r = scaled_recipe(RL_RECIPE)
    sample = training_sampler(held_out)
    base, _ = base_student(seed, held_out)
    test = heldout.held_out_problems() if held_out else test_problems()
    out = {"base_accuracy": arith.accuracy(base, test)}
    if held_out:
        seen_like = heldout.in_distribution_problems(len(test))
        out["base_in_distribution_accuracy"] = arith.accuracy(base, seen_like)
    every = max(1, r["grpo_steps"] // r["checkpoints"])
    with torch_threads(THREADS):
        # (a) GRPO: the budget is what its steps cost
        grpo_curve = {"compute": [0.0], "accuracy": [out["base_accuracy"]]}
        model, ref = copy.deepcopy(base).train(), copy.deepcopy(base).eval()
        opt = torch.optim.AdamW(model.parameters(), lr=r["grpo_lr"], weight_decay=0.0)
        gen, meter = torch.Generator().manual_seed(1000 + seed), ComputeMeter()
        start = synced_clock()
        for step in range(r["grpo_steps"]):
            grpo_step(model, ref, opt, sample(r["grpo_prompts"], r["digits"], gen),
                      r["group_size"], beta=r["beta"], generator=gen, meter=meter)
            if (step + 1) % every == 0:
                grpo_curve["compute"].append(float(meter.total))
                grpo_curve["accuracy"].append(arith.accuracy(model, test))
                model.train()
        out["GRPO"] = {"accuracy": grpo_curve["accuracy"][-1], "student_compute": float(meter.total),
                       "reference_compute": float(meter.reference_total), "train_seconds":
                       synced_clock() - start, "curve": grpo_curve}
        if held_out:
            out["GRPO"]["in_distribution_accuracy"] = arith.accuracy(model, seen_like)
        budget, marks = meter.total, grpo_curve["compute"][1:]
        # (b) fine-tuning on the teacher's greedy answers, to the same student compute
        model = copy.deepcopy(base).train()
        opt = torch.optim.AdamW(model.parameters(), lr=r["sft_lr"], weight_decay=0.0)
        gen, meter = torch.Generator().manual_seed(2000 + seed), ComputeMeter()
        sft_curve = {"compute": [0.0], "accuracy": [out["base_accuracy"]]}
        start, m = synced_clock(), 0
        while True:
            problems = sample(r["sft_batch"], r["digits"], gen)
            answers = arith.decode_greedy(teacher, problems)
            b = arith.sft_batch(problems, [arith.answer_of(c) for c in answers.completions])
            if meter.total + 3 * b.tokens > budget:  # the next step would pass GRPO's compute: stop
                break
            meter.teacher_generate(answers.passes)
            optimizer_step(opt, model.run(b.x, b.y).loss)  # to a compute budget: run_steps cannot stop there
            meter.train(b.tokens)
            while m < len(marks) and meter.total >= marks[m]:
                sft_curve["compute"].append(float(meter.total))
                sft_curve["accuracy"].append(arith.accuracy(model, test))
                model.train()
                m += 1
        if m < len(marks):  # stopped short of GRPO's last mark (the next step would pass it): the end point
            sft_curve["compute"].append(float(meter.total))
            sft_curve["accuracy"].append(arith.accuracy(model, test))
        out["SFT on the teacher's answers"] = {
            "accuracy": sft_curve["accuracy"][-1], "student_compute": float(meter.total),
            "teacher_compute": float(meter.teacher_total), "train_seconds": synced_clock() - start,
            "curve": sft_curve}
        if held_out:
            out["SFT on the teacher's answers"]["in_distribution_accuracy"] = arith.accuracy(model, seen_like)
    return out


def run_distill_seed(seed: int, corpus: Corpus, arms=None, log=None) -> dict:
    teacher = load_teacher(device="cpu")
    runs, curves = [], {}
    lm_arms = [a for a in (arms or ALL_LM_ARMS) if a in ALL_LM_ARMS]
    for arm in lm_arms:
        res = train_lm_arm(arm, seed, corpus, teacher)
        curves[arm] = res.pop("curve")
        runs += [{"arm": arm, "seed": seed, "metric": k, "value": v} for k, v in res.items()]
        if log:
            log(f"distill seed {seed} {arm:<12} val {res['val_loss']:.4f} ({res['train_seconds']:.0f} s)")
    if arms is None or any(a in RL_ARMS for a in arms):
        rl = run_rl_arms(seed, teacher)
        runs.append({"arm": "base", "seed": seed, "metric": "accuracy", "value": rl["base_accuracy"]})
        for arm in RL_ARMS:
            res = rl[arm]
            curves[arm] = res.pop("curve")
            runs += [{"arm": arm, "seed": seed, "metric": k, "value": v} for k, v in res.items()]
            if log:
                log(f"distill seed {seed} {arm:<28} accuracy {res['accuracy']:.3f} "
                    f"({res['train_seconds']:.0f} s)")
    return {"seed": seed, "runs": runs, "curves": curves, "uptrain": None}


def run_distill_heldout_seed(seed: int, corpus: Corpus | None = None, arms=None, log=None) -> dict:
    """One seed of ``distill_heldout``: the RL experiment with ``held_out=True`` (no stage trains on a
    held-out pair; ``accuracy`` on the held-out problems, ``in_distribution_accuracy`` beside it). The
    teacher is the shipped one, trained before the split. ``corpus`` and ``arms`` are unused (both arms
    share one base)."""
    rl = run_rl_arms(seed, load_teacher(device="cpu"), held_out=True)
    runs = [{"arm": "base", "seed": seed, "metric": "accuracy", "value": rl["base_accuracy"]},
            {"arm": "base", "seed": seed, "metric": "in_distribution_accuracy",
             "value": rl["base_in_distribution_accuracy"]}]
    curves = {}
    for arm in RL_ARMS:
        res = rl[arm]
        curves[arm] = res.pop("curve")
        runs += [{"arm": arm, "seed": seed, "metric": k, "value": v} for k, v in res.items()]
        if log:
            log(f"distill_heldout seed {seed} {arm:<28} held-out {res['accuracy']:.3f}")
    return {"seed": seed, "runs": runs, "curves": curves, "uptrain": None}


def write_distill_heldout_sweep(per_seed: list[dict], path=None):
    meta = {"student": vars(STUDENT), "rl_recipe": RL_RECIPE, "threads": THREADS,
            "held_out": {"n": heldout.N_HELD_OUT, "seed": heldout.HELD_OUT_SEED, "closed_under_swap": True},
            **build_meta(), "device": "cpu",
            "made_by": "python scripts/sweep.py distill_heldout --seeds … --part …, then --merge"}
    return write_sweep("distill_heldout", per_seed, path, meta=meta)


def write_distill_sweep(per_seed: list[dict], path=None):
    meta = {"student": vars(STUDENT), "lm_recipe": LM_RECIPE, "rl_recipe": RL_RECIPE, "eval": EVAL,
            "threads": THREADS, **build_meta(), "device": "cpu",
            "made_by": "python scripts/sweep.py distill"}
    return write_sweep("distill", per_seed, path, meta=meta)
