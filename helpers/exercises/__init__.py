"""Check functions for the notebooks' exercises.

Each check takes the learner's answer, prints whether it is right (with a hint when it is not) and
returns ``True``/``False``; an answer left as ``None`` reports "not attempted" instead of failing, so a
notebook still runs top to bottom. ``tests/test_exercises.py`` proves every check accepts its reference
solution and rejects the typical wrong answers; lesson 00's solutions are in ``solutions.py`` (the
notebook points a stuck learner there), the later lessons' are written out in that test file.
"""

from __future__ import annotations

import torch


def report(ok: bool, name: str, hint: str = "") -> bool:
    """The one place that prints a verdict (checks are for notebooks, so printing is their job)."""
    print(f"✅ {name}: correct" if ok else f"❌ {name}: not yet. {hint}".rstrip())
    return ok


def not_attempted(name: str) -> bool:
    print(f"⏳ {name}: not attempted yet (replace the None / the NotImplementedError)")
    return False


def call_or_none(fn, *args):
    """Run the learner's function; NotImplementedError or a None result count as not attempted."""
    try:
        out = fn(*args)
    except NotImplementedError:
        return None
    return out


def close(a, b, atol=1e-5) -> bool:
    return torch.is_tensor(a) and a.shape == b.shape and torch.allclose(a, b, atol=atol)
