"""One visual vocabulary: one palette (helpers.viz.style), a colour per mechanism, used by every helper."""

import ast
import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pytest

from helpers.lessons import cache_calc, gqa
from helpers.viz import style, widgets
from helpers.viz.style import PALETTE, expert_colors, group_colors, latent_colors, shades

ROOT = Path(__file__).resolve().parents[1]
HEX = re.compile(r"^#[0-9a-f]{6}$")
# the arms lessons compare: each has its own colour
MECHANISMS = ["baseline", "MHA", "GQA", "MQA", "MLA", "uptrained", "first_head", "int8", "int4", "aux",
              "seq_aux", "loss_free", "main", "MTP", "hf"]


def luminance(hex_color):
    r, g, b = (int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    return 0.299 * r + 0.587 * g + 0.114 * b


def test_every_colour_is_hex_and_mechanisms_differ():
    assert all(HEX.match(c) for c in PALETTE.values())
    assert len({PALETTE[m] for m in MECHANISMS}) == len(MECHANISMS)
    # the MoE balance modes of helpers.config, and the attention variants of helpers.lessons.cache_calc
    assert {"none", "aux", "seq_aux", "loss_free"} <= set(PALETTE)
    assert set(cache_calc.VARIANTS) | {"weights"} <= set(PALETTE)
    assert PALETTE["none"] == PALETTE["baseline"]  # no balancing is the baseline arm
    assert PALETTE["kv_cache"] == PALETTE["MHA"]  # lesson 01's cache is an MHA model's


def test_helpers_use_the_one_palette():
    assert cache_calc.PALETTE is PALETTE
    assert widgets.PALETTE == style.TAB10 and widgets.expert_colors is expert_colors  # old names work
    assert gqa.group_colors is group_colors
    fig = cache_calc.cache_size_figure("Llama-3-8B", context_len=4096)
    colors = {line.get_color() for line in fig.axes[0].lines}
    assert {PALETTE[v] for v in cache_calc.VARIANTS} | {PALETTE["weights"]} == colors


def test_categorical_colours():
    assert expert_colors(3) == style.TAB10[:3]
    assert expert_colors(12)[10:] == style.TAB10[:2]  # repeats after ten
    assert group_colors(4) == style.TAB10[:4]
    assert group_colors(16) == style.TAB20[:16] and len(set(group_colors(16))) == 16
    assert group_colors(24)[20:] == style.TAB20[:4]


def test_shades_run_light_to_dark():
    s = shades("MLA", 4)
    assert len(set(s)) == 4 and all(HEX.match(c) for c in s)
    assert [luminance(c) for c in s] == sorted((luminance(c) for c in s), reverse=True)
    assert shades("#123456", 1) == ["#123456"]
    assert latent_colors([64, 16, 32, 32]) == dict(zip([16, 32, 64], shades("MLA", 3)))
    with pytest.raises(KeyError, match="no course colour"):
        shades("MoE", 2)
    with pytest.raises(ValueError, match="at least 1"):
        shades("MLA", 0)


def test_use_course_style_sets_what_the_notebooks_set():
    import matplotlib.pyplot as plt

    with plt.rc_context():
        style.use_course_style()
        assert plt.rcParams["figure.dpi"] == 80 and plt.rcParams["axes.grid"]
        assert plt.rcParams["grid.alpha"] == 0.3
        assert not plt.rcParams["axes.spines.top"] and not plt.rcParams["axes.spines.right"]
        style.use_course_style(dpi=72)
        assert plt.rcParams["figure.dpi"] == 72


def _palette_assignments(path):
    """Names PALETTE bound by an assignment (not an import) in a module."""
    tree = ast.parse(path.read_text())
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, (ast.Assign, ast.AnnAssign))
            and any(isinstance(t, ast.Name) and t.id == "PALETTE"
                    for t in (node.targets if isinstance(node, ast.Assign) else [node.target]))]


def test_only_style_defines_a_palette():
    offenders = {str(p.relative_to(ROOT)): lines for p in sorted((ROOT / "helpers").rglob("*.py"))
                 if p.name != "style.py" and (lines := _palette_assignments(p))}
    assert offenders == {}
    assert _palette_assignments(ROOT / "helpers" / "viz" / "style.py")


def test_no_notebook_defines_its_own_palette_or_style():
    """The notebooks import the palette and call ``use_course_style()`` (after the notebook patch)."""
    offenders = []
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            src = "".join(cell["source"])
            if cell["cell_type"] == "code" and re.search(r"^\s*\w*PALETTE\s*=|plt\.rcParams\.update|"
                                                         r"^\s*METHOD_COLORS\s*=", src, re.M):
                offenders.append(path.name)
    assert offenders == []


def test_tests_import_shared_code_from_testkit_not_conftest():
    """``make test`` collects ``tests`` and ``notebooks`` together, and each has a ``conftest.py``: a test
    that imports from ``conftest`` gets whichever of the two pytest loaded last (it broke nine modules
    once). Shared test code lives in ``tests/testkit.py``."""
    pattern = re.compile(r"^\s*(from conftest import|import conftest)", re.M)
    offenders = sorted(p.name for p in (ROOT / "tests").glob("*.py") if pattern.search(p.read_text()))
    assert offenders == []
