"""scripts/build_site.py: the static site's home page and its check that every saved figure is shown.

The full build (Sphinx, a few seconds per notebook) runs as `make site` in CI."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("build_site", ROOT / "scripts" / "build_site.py")
build_site = importlib.util.module_from_spec(spec)
spec.loader.exec_module(build_site)


def test_home_page_links_lessons_that_exist_and_lists_them():
    readme = "# Course\n\n| `00_baseline` | a |\n| `01_kv_cache` | b |\n"
    page = build_site.home_page(readme, ["00_baseline"])
    assert "[`00_baseline`](notebooks/00_baseline.ipynb)" in page
    assert "| `01_kv_cache` |" in page  # no page yet: left as text, not a broken link
    assert page.rstrip().endswith("notebooks/00_baseline\n```")


def fake_site(tmp_path: Path, images_on_page: int, image_file: bool = True,
              alt: str = "Figure: the loss") -> Path:
    figure = {"output_type": "display_data", "data": {"image/png": "AAAA", "text/plain": "<Figure>"},
              "metadata": {}}
    nb = {"cells": [{"cell_type": "code", "source": "", "metadata": {}, "outputs": [figure]}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "00_x.ipynb"
    path.write_text(json.dumps(nb))
    out = tmp_path / "site"
    (out / "notebooks").mkdir(parents=True)
    (out / "_images").mkdir()
    if image_file:
        (out / "_images" / "a.png").write_bytes(b"png")
    imgs = f'<img src="../_images/a.png" alt="{alt}">' * images_on_page
    (out / "notebooks" / "00_x.html").write_text(f"<html><body>{imgs}</body></html>")
    return path


def test_figure_check_passes_when_every_figure_is_on_its_page(tmp_path):
    nb = fake_site(tmp_path, images_on_page=1)
    assert build_site.check_figures(tmp_path / "site", [nb]) == []


def test_figure_check_catches_a_missing_figure(tmp_path):
    nb = fake_site(tmp_path, images_on_page=0)
    assert "shows 0 figures, the notebook has 1" in build_site.check_figures(tmp_path / "site", [nb])[0]


def test_figure_check_catches_a_missing_image_file(tmp_path):
    nb = fake_site(tmp_path, images_on_page=1, image_file=False)
    assert "is missing" in build_site.check_figures(tmp_path / "site", [nb])[0]


def test_figure_check_catches_a_figure_without_alt_text(tmp_path):
    nb = fake_site(tmp_path, images_on_page=1, alt="")
    assert "has no alt text" in build_site.check_figures(tmp_path / "site", [nb])[0]


def test_alt_text_comes_from_the_figure_titles_or_its_section():
    figure = {"output_type": "display_data", "data": {"image/png": "AAAA"}, "metadata": {}}
    nb = {"cells": [
        {"cell_type": "markdown", "source": "## 3. Training\n\ntext", "metadata": {}},
        {"cell_type": "code", "source": 'ax.set(title=f"Loss at {steps} steps")\nplt.suptitle("Two runs")',
         "metadata": {}, "outputs": [figure]},
        {"cell_type": "code", "source": "plt.plot(x)", "metadata": {}, "outputs": [figure]},
        {"cell_type": "code", "source": "print(1)", "metadata": {}, "outputs": []},
        {"cell_type": "code", "source": "plt.plot(x)", "outputs": [figure],
         "metadata": {"mystnb": {"image": {"alt": "kept"}}}},
    ]}
    cells = build_site.with_alt_text(nb)["cells"]
    assert cells[1]["metadata"]["mystnb"]["image"]["alt"] == "Figure: Loss at … steps; Two runs"
    assert cells[2]["metadata"]["mystnb"]["image"]["alt"] == "Figure of the section “3. Training”"
    assert "mystnb" not in cells[3]["metadata"]
    assert cells[4]["metadata"]["mystnb"]["image"]["alt"] == "kept"
