"""sphinx-gallery helpers for probgen's examples.

probgen's figures (:mod:`probgen.diagnostics.plots`) are matplotlib ``Figure`` objects saved
straight to PNG files, without ``pyplot``, so the stock matplotlib scraper never sees them.
:func:`png_files_scraper` puts into the page every PNG file a code block wrote: files named
by the example's variables (a ``Path``/``str`` to a ``.png`` or to a folder holding some) and
files under the example's working folder, whichever were modified since the example started.
An example that imports ``matplotlib.pyplot`` shows its figures itself (the stock scraper
takes them), often drawn from these very files, so this scraper leaves it alone.
:func:`reset_probgen` records that start time, gives every example a fresh Pyro state, and
turns ``sys.exit`` inside an example into an error: a ``SystemExit`` would end the whole
Sphinx process with status 0 and an unfinished site.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

__all__ = ["png_files_scraper", "reset_probgen"]

_state = {"start": 0.0, "seen": set()}


class ExampleExited(RuntimeError):
    """An example called ``sys.exit`` during the documentation build."""


def _refuse_exit(code=None):
    raise ExampleExited(
        f"the example called sys.exit({code!r}); in the documentation build an example must run to "
        "its end (the SystemExit would stop the whole build with status 0, as if it had succeeded)"
    )


def reset_probgen(gallery_conf, fname, when):
    """Before each example: note the time, clear Pyro's parameter store, seed torch, and make
    ``sys.exit`` an error; after it, give ``sys.exit`` back."""
    if when == "after" or fname is None:
        sys.exit = _state.pop("exit", sys.exit)
        return
    import pyro
    import torch

    _state["start"] = time.time()
    _state["seen"] = set()
    _state.setdefault("exit", sys.exit)
    sys.exit = _refuse_exit
    pyro.clear_param_store()
    torch.manual_seed(0)


def _pngs_under(folder: Path, depth: int = 3):
    if depth < 0 or not folder.is_dir():
        return
    for entry in folder.iterdir():
        if entry.is_dir() and not entry.name.startswith((".", "_")):
            yield from _pngs_under(entry, depth - 1)
        elif entry.suffix.lower() == ".png":
            yield entry


def _candidates(example_globals):
    paths = set(_pngs_under(Path.cwd()))
    for value in list(example_globals.values()):
        if isinstance(value, (str, os.PathLike)) and len(str(value)) < 4096:
            path = Path(value)
            try:
                if path.suffix.lower() == ".png" and path.is_file():
                    paths.add(path)
                elif path.is_absolute() and path.is_dir() and path != Path(path.anchor):
                    paths.update(_pngs_under(path, depth=2))
            except OSError:
                continue
    return paths


def _draws_with_pyplot(src_file) -> bool:
    return "matplotlib.pyplot" in Path(src_file).read_text()


def png_files_scraper(block, block_vars, gallery_conf, **kwargs):
    """Copy the PNG files this block wrote into the gallery and return their reST."""
    from sphinx_gallery.scrapers import figure_rst

    fresh = []
    for path in _candidates(block_vars["example_globals"]):
        resolved = path.resolve()
        if resolved in _state["seen"] or resolved.stat().st_mtime < _state["start"]:
            continue
        _state["seen"].add(resolved)
        fresh.append(resolved)
    fresh.sort(key=lambda p: (p.stat().st_mtime, str(p)))
    if _draws_with_pyplot(block_vars["src_file"]):
        # the example shows its figures itself (often these very files): show only those
        return ""
    images = []
    for path, target in zip(fresh, block_vars["image_path_iterator"]):
        shutil.copyfile(path, target)
        images.append(target)
    return figure_rst(images, gallery_conf["src_dir"])
