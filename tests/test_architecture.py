"""The structure docs/architecture.md promises: layering, private modules, short functions."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "geobasis"

# lower number = lower layer; a module imports only from its own layer or below
LAYERS = {
    "_tracing": 0, "_chunked": 0, "_workspace": 0, "_native": 0, "typing": 0, "serialization": 0,
    "o3": 1, "radial": 2, "graph": 2,
    "products": 3, "frames": 3, "pe": 3,
    "nn": 4, "data": 5, "train": 6, "calculators": 6, "testing": 7, "cli": 8,
}  # fmt: skip
# root helpers every subpackage may use
SHARED_PRIVATE = {"_tracing", "_chunked", "_workspace", "_native"}
MAX_FUNCTION_LINES = 80
FLAT_TABLES: set[str] = set()  # functions allowed to be longer: flat tables only


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        yield path, parts


def _imports(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def _geobasis_imports():
    for path, parts in _modules():
        for name in _imports(path):
            if name.startswith("geobasis.") or name == "geobasis":
                yield path, parts, name.split(".")[1:]


def test_no_import_runs_upward():
    upward = []
    for path, parts, target in _geobasis_imports():
        if not target or parts[0] == "__init__":
            continue
        if LAYERS[target[0]] > LAYERS[parts[0]]:
            upward.append(f"{path.relative_to(PACKAGE)} imports geobasis.{'.'.join(target)}")
    assert not upward, upward


def test_no_private_module_of_another_subpackage_is_imported():
    private = []
    for path, parts, target in _geobasis_imports():
        for depth, name in enumerate(target):
            owner = target[:depth]
            shared = depth == 0 and name in SHARED_PRIVATE
            if name.startswith("_") and not shared and tuple(owner) != parts[: len(owner)]:
                private.append(f"{path.relative_to(PACKAGE)} imports geobasis.{'.'.join(target)}")
    assert not private, private


def test_functions_are_short():
    long = []
    for path, parts in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                name = f"{'.'.join(parts)}:{node.name}"
                if lines > MAX_FUNCTION_LINES and name not in FLAT_TABLES:
                    long.append(f"{name} ({lines} lines)")
    assert not long, long


@pytest.mark.parametrize("module", ["geobasis.o3.layout", "geobasis.products.registry"])
def test_the_map_names_the_public_homes(module):
    text = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    assert module.split(".")[-1] + ".py" in text


# modules that own no parameters (constant tables only): nothing to reset
PARAMETER_FREE = {
    "SphericalHarmonics", "S2Grid", "LaplacianPE", "SphericalBesselBasis",
    "_IntervalBasis", "ChebyshevBasis", "FourierBasis", "BSplineBasis", "PolynomialEnvelope",
    "CosineCutoff",
}  # fmt: skip


def test_every_module_with_parameters_can_reset_them():
    """PyG's layer contract: ``reset_parameters()`` on everything that learns."""
    import importlib
    import inspect
    import pkgutil

    import torch

    import geobasis

    missing = []
    for info in pkgutil.walk_packages(geobasis.__path__, "geobasis."):
        if info.name.endswith("pytest_plugin"):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (
                inspect.isclass(obj)
                and issubclass(obj, torch.nn.Module)
                and obj.__module__ == module.__name__
                and not hasattr(obj, "reset_parameters")
                and name not in PARAMETER_FREE
            ):
                missing.append(f"{info.name}.{name}")
    assert not missing, missing
