"""Check functions for the notebooks' exercises.

Each check takes the learner's answer, prints whether it is right (with a hint when it is not) and
returns a ``Checked`` that is true or false (``assert check(answer)`` works) and, unlike a bare
``True``/``False``, prints nothing more when it ends a notebook cell; an answer left as ``None``
reports "not attempted" instead of failing, so a notebook still runs top to bottom.
``tests/test_exercises.py`` proves every check accepts its reference solution and rejects the typical
wrong answers; lesson 00's solutions are in ``solutions.py`` (the
notebook points a stuck learner there), the later lessons' are written out in that test file.
"""

from __future__ import annotations

import torch


class Checked:
    """A check's result: true when the answer is right. A check is the last line of its cell, and a bare
    ``True``/``False`` there would be echoed under the printed verdict (and saved in the notebook); this
    object tells IPython it has nothing to display (``_ipython_display_``)."""

    __slots__ = ("ok",)

    def __init__(self, ok: bool):
        self.ok = bool(ok)

    def __bool__(self) -> bool:
        return self.ok

    def __eq__(self, other) -> bool:
        return bool(other) == self.ok if isinstance(other, (bool, Checked)) else NotImplemented

    def __hash__(self) -> int:
        return hash(self.ok)

    def __repr__(self) -> str:
        return f"Checked({self.ok})"

    def _ipython_display_(self) -> None:
        """The verdict line is already printed; display nothing more."""


def report(ok: bool, name: str, hint: str = "") -> Checked:
    """The one place that prints a verdict (checks are for notebooks, so printing is their job)."""
    print(f"✅ {name}: correct" if ok else f"❌ {name}: not yet. {hint}".rstrip())
    return Checked(ok)


def not_attempted(name: str) -> Checked:
    print(f"⏳ {name}: not attempted yet (replace the None / the NotImplementedError)")
    return Checked(False)


def call_or_none(fn, *args):
    """Run the learner's function; NotImplementedError or a None result count as not attempted."""
    try:
        out = fn(*args)
    except NotImplementedError:
        return None
    return out


def close(a, b, atol=1e-5) -> bool:
    return torch.is_tensor(a) and a.shape == b.shape and torch.allclose(a, b, atol=atol)
