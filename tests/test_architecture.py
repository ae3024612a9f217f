"""The layering of docs/architecture.rst, checked on the source: no module imports a layer
above its own, and no private name crosses from one subpackage into another."""

from __future__ import annotations

import ast
from pathlib import Path

import probgen

PACKAGE = Path(probgen.__file__).parent

# lower numbers are lower layers; a module may import its own layer and those below
LAYERS = {
    "checks": 0,
    "datasets": 1, "nn": 1, "distributions": 1, "flows": 1,
    "models": 2,
    "infer": 3,
    "diagnostics": 4, "metrics": 4,
    "cli": 5,
}


def _subpackage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "probgen" else None


def _imports(path: Path, root: Path):
    """``(module, imported module, imported names)`` for every import in ``path``."""
    module = "probgen." + ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield module, target, [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield module, alias.name, []


def _violations(root: Path = PACKAGE):
    upward, private = [], []
    for path in sorted(root.rglob("*.py")):
        for module, target, names in _imports(path, root):
            source, imported = _subpackage(module), _subpackage(target)
            if source is None or imported is None or source == imported:
                continue
            if LAYERS[imported] > LAYERS[source]:
                upward.append(f"{module} imports {target}")
            private += [f"{module} imports {target}.{name}" for name in names if name.startswith("_")]
            if target.rsplit(".", 1)[-1].startswith("_") and not target.endswith("__init__"):
                private.append(f"{module} imports the private module {target}")
    return upward, private


def test_every_subpackage_has_a_layer():
    subpackages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    modules = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert subpackages | modules == set(LAYERS)


def test_no_module_imports_a_layer_above_its_own():
    upward, _ = _violations()
    assert upward == []


def test_no_private_name_crosses_a_subpackage():
    _, private = _violations()
    assert private == []


def test_the_checker_sees_a_violation(tmp_path):
    """The tests above would fail on an upward or private import: the checker finds both in a probe."""
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "probe.py").write_text("from ..infer import fit\nfrom ..nn.shapes import _hidden\n")
    upward, private = _violations(tmp_path)
    assert upward == ["probgen.models.probe imports probgen.infer"]
    assert private == ["probgen.models.probe imports probgen.nn.shapes._hidden"]
