r"""Equivariance checks for functions and modules on point clouds and PyG graphs.

:func:`assert_equivariant` applies random group elements :math:`g` to a model's inputs
and checks :math:`f(g \cdot x) = g \cdot f(x)` for every declared output, separately for

* ``"rotation"``: :math:`x \mapsto R x`, :math:`R \in SO(3)`;
* ``"reflection"``: improper :math:`R \in O(3)`, :math:`\det R = -1`;
* ``"translation"``: positions :math:`x \mapsto x + t`;
* ``"permutation"``: node order shuffled inside every graph.

For a batch, every graph gets its own independent element, so a model that leaks
information between graphs is caught too.  Inputs and outputs are transformed by their
*kind*:

==================  ==========================================================
kind                transformation
==================  ==========================================================
``"invariant"``     unchanged (reordered with the nodes / edges it belongs to)
``"position"``      :math:`R x + t`
``"vector"``        :math:`R v` (forces, velocities, dipoles)
``"pseudovector"``  :math:`\det(R)\, R v` (angular momenta, cross products)
``"forces"``        a vector; if the model does not return it, it is computed as
                    :math:`-\partial E / \partial x` by autograd from the energy output
``L`` (int)         spherical-channel tensor ``[..., (L+1)**2, C]``: :math:`D(R)`
``"pseudo:L"``      spherical-channel tensor of pseudotensor parity
``"cell"``          lattice vectors as rows ``[B, 3, 3]``: rows rotate
``"index"``         node indices (``edge_index``): renumbered under permutations
==================  ==========================================================

Each kind may also be given as ``{"kind": ..., "level": "node" | "edge" | "graph"}``;
otherwise the level is read from the leading dimension.  Everything runs in float64 on
a copy of the model.

Reference: the transformation rules are those of e3nn (Geiger & Smidt, "e3nn: Euclidean
Neural Networks", 2022); Wigner matrices from :func:`geobasis.o3.wigner_D`.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from geobasis.o3 import random_orthogonal, random_rotation, wigner_D
from geobasis.o3.layout import degree_slice

__all__ = [
    "assert_equivariant",
    "check_equivariance",
    "EquivarianceReport",
    "EquivarianceError",
    "TRANSFORMATIONS",
]

TRANSFORMATIONS = ("rotation", "reflection", "translation", "permutation")


class EquivarianceError(AssertionError):
    """Raised by :func:`assert_equivariant`; ``.report`` holds the full error table."""

    def __init__(self, message: str, report: EquivarianceReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class EquivarianceReport:
    """Largest error per (transformation, output), absolute and relative to the output scale."""

    errors: dict[tuple[str, str], float] = field(default_factory=dict)
    scales: dict[tuple[str, str], float] = field(default_factory=dict)
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def __getitem__(self, key: tuple[str, str]) -> float:
        return self.errors[key]

    def __str__(self) -> str:
        lines = [
            f"{'transformation':<14} {'output':<20} {'max abs error':>14} {'scale':>10}  status"
        ]
        for (t, o), err in self.errors.items():
            status = "FAIL" if (t, o) in self.failures else "ok"
            lines.append(f"{t:<14} {o:<20} {err:>14.3e} {self.scales[(t, o)]:>10.3e}  {status}")
        return "\n".join(lines)


@dataclass
class _Spec:
    kind: str
    degree: int | None = None  # for spherical kinds
    pseudo: bool = False
    level: str | None = None  # node / edge / graph / None (auto)
    irreps: tuple = ()  # for e3nn irreps strings: ((mul, l, parity), ...)


def _irreps(text: str) -> tuple:
    """``((mul, l, parity), ...)`` of an e3nn irreps string such as ``"16x0e+8x1o"``."""
    terms = []
    for term in text.replace(" ", "").split("+"):
        match = re.fullmatch(r"(?:(\d+)x)?(\d+)([eo])", term)
        if not match:
            return ()
        mul, l, parity = match.groups()
        terms.append((int(mul or 1), int(l), 1 if parity == "e" else -1))
    return tuple(terms)


def _parse_kind(name: str, kind: Any) -> _Spec:
    level = None
    if isinstance(kind, Mapping):
        level = kind.get("level")
        if level not in (None, "node", "edge", "graph"):
            raise ValueError(f"{name}: level must be 'node', 'edge' or 'graph', got {level!r}")
        kind = kind["kind"]
    if isinstance(kind, int) and not isinstance(kind, bool):
        return _Spec("spherical", kind, False, level)
    if isinstance(kind, str):
        if kind.startswith("pseudo:") or kind.startswith("spherical:"):
            degree = int(kind.split(":")[1])
            return _Spec("spherical", degree, kind.startswith("pseudo"), level)
        known = ("invariant", "position", "vector", "pseudovector", "forces", "cell", "index")
        if kind in known:
            return _Spec(kind, None, False, level)
        irreps = _irreps(kind)
        if irreps:
            return _Spec("irreps", None, False, level, irreps)
    raise ValueError(
        f"{name}: unknown kind {kind!r}; use one of 'invariant', 'position', 'vector', "
        "'pseudovector', 'forces', 'cell', 'index', an int L (spherical-channel), 'pseudo:L' "
        "or an e3nn irreps string ('16x0e+8x1o', e3nn's flat layout)"
    )


@dataclass
class _Element:
    """One group element per graph: rotation R [B,3,3], translation t [B,3], permutation."""

    name: str
    R: Tensor
    t: Tensor
    perm: Tensor  # new node k holds old node perm[k]
    inv_perm: Tensor


def _sample(
    name: str, batch: Tensor, num_graphs: int, gen: torch.Generator, dtype: torch.dtype
) -> _Element:
    n = batch.shape[0]
    R = torch.eye(3, dtype=dtype).expand(num_graphs, 3, 3).clone()
    t = torch.zeros(num_graphs, 3, dtype=dtype)
    perm = torch.arange(n)
    if name == "rotation":
        R = random_rotation(num_graphs, dtype=dtype, generator=gen)
    elif name == "reflection":
        R = random_orthogonal(num_graphs, dtype=dtype, generator=gen, improper=True)
    elif name == "translation":
        t = torch.randn(num_graphs, 3, dtype=dtype, generator=gen) * 3.0
    elif name == "permutation":
        keys = batch.to(torch.float64) * 2 + torch.rand(n, dtype=torch.float64, generator=gen)
        perm = torch.argsort(keys)  # shuffles inside each graph, keeps graphs contiguous
    else:
        raise ValueError(f"unknown transformation {name!r}; choose from {TRANSFORMATIONS}")
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(n)
    return _Element(name, R, t, perm, inv)


class _Context:
    """Sizes needed to decide the level of a tensor and to index per-graph elements."""

    def __init__(self, batch: Tensor, num_graphs: int, edge_index: Tensor | None) -> None:
        self.batch = batch
        self.num_nodes = batch.shape[0]
        self.num_graphs = num_graphs
        self.edge_index = edge_index
        self.num_edges = -1 if edge_index is None else edge_index.shape[1]

    def level_of(self, name: str, value: Tensor, spec: _Spec) -> str:
        if spec.level is not None:
            return spec.level
        if spec.kind == "index" and value.dim() == 2 and value.shape[1] == self.num_edges:
            return "edge"  # an edge_index [2, E]
        if spec.kind == "cell":
            return "global" if value.dim() == 2 and self.num_graphs == 1 else "graph"
        lead = value.shape[0] if value.dim() > 0 else None
        if lead == self.num_nodes:
            return "node"
        if lead == self.num_edges:
            return "edge"
        if lead == self.num_graphs:
            return "graph"
        if self.num_graphs == 1:
            return "global"
        if spec.kind == "invariant":
            return "other"  # e.g. PyG's ptr: unchanged by every transformation
        raise ValueError(
            f"cannot tell whether {name!r} (shape {tuple(value.shape)}) is per node, edge or "
            "graph; "
            "declare it as {'kind': ..., 'level': ...}"
        )

    def graph_of(self, level: str) -> Tensor | None:
        """Graph index of every row (in the *transformed* frame's row order)."""
        if level == "node":
            return self.batch
        if level == "edge":
            return self.batch[self.edge_index[1]]
        if level == "graph":
            return torch.arange(self.num_graphs)
        return None  # global (single graph)


def _apply(
    value: Tensor, spec: _Spec, level: str, ctx: _Context, elem: _Element, lmax_cache: dict
) -> Tensor:
    """Transform one tensor by the group element (rows in the original order)."""
    if spec.kind == "invariant":
        return value
    graph = ctx.graph_of(level)
    if graph is None:  # global tensor of a single graph
        R, t = elem.R[0], elem.t[0]
    else:
        R, t = elem.R[graph], elem.t[graph]
    R, t = R.to(value), t.to(value)
    kind = spec.kind
    if kind in ("invariant", "index"):
        out = value
    elif kind == "position":
        out = _rotate(value, R, graph) + (t if graph is None else _expand(t, value))
    elif kind in ("vector", "forces"):
        out = _rotate(value, R, graph)
    elif kind == "pseudovector":
        det = torch.linalg.det(R)
        out = _rotate(value, R, graph) * (
            det if graph is None else _expand(det, value[..., 0])[..., None]
        )
    elif kind == "cell":
        out = (
            torch.einsum("b...j,bij->b...i", value, R)
            if graph is not None
            else value @ R.transpose(-1, -2)
        )
    elif kind == "spherical":
        if value.dim() < 2 or value.shape[-2] != (spec.degree + 1) ** 2:
            raise ValueError(
                f"spherical output of lmax {spec.degree} needs shape "
                f"[..., {(spec.degree + 1) ** 2}, C], "
                f"got {tuple(value.shape)}"
            )
        key = (spec.degree, spec.pseudo, elem.name, id(elem))
        if key not in lmax_cache:
            lmax_cache[key] = wigner_D(spec.degree, elem.R.to(value), pseudo=spec.pseudo)
        D = lmax_cache[key]
        if graph is None:
            out = torch.einsum("ij,...jc->...ic", D[0], value)
        else:
            Dg = D[graph].reshape(graph.shape[0], *([1] * (value.dim() - 3)), *D.shape[-2:])
            out = torch.matmul(Dg, value)
    elif kind == "irreps":
        out = _apply_irreps(value, spec, graph, elem, lmax_cache)
    else:  # pragma: no cover - guarded by _parse_kind
        raise AssertionError(kind)
    return out


def _apply_irreps(value: Tensor, spec: _Spec, graph, elem: _Element, cache: dict) -> Tensor:
    """e3nn flat layout: block-diagonal Wigner matrices, ``mul`` copies per irrep, the
    parity factor ``p (-1)^l`` under reflections."""
    dim = sum(mul * (2 * l + 1) for mul, l, _ in spec.irreps)
    if value.shape[-1] != dim:
        raise ValueError(f"irreps output needs last dimension {dim}, got {tuple(value.shape)}")
    key = ("irreps", spec.irreps, elem.name, id(elem))
    if key not in cache:
        R = elem.R.to(value)
        lmax = max(l for _, l, _ in spec.irreps)
        natural, pseudo = wigner_D(lmax, R), wigner_D(lmax, R, pseudo=True)
        blocks = []
        for mul, l, parity in spec.irreps:
            D = natural if parity == (-1) ** l else pseudo
            block = D[:, degree_slice(l), degree_slice(l)]
            blocks += [block] * mul
        cache[key] = torch.stack([torch.block_diag(*(b[g] for b in blocks))
                                  for g in range(R.shape[0])])  # fmt: skip
    D = cache[key]
    if graph is None:
        return value @ D[0].T
    Dg = D[graph].reshape(graph.shape[0], *([1] * (value.dim() - 2)), dim, dim)
    return torch.matmul(Dg, value.unsqueeze(-1)).squeeze(-1)


def _expand(per_row: Tensor, like: Tensor) -> Tensor:
    return per_row.reshape(
        per_row.shape[0], *([1] * (like.dim() - per_row.dim())), *per_row.shape[1:]
    )


def _rotate(value: Tensor, R: Tensor, graph: Tensor | None) -> Tensor:
    if value.shape[-1] != 3:
        raise ValueError(
            f"a vector-like tensor must have last dimension 3, got {tuple(value.shape)}"
        )
    if graph is None:
        return value @ R.transpose(-1, -2)
    Rg = R.reshape(R.shape[0], *([1] * (value.dim() - 2)), 3, 3)
    return torch.matmul(Rg, value.unsqueeze(-1)).squeeze(-1)


def _permute(value: Tensor, spec: _Spec, level: str, elem: _Element) -> Tensor:
    if spec.kind == "index":
        return elem.inv_perm[value]
    if level == "node":
        return value[elem.perm]
    return value


def _cast(value: Any, dtype: torch.dtype) -> Any:
    if isinstance(value, Tensor) and value.is_floating_point():
        return value.to(dtype)
    return value


def _default_kind(key: str, value: Tensor) -> str:
    if key == "pos":
        return "position"
    if key in ("edge_index", "face", "idx_kj", "idx_ji"):
        return "index" if key == "edge_index" else "invariant"
    if key == "cell":
        return "cell"
    return "invariant"


def _outputs_as_dict(result: Any) -> dict[str, Tensor]:
    if isinstance(result, Tensor):
        return {"output": result}
    if isinstance(result, Mapping):
        return dict(result)
    if hasattr(result, "to_dict"):
        return dict(result.to_dict())
    if isinstance(result, (tuple, list)):
        return {str(i): v for i, v in enumerate(result)}
    raise TypeError(
        f"model output must be a Tensor, dict, Data or tuple, got {type(result).__name__}"
    )


def check_equivariance(
    model: Callable[..., Any],
    data: Any,
    outputs: Mapping[str, Any] | None = None,
    inputs: Mapping[str, Any] | None = None,
    transformations: Iterable[str] = TRANSFORMATIONS,
    trials: int = 2,
    atol: float = 1e-9,
    rtol: float = 1e-8,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    energy_key: str = "energy",
) -> EquivarianceReport:
    """Like :func:`assert_equivariant`, but return the :class:`EquivarianceReport`, never raise."""
    with _modules_in_dtype(model, dtype):
        return _check_equivariance(
            model, data, outputs, inputs, transformations, trials, atol, rtol, seed, dtype,
            energy_key,
        )  # fmt: skip


def _check_equivariance(
    model, data, outputs, inputs, transformations, trials, atol, rtol, seed, dtype, energy_key
) -> EquivarianceReport:
    """The body of :func:`check_equivariance` (same arguments, with the modules of a plain
    function already cast to ``dtype``)."""
    gen = torch.Generator().manual_seed(seed)
    run = _prepare_model(model, dtype)
    fields, call, batch, num_graphs, edge_index = _prepare_data(data, inputs, dtype)
    ctx = _Context(batch, num_graphs, edge_index)
    outputs = dict(outputs or {"output": "invariant"})
    out_specs = {name: _parse_kind(f"output {name!r}", k) for name, k in outputs.items()}
    report = EquivarianceReport()
    base = _evaluate(run, call, fields, out_specs, energy_key)
    for name in transformations:
        for _ in range(trials):
            elem = _sample(name, batch, num_graphs, gen, dtype)
            cache: dict = {}
            moved = {}
            for key, (value, spec) in fields.items():
                if isinstance(value, Tensor):
                    level = ctx.level_of(key, value, spec)
                    value = _permute(
                        _apply(value, spec, level, ctx, elem, cache), spec, level, elem
                    )
                moved[key] = (value, spec)
            got = _evaluate(run, call, moved, out_specs, energy_key)
            for out_name, spec in out_specs.items():
                ref = base[out_name]
                level = ctx.level_of(out_name, ref, spec)
                expected = _permute(_apply(ref, spec, level, ctx, elem, cache), spec, level, elem)
                value = got[out_name]
                if value.shape != expected.shape:
                    raise ValueError(
                        f"output {out_name!r} changed shape under {name}: "
                        f"{tuple(expected.shape)} -> "
                        f"{tuple(value.shape)}"
                    )
                err = float((value - expected).abs().max()) if value.numel() else 0.0
                if not math.isfinite(err):
                    err = math.inf
                scale = float(expected.abs().max()) if expected.numel() else 0.0
                key = (name, out_name)
                report.errors[key] = max(report.errors.get(key, 0.0), err)
                report.scales[key] = max(report.scales.get(key, 0.0), scale)
    for key, err in report.errors.items():
        if not err <= atol + rtol * report.scales[key]:
            report.failures.append(key)
    return report


def assert_equivariant(
    model: Callable[..., Any],
    data: Any,
    outputs: Mapping[str, Any] | None = None,
    inputs: Mapping[str, Any] | None = None,
    transformations: Iterable[str] = TRANSFORMATIONS,
    trials: int = 2,
    atol: float = 1e-9,
    rtol: float = 1e-8,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    energy_key: str = "energy",
) -> EquivarianceReport:
    r"""Check that ``model`` is equivariant on ``data``; raise a readable error if not.

    Args:
        model: a function or ``nn.Module`` (copied, cast to ``dtype`` and put in eval
            mode).  It is called as ``model(data)`` for a PyG ``Data``/``Batch``,
            ``model(tensor)`` for a tensor (positions), ``model(**data)`` for a dict.
        data: the input.  In a ``Data``, ``pos`` is a position, ``edge_index`` node
            indices, ``cell`` a cell and every other field invariant unless declared in
            ``inputs``; a bare tensor is a position.
        outputs: name -> kind of each output to check (see the module docs); a tensor
            output is named ``"output"``.  Default: ``{"output": "invariant"}``.
        inputs: name -> kind for input fields that are not invariant (e.g.
            ``{"vel": "vector", "h": 2}``).
        transformations: any of ``"rotation"``, ``"reflection"``, ``"translation"``,
            ``"permutation"``.
        trials: random elements per transformation.
        atol, rtol: pass if ``max |f(gx) - g f(x)| <= atol + rtol * max |g f(x)|``.
        seed: seed of the random elements.
        energy_key: output used for ``"forces"`` the model does not return.

    Returns:
        the :class:`EquivarianceReport` (errors per transformation and output).

    Raises:
        EquivarianceError: naming every output and transformation that broke, with the
        full table.
    """
    report = check_equivariance(
        model, data, outputs, inputs, transformations, trials, atol, rtol, seed, dtype, energy_key
    )
    if not report.ok:
        broken = ", ".join(f"{o!r} under {t}" for t, o in report.failures)
        raise EquivarianceError(f"not equivariant: {broken}\n{report}", report)
    return report


@contextmanager
def _modules_in_dtype(model: Callable[..., Any], dtype: torch.dtype):
    """A plain function (not a Module) that closes over modules (or a bound method of one)
    runs with those modules in ``dtype``; they are cast back afterwards (float32 -> float64
    -> float32 is exact)."""
    found = [] if isinstance(model, nn.Module) else _closure_modules(model)
    before = [next((p.dtype for p in m.parameters() if p.is_floating_point()), None)
              for m in found]  # fmt: skip
    for module in found:
        module.to(dtype)
    try:
        yield
    finally:
        for module, original in zip(found, before, strict=True):
            if original is not None:
                module.to(original)


def _closure_modules(function: Callable[..., Any]) -> list[nn.Module]:
    owner = getattr(function, "__self__", None)
    cells = []
    for cell in getattr(function, "__closure__", None) or ():
        try:
            cells.append(cell.cell_contents)
        except ValueError:  # an empty cell
            continue
    candidates = ([owner] if owner is not None else []) + cells
    return [m for m in candidates if isinstance(m, nn.Module)]


def _prepare_model(model: Callable[..., Any], dtype: torch.dtype) -> Callable[..., Any]:
    if isinstance(model, nn.Module):
        try:
            model = copy.deepcopy(model)
        except Exception as exc:  # pragma: no cover - exotic modules
            raise TypeError(f"could not copy the model to test it in {dtype}: {exc}") from exc
        return model.to(dtype).eval()
    if not callable(model):
        raise TypeError(f"model must be callable, got {type(model).__name__}")
    return model


def _prepare_data(data: Any, inputs: Mapping[str, Any] | None, dtype: torch.dtype):
    inputs = dict(inputs or {})
    if isinstance(data, Tensor):
        fields = {"pos": (_cast(data, dtype), _parse_kind("input", inputs.get("pos", "position")))}
        call = "tensor"
        n = data.shape[0]
        batch, num_graphs, edge_index = torch.zeros(n, dtype=torch.long), 1, None
    else:
        if isinstance(data, Mapping):
            items, call = dict(data), "kwargs"
        elif hasattr(data, "to_dict") and hasattr(data, "num_nodes"):
            items, call = dict(data.to_dict()), ("pyg", data)
        else:
            raise TypeError(
                "data must be a Tensor, a dict of tensors or a PyG Data/Batch, "
                f"got {type(data).__name__}"
            )
        unknown = set(inputs) - set(items)
        if unknown:
            raise ValueError(f"inputs names fields that data does not have: {sorted(unknown)}")
        fields = {
            k: (_cast(v, dtype), _parse_kind(f"input {k!r}", inputs.get(k, _default_kind(k, v))))
            for k, v in items.items()
        }
        pos = items.get("pos")
        if not isinstance(pos, Tensor):
            raise ValueError("data needs a 'pos' tensor [N, 3]")
        n = pos.shape[0]
        batch = items.get("batch")
        batch = torch.zeros(n, dtype=torch.long) if batch is None else batch.long()
        num_graphs = int(batch.max()) + 1 if n else 1
        edge_index = items.get("edge_index")
    return fields, call, batch, num_graphs, edge_index


def _call(run: Callable[..., Any], call: Any, fields: dict[str, tuple[Any, _Spec]]) -> Any:
    values = {k: v for k, (v, _) in fields.items()}
    if call == "tensor":
        return run(values["pos"])
    if call == "kwargs":
        return run(**values)
    _, original = call
    obj = copy.copy(original)
    for k, v in values.items():
        obj[k] = v
    return run(obj)


def _evaluate(run, call, fields, out_specs, energy_key) -> dict[str, Tensor]:
    need_forces = any(s.kind == "forces" for s in out_specs.values())
    pos, spec = fields["pos"]
    if need_forces:
        pos = pos.detach().requires_grad_(True)
        fields = {**fields, "pos": (pos, spec)}
    with torch.set_grad_enabled(need_forces or torch.is_grad_enabled()):
        result = _outputs_as_dict(_call(run, call, fields))
    out = {}
    for name, s in out_specs.items():
        if name in result:
            out[name] = result[name].detach() if isinstance(result[name], Tensor) else result[name]
        elif s.kind == "forces":
            if energy_key not in result:
                raise KeyError(
                    f"forces {name!r} are not returned by the model and there is no {energy_key!r} "
                    "output to differentiate; return them or set energy_key"
                )
            (grad,) = torch.autograd.grad(result[energy_key].sum(), pos, allow_unused=True)
            out[name] = -grad if grad is not None else torch.zeros_like(pos)
        else:
            raise KeyError(
                f"the model did not return output {name!r} (it returned {sorted(result)})"
            )
    return out
