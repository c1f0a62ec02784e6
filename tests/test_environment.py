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


def test_no_upper_pins_on_libraries():
    for name, bound in pyproject_deps().items():
        assert "<" not in bound and "==" not in bound, f"{name}{bound} pins an upper bound"
