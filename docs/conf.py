"""Sphinx configuration for probgen's documentation.

Build it (from the repository root) with::

    pip install -e ".[docs]"
    PROBGEN_EXAMPLES_SMOKE=1 sphinx-build -W -b html docs docs/_build/html   # examples on a tiny budget
    sphinx-build -W -b html docs docs/_build/html                            # examples at their own budget

The build works offline: intersphinx links to Python, PyTorch, Pyro and ArviZ only where
their inventories are present as local files (``docs/_inventories/<name>.inv``), or online
when ``PROBGEN_DOCS_INTERSPHINX=online`` is set.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # examples run headless, inside the Sphinx process

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(DOCS / "_ext"))

import probgen  # noqa: E402

project = "probgen"
author = "the probgen developers"
copyright = "2026, the probgen developers"
version = release = probgen.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "sphinx.ext.mathjax",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "sphinxarg.ext",
    "sphinx_gallery.gen_gallery",
    "benchmark_tables",
]

# command lines in docstrings keep their "--flags" as typed
smartquotes = False
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]
templates_path: list[str] = []
html_theme = "alabaster"
html_static_path: list[str] = []
html_theme_options = {"description": "Deep generative models as Pyro programs", "fixed_sidebar": True}

# -- autodoc ----------------------------------------------------------------------------------
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_class_signature = "mixed"
# an undocumented forward() would otherwise show torch.nn.Module.forward's docstring
autodoc_inherit_docstrings = False

# -- doctest: the code of the guides runs with ``sphinx-build -b doctest`` -------------------
# Docstring examples are run by the test suite (tests/test_docs.py) with the doctest module;
# here only the explicit testcode/doctest blocks of the pages run.
doctest_test_doctest_blocks = ""

# -- intersphinx: local inventories only, so the offline build cannot break ------------------
_INVENTORIES = {
    "python": "https://docs.python.org/3",
    "torch": "https://docs.pytorch.org/docs/stable",
    "pyro": "https://docs.pyro.ai/en/stable",
    "arviz": "https://python.arviz.org/en/stable",
    "numpy": "https://numpy.org/doc/stable",
}
_online = os.environ.get("PROBGEN_DOCS_INTERSPHINX") == "online"
intersphinx_mapping = {}
for _name, _url in _INVENTORIES.items():
    _local = DOCS / "_inventories" / f"{_name}.inv"
    if _local.is_file():
        intersphinx_mapping[_name] = (_url, str(_local))
    elif _online:
        intersphinx_mapping[_name] = (_url, None)
intersphinx_timeout = 5

# -- sphinx-gallery: every script in examples/ is executed at build time ----------------------
# The examples read PROBGEN_EXAMPLES_SMOKE=1 and then train for a few seconds only; the test
# suite (tests/test_docs.py) builds the docs that way, with warnings as errors.

# Examples not executed at build time (rendered, but without output), each with the reason.
NOT_EXECUTED: dict[str, str] = {}
# Examples that read a dataset the package does not ship: executed where the file is found
# (in pg.datasets.data_root(), i.e. $PROBGEN_DATA), rendered without output elsewhere.
NEEDS_DATA: dict[str, str] = {
    "vae_binarized_mnist.py": "binarized_mnist.npz",
    "vae_flow_prior.py": "binarized_mnist.npz",
}
for _example, _file in NEEDS_DATA.items():
    if not (probgen.datasets.data_root() / _file).is_file():
        NOT_EXECUTED[_example] = f"{_file} is not in {probgen.datasets.data_root()}"


def _not_executed_pattern() -> str:
    if not NOT_EXECUTED:
        return r".*\.py$"
    names = "|".join(re.escape(name) for name in NOT_EXECUTED)
    return rf"^(?!.*[\\/](?:{names})$).*\.py$"


sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": _not_executed_pattern(),
    "ignore_pattern": r"(^|[\\/])_",  # helper modules of the examples
    "within_subsection_order": "FileNameSortKey",
    # names, not functions, so that Sphinx can pickle its configuration
    "image_scrapers": ("gallery_support.png_files_scraper", "matplotlib"),
    "reset_modules": ("matplotlib", "gallery_support.reset_probgen"),
    "remove_config_comments": True,
    "abort_on_example_error": True,
    "show_memory": False,
    "download_all_examples": False,
    "plot_gallery": "True",
    "reset_modules_order": "both",
    # 0 (the default): every executed example reports its running time, which is how
    # tests/test_docs.py tells an executed example from one that was only rendered
    "min_reported_time": 0,
}
