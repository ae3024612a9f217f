"""The documentation: docstring examples run, and the Sphinx site builds with warnings as errors.

Three checks, all in the default run:

- every ``>>>`` example in a docstring of ``probgen`` runs and prints what it shows;
- ``sphinx-build -W -b html`` succeeds with every script in ``examples/`` executed on its
  smoke budget (``PROBGEN_EXAMPLES_SMOKE=1``), so no example, docstring or page can rot
  without failing the suite;
- ``sphinx-build -W -b doctest`` runs the code of the guide pages and checks its output.

The builds run on a copy of ``docs/``, ``examples/`` and ``benchmarks/`` in a temporary folder, so an earlier
build's cached gallery cannot stand in for executing the examples.
"""

from __future__ import annotations

import ast
import doctest
import importlib
import importlib.util
import os
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import probgen

from tests.conftest import SHARED_DATA

ROOT = Path(__file__).resolve().parents[1]
DOCS, EXAMPLES = ROOT / "docs", ROOT / "examples"
# what a build writes into the source folder; never copied, so every build starts clean
_GENERATED = ("_build", "auto_examples", "gen_modules", "sg_execution_times.rst")


def _modules_with_examples() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(probgen.__path__, "probgen."):
        module = importlib.import_module(info.name)
        if any(test.examples for test in doctest.DocTestFinder().find(module)):
            names.append(info.name)
    return sorted(names)


MODULES_WITH_EXAMPLES = _modules_with_examples()


def test_docstrings_have_examples_to_run():
    # the parametrized test below must not pass vacuously because discovery found nothing
    assert {"probgen.infer.likelihood", "probgen.models.vae"} <= set(MODULES_WITH_EXAMPLES)


@pytest.mark.parametrize("name", MODULES_WITH_EXAMPLES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    torch.manual_seed(0)
    for test in doctest.DocTestFinder().find(module):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples in {name} failed (output above)"


def _copy_sources(tmp_path: Path) -> Path:
    ignore = shutil.ignore_patterns(*_GENERATED, "runs", "__pycache__", "*.pyc")
    shutil.copytree(DOCS, tmp_path / "docs", ignore=ignore)
    shutil.copytree(EXAMPLES, tmp_path / "examples", ignore=ignore)
    shutil.copytree(ROOT / "benchmarks", tmp_path / "benchmarks", ignore=ignore)  # read by benchmarks.rst
    return tmp_path / "docs"


def _sphinx(source: Path, out: Path, builder: str, *options: str) -> subprocess.CompletedProcess:
    for module in ("sphinx", "sphinx_gallery", "sphinxarg"):
        if importlib.util.find_spec(module) is None:
            raise AssertionError(f"{module} is missing: install the test extra, pip install -e '.[test]' (it includes the docs tools)")
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", builder, *options, str(source), str(out)]
    return subprocess.run(command, env=_build_env(), cwd=source.parent, capture_output=True, text=True, timeout=600)


def _build_env() -> dict[str, str]:
    env = dict(os.environ, PROBGEN_EXAMPLES_SMOKE="1", OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    env.pop("PROBGEN_DOCS_INTERSPHINX", None)  # the test build is the offline one
    if "PROBGEN_DATA" not in env and (SHARED_DATA / "binarized_mnist.npz").is_file():
        env["PROBGEN_DATA"] = str(SHARED_DATA)  # the examples on binarized MNIST run too
    return env


def _conf_dict(conf: Path, name: str) -> dict[str, str]:
    """A literal dict that ``docs/conf.py`` defines (read, not executed)."""
    for node in ast.parse(conf.read_text()).body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == name:
            return ast.literal_eval(node.value)
    raise AssertionError(f"docs/conf.py defines no {name} dict")


def _not_executed(conf: Path) -> set[str]:
    """Examples the build renders without running: conf.py's NOT_EXECUTED, and those of its
    NEEDS_DATA whose file is missing from the data folder the build sees."""
    root = Path(_build_env()["PROBGEN_DATA"]) if "PROBGEN_DATA" in _build_env() else probgen.datasets.data_root()
    missing = {name for name, file in _conf_dict(conf, "NEEDS_DATA").items() if not (root / file).is_file()}
    return set(_conf_dict(conf, "NOT_EXECUTED")) | missing


def _examples(folder: Path) -> list[str]:
    return sorted(path.stem for path in folder.glob("*.py") if not path.name.startswith("_"))


def test_docs_build_html_with_executed_examples(tmp_path):
    source = _copy_sources(tmp_path)
    built = _sphinx(source, tmp_path / "html", "html")
    assert built.returncode == 0, f"sphinx-build -W failed:\n{built.stdout[-3000:]}\n{built.stderr[-6000:]}"

    html = tmp_path / "html"
    for page in ("index", "installation", "concepts", "composing", "evaluating", "cli", "api", "benchmarks"):
        assert (html / f"{page}.html").is_file(), page
    # the API reference holds the public functions, the CLI page the parser's options
    assert 'id="probgen.infer.fit"' in (html / "api" / "infer.html").read_text()
    assert 'id="probgen.models.VAE"' in (html / "api" / "models.html").read_text()
    assert "--epochs" in (html / "cli.html").read_text()
    # every example was executed (sphinx-gallery records its running time) and its page exists
    not_executed = _not_executed(source / "conf.py")
    examples = _examples(source.parent / "examples")
    assert examples, "examples/ holds no scripts to execute"
    for name in examples:
        page = (html / "auto_examples" / f"{name}.html").read_text()
        if f"{name}.py" not in not_executed:
            assert "Total running time of the script" in page, f"examples/{name}.py was not executed"


def test_docs_guides_code_runs(tmp_path):
    source = _copy_sources(tmp_path)
    built = _sphinx(source, tmp_path / "doctest", "doctest", "-D", "plot_gallery=0")
    report = (tmp_path / "doctest" / "output.txt")
    summary = report.read_text() if report.is_file() else ""
    assert built.returncode == 0, f"the guides' code failed:\n{summary[-6000:]}\n{built.stderr[-3000:]}"
    assert "0 failures in tests" in summary and " tests\n" in summary


def test_every_example_has_the_smoke_switch():
    # the documentation build executes every example with PROBGEN_EXAMPLES_SMOKE=1 and relies
    # on it to keep the build (and this test suite) fast
    scripts = sorted(path for path in EXAMPLES.glob("*.py") if not path.name.startswith("_"))
    assert scripts
    missing = [path.name for path in scripts if 'os.environ.get("PROBGEN_EXAMPLES_SMOKE") == "1"' not in path.read_text()]
    assert not missing, f"examples without the smoke switch (os.environ.get(\"PROBGEN_EXAMPLES_SMOKE\") == \"1\"): {missing}"
