"""The committed seed sweeps behind lessons 05 and 06: whole models compared over seeds.

- ``mtp`` (lesson 05): the ``tiny`` model with and without one MTP module (λ = 0.3), lesson 05's recipe.
  Does the extra target change the main model's own next-token loss, and what does it cost to train?
- ``capstone`` (lesson 06): the tiny DeepSeek-V3 (``helpers.lessons.capstone.CPU_CONFIG``) against lesson 00's
  dense baseline with the same active parameters (``matched_baseline``), the same tokens, the CPU plan.

A lesson trains seed 0 of each arm it shows live (on ``THREADS`` threads, as the sweep did, so its numbers
are the committed ones exactly) and takes its verdict from all seeds; ``python scripts/sweep.py mtp`` and
``python scripts/sweep.py capstone`` make the files, ``tests/test_model_sweeps.py`` re-runs one arm.
Every run records the main model's validation loss on fixed batches (``EVAL``), split by domain too, and
its training wall time on ``THREADS`` threads; MTP arms also record the teacher-forced acceptance of
module 1's drafts (``helpers.speculative.teacher_forced_acceptance``) on fixed validation batches.
"""

from __future__ import annotations

import torch

from ..config import ModelConfig, preset
from ..data import Corpus
from ..lessons.capstone import CPU_CONFIG, CPU_RECIPE, matched_baseline
from ..model import Transformer
from ..plan import scaled_recipe
from ..reproduce import build_meta
from ..speculative import teacher_forced_acceptance
from ..timing import torch_threads
from ..training import evaluate, train
from ..validate import check_choice, check_int
from .sweep import SEEDS, write_sweep  # noqa: F401  (SEEDS: this sweep's seeds)

# Two threads, not the other sweeps' one (``experiments.THREADS``): these are the lessons' longest live
# runs, and two threads train them faster (lesson 06's live run: 104 s against 156 s on one thread; the
# mtp arms about 1.3x). Results are still bit-identical run to run, and on any machine that runs
# torch's CPU kernels on two threads: the thread *count* fixes how each sum is split, not the number
# of cores. One thread and two give the same bits for the dense models (the mtp sweep re-run on two
# threads reproduced every committed number), not for absorbed MLA's backward pass, so the capstone
# sweep was re-run on two threads and the count is part of the recipe.
THREADS = 2
EVAL = dict(batch_size=16, seq_len=128, iters=16, seed=7)  # the same fixed batches for every run
ACCEPT = dict(batch_size=32, seq_len=128, seed=11)  # the batch the acceptance is measured on
MTP_RECIPE = dict(steps=400, batch_size=16, seq_len=128, lr=3e-3, eval_every=100, eval_iters=8)
CAPSTONE_RECIPE = dict(CPU_RECIPE)  # lesson 06's CPU plan at full length (COURSE_* variables never apply)


def mtp_arms() -> dict[str, ModelConfig]:
    return {"plain": preset("tiny"), "MTP (D=1)": preset("tiny", mtp_depth=1)}


def capstone_arms() -> dict[str, ModelConfig]:
    return {"baseline": matched_baseline(CPU_CONFIG), "tiny DeepSeek-V3": CPU_CONFIG}


ARMS = {"mtp": mtp_arms, "capstone": capstone_arms}
RECIPES = {"mtp": MTP_RECIPE, "capstone": CAPSTONE_RECIPE}


def new_model(sweep: str, arm: str, seed: int) -> Transformer:
    """The untrained model of one arm and seed, built as the sweep built it."""
    sweep = check_choice("sweep", sweep, list(ARMS))
    cfg = ARMS[sweep]()[check_choice("arm", arm, list(ARMS[sweep]()))]
    with torch_threads(THREADS):
        torch.manual_seed(check_int("seed", seed, min_value=0))
        return Transformer(cfg)


def train_run(sweep: str, arm: str, seed: int, corpus: Corpus, *, callback=None,
              model: Transformer | None = None):
    """Seed ``seed`` of one arm, on ``THREADS`` thread(s) on the CPU: (model, History). ``model`` is
    ``new_model(sweep, arm, seed)`` made beforehand (to attach a live dashboard to it first)."""
    model = new_model(sweep, arm, seed) if model is None else model  # checks sweep, arm and seed
    sweep = check_choice("sweep", sweep, list(ARMS))
    seed = check_int("seed", seed, min_value=0)
    with torch_threads(THREADS):
        hist = train(model, corpus, progress=False, callback=callback, device="cpu",
                     **{**scaled_recipe(RECIPES[sweep]), "seed": seed})
    return model.eval(), hist


@torch.no_grad()
def measure_model(model: Transformer, corpus: Corpus) -> dict[str, float]:
    """Validation loss (all, prose, code) on ``EVAL``'s batches; MTP models add the draft acceptance."""
    with torch_threads(THREADS):
        out = {"val_loss": evaluate(model, corpus, **EVAL)}
        for dom in ("docs", "code"):
            out[f"val_{dom}"] = evaluate(model, corpus, domain=dom, **EVAL)
        if model.mtp is not None:
            b = corpus.get_batch("val", ACCEPT["batch_size"], ACCEPT["seq_len"],
                                 generator=torch.Generator().manual_seed(ACCEPT["seed"]), device=model.device)
            out["acceptance"] = teacher_forced_acceptance(model, b.x, b.y)
    return out


def _run_seed(sweep: str, seed: int, corpus: Corpus, arms=None, log=None) -> dict:
    known = list(ARMS[sweep]())
    names = known if arms is None else [check_choice("arm", a, known) for a in arms]
    runs, curves = [], {}
    for name in names:
        model, hist = train_run(sweep, name, seed, corpus)
        m = {**measure_model(model, corpus), "train_seconds": hist.seconds}
        runs += [{"arm": name, "seed": seed, "metric": k, "value": v} for k, v in m.items()]
        curves[name] = {"step": [s + 1 for s in hist.val_step], "val_loss": hist.val_loss}
        if log:
            log(f"{sweep} seed {seed} {name:<18} val {m['val_loss']:.4f} ({hist.seconds:.0f} s)")
    return {"seed": seed, "runs": runs, "curves": curves, "uptrain": None}


def run_mtp_seed(seed: int, corpus: Corpus, arms=None, log=None) -> dict:
    return _run_seed("mtp", seed, corpus, arms, log)


def run_capstone_seed(seed: int, corpus: Corpus, arms=None, log=None) -> dict:
    return _run_seed("capstone", seed, corpus, arms, log)


def _writer(sweep: str):
    def write(per_seed: list[dict], path=None):
        meta = {"recipe": RECIPES[sweep], "eval": EVAL, "accept": ACCEPT, "threads": THREADS,
                **build_meta(), "device": "cpu", "arms": list(ARMS[sweep]()),
                "made_by": f"python scripts/sweep.py {sweep}"}
        return write_sweep(sweep, per_seed, path, meta=meta)
    return write


write_mtp_sweep = _writer("mtp")
write_capstone_sweep = _writer("capstone")
