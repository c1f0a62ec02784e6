"""Sphinx configuration of the course's static site (``make site``; see scripts/build_site.py).

The site is built from the committed notebooks with their saved outputs: nothing executes at build
time (``nb_execution_mode = "off"``), so every figure on the site is the one the notebook was saved with.
Sphinx + MyST-NB + the book theme (the Jupyter Book 1 stack) install from PyPI alone and build offline;
Jupyter Book 2 / mystmd fetch their HTML theme from the web at build time, which CI cannot reach.

Launch buttons: with ``COURSE_REPOSITORY_URL`` set (``https://github.com/<owner>/<repo>``, where the
course is published), every lesson page carries "open in Colab" and "launch Binder" buttons (Binder builds
``environment.yml``). Without it the pages have none: a button must never point at a guessed address.
"""

import os

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
REPOSITORY_URL = os.environ.get("COURSE_REPOSITORY_URL", "").rstrip("/")
if REPOSITORY_URL:
    html_theme_options.update({
        "repository_url": REPOSITORY_URL, "repository_branch": os.environ.get("COURSE_BRANCH", "main"),
        "path_to_docs": "", "use_repository_button": True,
        "launch_buttons": {"colab_url": "https://colab.research.google.com",
                           "binderhub_url": "https://mybinder.org", "notebook_interface": "jupyterlab"},
    })
html_static_path: list[str] = []
