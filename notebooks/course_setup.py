"""Find the course's ``helpers`` package: every lesson's first cell is ``import course_setup``.

The lessons import this module from their own folder (``notebooks/``, or your ``workspace/`` copies,
which ``scripts/workspace.py`` gives a copy of this file). On a local checkout (``make lab``) the course
is installed and this does nothing. On a kernel started elsewhere (a GPU server, Colab after
``%cd deepseek-course/notebooks``) it looks for the checkout in the working directory and the folders
above it and puts it on ``sys.path``, so the kernel needs no restart after ``pip install -e``. Outside
any checkout it raises an ``ImportError`` that says what to do. Only the course's own package counts
(its ``helpers/__init__.py`` says ``COURSE = "deepseek-v3-course"``): another project's package that is
also called ``helpers`` is set aside, never imported in its place. ``tests/test_notebook_setup.py`` runs
it in a Python that does not have the course installed, with such decoys.
"""

import importlib.util
import sys
from pathlib import Path

COURSE = "deepseek-v3-course"


def is_course(folder: Path) -> bool:
    """A checkout whose helpers/__init__.py carries the marker."""
    init = folder / "helpers" / "__init__.py"
    return init.is_file() and f'COURSE = "{COURSE}"' in init.read_text(encoding="utf-8", errors="replace")


def find_helpers() -> None:
    ignored = None  # where another project's `helpers` was found, if one was
    try:
        import helpers
    except ImportError:
        helpers = None
    if helpers is not None and getattr(helpers, "COURSE", None) != COURSE:
        ignored = getattr(helpers, "__file__", None) or list(getattr(helpers, "__path__", []))
        for name in [m for m in sys.modules if m == "helpers" or m.startswith("helpers.")]:
            del sys.modules[name]  # forget it, so that the course's package is imported instead
        helpers = None
    if helpers is not None:
        return
    roots = [p for p in (Path.cwd(), *Path.cwd().parents) if is_course(p)]
    if not roots:
        also = f"; another package named helpers was found at {ignored} and ignored" if ignored else ""
        raise ImportError("the course's helpers package was not found: clone the course and run "
                          f"`pip install -e .` in it (see the README){also}")
    sys.path.insert(0, str(roots[0]))
    found = importlib.util.find_spec("helpers")  # checked without importing: it must be this checkout's
    if Path(found.origin).resolve() != (roots[0] / "helpers" / "__init__.py").resolve():
        raise ImportError(f"the course is in {roots[0]}, but `import helpers` would load {found.origin}")


find_helpers()
