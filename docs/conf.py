"""Sphinx configuration of the course's static site (``make site``; see scripts/build_site.py).

The site is built from the committed notebooks with their saved outputs: nothing executes at build
time (``nb_execution_mode = "off"``), so every figure on the site is the one the notebook was saved with.
Sphinx + MyST-NB + the book theme (the Jupyter Book 1 stack) install from PyPI alone and build offline;
Jupyter Book 2 / mystmd fetch their HTML theme from the web at build time, which CI cannot reach.
"""

project = "Rebuilding DeepSeek-V3, one mechanism at a time"
author = "the course authors"
copyright = "the course authors; corpus excerpts © Python Software Foundation (PSF license)"

extensions = ["myst_nb"]
root_doc = "index"
exclude_patterns = ["_build", "**.ipynb_checkpoints"]

# Notebooks are rendered as saved: never executed here.
nb_execution_mode = "off"
nb_merge_streams = True
# Saved notebooks carry no widget state (scripts/run_notebooks.py strips it), so a live widget can never
# render here: show its plain-text fallback instead of an empty box (the static figure follows it).
nb_mime_priority_overrides = [("html", "application/vnd.jupyter.widget-view+json", None)]
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3

# Broken cross-references are errors (scripts/build_site.py runs sphinx-build -W -n); notebook style
# (a heading level skipped) is not a site defect.
nitpicky = True
suppress_warnings = ["myst.header"]

html_theme = "sphinx_book_theme"
html_title = "Rebuilding DeepSeek-V3"
html_theme_options = {"show_toc_level": 2, "home_page_in_toc": True}
html_static_path: list[str] = []
