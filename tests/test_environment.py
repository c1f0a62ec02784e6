"""environment.yml (conda) and pyproject.toml (pip) must name the same dependencies and bounds."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONDA_NAMES = {"pytorch": "torch"}  # conda-forge name → PyPI name


def _parse(spec: str) -> tuple[str, str]:
    m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", spec)
    return m.group(1).lower(), m.group(2).replace(" ", "")


def _toml_list(text: str, key: str) -> list[str]:
    """The strings of one ``key = [ ... ]`` array (tomllib is not in Python 3.10)."""
    body = re.search(rf"^{key} = \[(.*?)^\]", text, re.S | re.M).group(1)
    return re.findall(r'"([^"]+)"', body)


def pyproject_text() -> str:
    return (ROOT / "pyproject.toml").read_text()


def pyproject_deps() -> dict[str, str]:
    text = pyproject_text()
    specs = _toml_list(text, "dependencies") + _toml_list(text, "dev")
    return dict(_parse(s) for s in specs)


def conda_deps() -> dict[str, str]:
    deps, in_deps = {}, False
    for line in (ROOT / "environment.yml").read_text().splitlines():
        if line.startswith("dependencies:"):
            in_deps = True
            continue
        m = re.match(r"^  - ([^\s#].*)$", line)
        if in_deps and m and not m.group(1).startswith("pip"):
            name, bound = _parse(m.group(1))
            deps[CONDA_NAMES.get(name, name)] = bound
    return deps


def test_same_dependencies_and_bounds():
    conda = conda_deps()
    python_bound = conda.pop("python")
    assert conda == pyproject_deps()
    requires = re.search(r'^requires-python = "([^"]+)"', pyproject_text(), re.M).group(1)
    assert python_bound == requires.replace(" ", "")


TESTED_RANGE = {"torch"}  # bounded above: the releases CI runs (README, "Supported versions")


def test_no_upper_pins_on_libraries_but_torchs_tested_range():
    for name, bound in pyproject_deps().items():
        if name not in TESTED_RANGE:
            assert "<" not in bound and "==" not in bound, f"{name}{bound} pins an upper bound"
    assert re.fullmatch(r">=[\d.]+,<[\d.]+", pyproject_deps()["torch"])


def _release(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("+")[0].split(".")[:3])


def test_the_sweeps_torch_lies_in_the_supported_range_and_the_readme_names_it():
    """CI runs the suite on the newest torch the range admits and on the sweeps' build: that build must be
    one the project admits, and the README's "Supported versions" must state the range pyproject sets."""
    import json

    low, high = re.fullmatch(r">=([\d.]+),<([\d.]+)", pyproject_deps()["torch"]).groups()
    for path in sorted((ROOT / "results" / "sweeps").glob("*.json")):
        built = json.loads(path.read_text())["meta"]["torch"]
        assert _release(low) <= _release(built) < _release(high), f"{path.name}: torch {built}"
    readme = (ROOT / "README.md").read_text()
    assert f"`torch>={low},<{high}`" in readme


def test_the_readme_layout_names_every_helpers_module():
    """README's Layout is where a newcomer looks for "where is X?": every module and subpackage of
    helpers/ appears there by file name, so it cannot go stale again."""
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout"):readme.index("## Other commands")]
    helpers = ROOT / "helpers"
    names = [p.name for p in helpers.glob("*.py") if p.name != "__init__.py"]
    names += [p.name + "/" for p in helpers.iterdir() if p.is_dir() and (p / "__init__.py").exists()]
    missing = sorted(n for n in names if f"`{n}`" not in layout and f"`{n.rstrip('/')}/`" not in layout)
    assert missing == [], f"README's Layout does not name {missing}"
