"""Train lesson 08's teacher once and write it to ``data/teacher/`` (safetensors + SHA-256).

    python scripts/train_teacher.py            # about 10 minutes on one CPU thread

The teacher is a larger model of the course's own architecture (``TEACHER_CONFIG``: width 192, 4 layers,
1.9M parameters, against the ``tiny`` student's 0.38M), trained on two things at once, because the lesson
distils it two ways: every step adds the language-model loss on a batch of the course corpus and the
supervised loss on a batch of addition problems (``helpers.tasks.arith``: the answer and its terminator only).
Training is deterministic on one thread (seed 0), so the script reproduces the shipped file; it prints
the SHA-256 it wrote (also in ``data/teacher/teacher.safetensors.sha256``), which ``helpers.lessons.teacher``
checks before it loads anything.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from helpers.config import ModelConfig  # noqa: E402
from helpers.data import load_corpus  # noqa: E402
from helpers.lessons.teacher import TEACHER_PATH, save_weights  # noqa: E402
from helpers.model import Transformer  # noqa: E402
from helpers.tasks import arith  # noqa: E402
from helpers.timing import torch_threads  # noqa: E402

TEACHER_CONFIG = ModelConfig(dim=192, n_layers=4, n_heads=6, inter_dim=512, max_seq_len=128)
RECIPE = dict(steps=2000, text_batch=8, seq_len=128, add_batch=64, digits=2, lr=1e-3, seed=0, threads=1)


def train_teacher(log=print) -> Transformer:
    corpus = load_corpus()
    with torch_threads(RECIPE["threads"]):
        torch.manual_seed(RECIPE["seed"])
        model = Transformer(TEACHER_CONFIG)
        opt = torch.optim.AdamW(model.parameters(), lr=RECIPE["lr"], weight_decay=0.0)
        gen = torch.Generator().manual_seed(RECIPE["seed"])
        start = time.perf_counter()
        for step in range(RECIPE["steps"]):
            b = corpus.get_batch("train", RECIPE["text_batch"], RECIPE["seq_len"], generator=gen)
            a = arith.sft_batch(arith.sample_problems(RECIPE["add_batch"], RECIPE["digits"], gen))
            loss = model.run(b.x, b.y).loss + model.run(a.x, a.y).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if (step + 1) % 250 == 0:
                log(f"step {step + 1}: loss {loss.item():.3f} ({time.perf_counter() - start:.0f} s)")
    return model.eval()


def main() -> int:
    model = train_teacher()
    test = arith.sample_problems(500, RECIPE["digits"], torch.Generator().manual_seed(99))
    acc = arith.accuracy(model, test)
    digest = save_weights(model, TEACHER_PATH, extra_meta={"recipe": RECIPE, "addition_accuracy": acc,
                                                           "made_by": "python scripts/train_teacher.py"})
    print(f"addition accuracy on 500 held-out problems: {acc:.1%}")
    print(f"wrote {TEACHER_PATH} ({TEACHER_PATH.stat().st_size / 1e6:.1f} MB), sha256 {digest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
