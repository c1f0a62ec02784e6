"""The prepared GPU check: on a machine with CUDA, every lesson on its real GPU plan, timed, and the
capstone's training and decode speed; it fills the README instructor table's GPU column.

    python scripts/gpu_check.py                   # measure and print (nothing is written)
    python scripts/gpu_check.py --write-readme    # and write the README's GPU column (make gpu-check)
    python scripts/gpu_check.py --lessons 00 06   # some lessons only
    python scripts/gpu_check.py --json FILE       # the figures as JSON too

Each lesson runs headless (``scripts/run_notebooks.py``'s executor, saving nothing) with
``COURSE_PLAN``, ``COURSE_STEPS_SCALE`` and ``COURSE_DEVICE`` unset, so it takes the GPU plan a learner's
GPU kernel takes; its wall time is what the GPU column states. The capstone figures: the GPU plan's
training tokens per second over ``TRAIN_STEPS`` steps (bf16 autocast, after ``WARMUP_STEPS`` unmeasured
ones) and greedy decoding ms per token (``helpers.timing.decode_ms_per_token``, best of 3). Without CUDA
it refuses (exit 2): the CPU has ``make test-gpu-plan`` for the same code paths.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "scripts"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

README = ROOT / "README.md"
TRAIN_STEPS, WARMUP_STEPS, DECODE_TOKENS = 30, 5, 128
ROW_RE = re.compile(r"^\| (?P<lesson>\d\d) \| (?P<cpu>[^|]+) \| (?P<gpu>[^|]+) \|", re.M)


def fill_gpu_column(readme: str, seconds: dict[str, float], device_name: str) -> str:
    """The README with the instructor table's GPU cell of each lesson in ``seconds`` ("06": 84.2) set to
    the measured wall time on ``device_name``; other rows unchanged. A lesson without a row is an error."""
    found = {m.group("lesson") for m in ROW_RE.finditer(readme)}
    missing = sorted(set(seconds) - found)
    if missing:
        raise ValueError(f"the README's instructor table has no row for lesson(s) {missing}")

    def cell(m: re.Match) -> str:
        lesson = m.group("lesson")
        if lesson not in seconds:
            return m.group(0)
        return f"| {lesson} | {m.group('cpu')} | {seconds[lesson]:.0f} s ({device_name}) |"

    return ROW_RE.sub(cell, readme)


def capstone_figures(device) -> dict[str, float]:
    """The GPU plan's training tokens/s and decode ms per token on ``device``."""
    import torch

    import helpers
    from helpers.lessons.capstone import plan_for
    from helpers.model import Transformer
    from helpers.timing import decode_ms_per_token

    plan = plan_for(device)
    corpus = helpers.load_corpus()
    torch.manual_seed(0)
    model = Transformer(plan.config).to(device)
    common = dict(batch_size=plan.batch_size, seq_len=plan.seq_len, lr=plan.lr, device=device,
                  autocast=plan.autocast, progress=False, eval_every=10**9)
    helpers.train(model, corpus, steps=WARMUP_STEPS, seed=0, **common)  # kernels chosen, memory allocated
    hist = helpers.train(model, corpus, steps=TRAIN_STEPS, seed=1, **common)
    prompt = corpus.get_batch("val", 1, 32, generator=torch.Generator().manual_seed(0), device=device).x
    return {"plan": plan.name, "train_tokens_per_s": hist.tokens_per_sec,
            "decode_ms_per_token": decode_ms_per_token(model.eval(), prompt, DECODE_TOKENS)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lessons", nargs="*", help="lesson numbers (default: every lesson)")
    ap.add_argument("--write-readme", action="store_true", help="fill the README's GPU column")
    ap.add_argument("--json", type=Path, help="also write the figures to this file")
    args = ap.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("gpu_check needs a CUDA device (this torch sees none); on a CPU, `make test-gpu-plan` runs the "
              "same GPU-plan code paths at a small scale", file=sys.stderr)
        return 2
    for var in ("COURSE_PLAN", "COURSE_STEPS_SCALE", "COURSE_DEVICE"):
        os.environ.pop(var, None)  # the plan a learner's GPU kernel takes, at full length
    from run_notebooks import run

    device = torch.device("cuda")
    name = torch.cuda.get_device_name(device)
    paths = sorted((ROOT / "notebooks").glob("*.ipynb"))
    if args.lessons:
        paths = [p for p in paths if p.name[:2] in set(args.lessons)]
    seconds, failed = {}, []
    for path in paths:
        try:
            seconds[path.name[:2]] = run(path, save=False)
            print(f"{path.name}: {seconds[path.name[:2]]:.1f} s on {name}", flush=True)
        except Exception as err:  # report every lesson, then fail
            failed.append(f"{path.name}: {type(err).__name__}: {str(err).strip().splitlines()[:1]}")
            print(f"{path.name}: FAILED: {failed[-1]}", flush=True)
    figures = capstone_figures(device)
    print(f"capstone, {figures['plan']} plan: {figures['train_tokens_per_s']:,.0f} training tokens/s, "
          f"{figures['decode_ms_per_token']:.2f} ms per decoded token")
    if args.json:
        blob = {"device": name, "torch": torch.__version__, "lesson_seconds": seconds, "capstone": figures,
                "failed": failed}
        args.json.write_text(json.dumps(blob, indent=1) + "\n")
    if args.write_readme and seconds:
        text = fill_gpu_column(README.read_text(encoding="utf-8"), seconds, name)
        README.write_text(text, encoding="utf-8")
        print(f"wrote the GPU column of {README}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
