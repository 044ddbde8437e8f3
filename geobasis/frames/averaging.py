r"""Frame averaging: make any model of positions exactly E(3)- (or E(2)-) invariant or
equivariant, without changing its architecture.

For a model :math:`\Phi` and the frame set :math:`\mathcal F(X)` of
:func:`geobasis.frames.pca_frames` (centre :math:`c`, frames :math:`R`),

.. math::

    \langle \Phi \rangle_{\mathcal F}(X) = \frac{1}{|\mathcal F(X)|}
    \sum_{R \in \mathcal F(X)} \rho_\text{out}(R)\,
    \Phi\big(R^\top (X - c)\big),

with :math:`\rho_\text{out}(R) = 1` for invariant outputs (energies), :math:`R` for
vectors, :math:`\det(R)R` for pseudovectors and :math:`R\,\cdot + c` for positions.
Because :math:`\mathcal F(QX + t) = Q\mathcal F(X)`, the average is exactly invariant /
equivariant (Puny et al., ICLR 2022).  Forces are :math:`-\partial \langle E
\rangle / \partial X` by autograd *through* the average (frames included), hence
conservative.  ``mode="stochastic"`` evaluates one frame per graph drawn uniformly from
its set (FAENet, Duval et al., ICML 2023): equivariant in expectation, one model
evaluation per graph instead of :math:`|\mathcal F|` (8 for O(3)).

The wrapped model receives a PyG ``Batch`` with one graph per (graph, frame): canonical
``pos``, node / edge / graph attributes copied (``edge_index`` renumbered), ``batch`` and
``ptr``.  It returns a tensor or a dict of tensors, graph-level ``[T, ...]`` or
node-level ``[M, ...]`` (vectors: last dimension ``d``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.data import Batch
from torch_geometric.nn.inits import reset
from torch_geometric.utils import scatter

from geobasis.frames.pca import GROUPS, Frames, expand_groups, pca_frames

__all__ = ["FrameAveraging", "OUTPUT_KINDS"]

OUTPUT_KINDS = ("invariant", "vector", "pseudovector", "position", "forces")
_SPECIAL = ("pos", "batch", "ptr", "edge_index")


class FrameAveraging(nn.Module):
    r"""Wrap ``module`` so that its outputs are averaged over PCA frames.

    Args:
        module: any model called as ``module(batch)`` on positions ``batch.pos``.
        group: ``"O3"``, ``"SO3"``, ``"O2"``, ``"SO2"`` (see :func:`pca_frames`).
        mode: ``"full"`` (exact average over every frame) or ``"stochastic"`` (one
            uniformly drawn frame per graph and call).
        outputs: output name -> kind, one of :data:`OUTPUT_KINDS`, optionally as
            ``{"kind": ..., "level": "graph" | "node"}``.  A tensor-valued module has one
            output, named ``"output"``.  ``"forces"`` is computed as
            :math:`-\partial E/\partial x` from the (averaged) ``energy_key`` output.
        energy_key: the output differentiated for ``"forces"``.
        weights_key: optional node attribute (e.g. ``"mass"``) weighting centre and
            covariance.
        tol, extent_tol: degeneracy tolerances of :func:`pca_frames`.
        generator: random generator of the stochastic mode.

    ``forward(data)`` returns a dict with one entry per output (graph-level ``[B, ...]``,
    node-level ``[N, ...]``), or a tensor when ``module`` returns a tensor.
    """

    def __init__(
        self,
        module: nn.Module,
        group: str = "O3",
        mode: str = "full",
        outputs: Mapping[str, Any] | None = None,
        energy_key: str = "energy",
        weights_key: str | None = None,
        tol: float | None = None,
        extent_tol: float | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if group not in GROUPS:
            raise ValueError(f"group must be one of {list(GROUPS)}, got {group!r}")
        if mode not in ("full", "stochastic"):
            raise ValueError(f"mode must be 'full' or 'stochastic', got {mode!r}")
        self.module = module
        self.group = group
        self.mode = mode
        self.outputs = {name: _parse(name, kind) for name, kind in (outputs or {}).items()}
        forces = [name for name, (kind, _) in self.outputs.items() if kind == "forces"]
        if forces and energy_key not in self.outputs:
            raise ValueError(
                f"output {forces[0]!r} is 'forces' (-dE/dx): declare the energy output "
                f"{energy_key!r} as 'invariant' too"
            )
        self.energy_key = energy_key
        self.weights_key = weights_key
        self.tol, self.extent_tol = tol, extent_tol
        self.generator = generator

    def frames(self, data, pos: Tensor | None = None) -> Frames:
        """The frame sets of ``data`` (all of them, whatever the mode)."""
        weights = getattr(data, self.weights_key) if self.weights_key else None
        return pca_frames(
            data.pos if pos is None else pos,
            getattr(data, "batch", None),
            self.group,
            weights=weights,
            num_graphs=_num_graphs(data),
            tol=self.tol,
            extent_tol=self.extent_tol,
        )

    def reset_parameters(self) -> None:
        """Re-initialise every submodule's parameters (PyG's ``reset``)."""
        for child in self.children():
            reset(child)

    def forward(self, data) -> dict[str, Tensor] | Tensor:
        if getattr(data, "pos", None) is None:
            raise ValueError("frame averaging needs `pos` [N, d] in the input data")
        if getattr(data, "cell", None) is not None:
            raise ValueError(
                "frame averaging of periodic systems is not supported: a rotated cell is a "
                "different lattice; remove `cell` or use an equivariant model"
            )
        wants_forces = any(kind == "forces" for kind, _ in self.outputs.values())
        pos = data.pos
        if wants_forces and not pos.requires_grad:
            pos = pos.detach().requires_grad_()
        frames = self.frames(data, pos)
        if self.mode == "stochastic":
            frames = frames.sample(self.generator)
        expanded, node, frame = _expand(data, pos, frames)
        result = self.module(expanded)
        tensor_output = isinstance(result, Tensor)
        produced = {"output": result} if tensor_output else dict(result)
        specs = self.outputs or {name: ("invariant", None) for name in produced}
        out: dict[str, Tensor] = {}
        for name, (kind, level) in specs.items():
            if kind == "forces":
                continue
            if name not in produced:
                raise KeyError(f"the wrapped module returned {sorted(produced)}, not {name!r}")
            out[name] = _average(produced[name], kind, level, frames, node, frame, pos.shape[0])
        for name, (kind, _) in specs.items():
            if kind == "forces":
                energy = out[self.energy_key]
                (grad,) = torch.autograd.grad(
                    energy.sum(), pos, create_graph=self.training, allow_unused=True
                )
                out[name] = -(torch.zeros_like(pos) if grad is None else grad)
        if tensor_output and list(out) == ["output"]:
            return out["output"]
        return out

    def extra_repr(self) -> str:
        return f"group={self.group!r}, mode={self.mode!r}"


def _parse(name: str, kind: Any) -> tuple[str, str | None]:
    level = None
    if isinstance(kind, Mapping):
        level = kind.get("level")
        kind = kind.get("kind")
    if kind not in OUTPUT_KINDS:
        raise ValueError(f"output {name!r}: kind must be one of {OUTPUT_KINDS}, got {kind!r}")
    if level not in (None, "graph", "node"):
        raise ValueError(f"output {name!r}: level must be 'graph' or 'node', got {level!r}")
    return kind, level


def _num_graphs(data) -> int:
    num = getattr(data, "num_graphs", None)
    if isinstance(num, int):
        return num
    batch = getattr(data, "batch", None)
    return int(batch.max()) + 1 if batch is not None and batch.numel() else 1


def _expand(data, pos: Tensor, frames: Frames) -> tuple[Batch, Tensor, Tensor]:
    """One graph per (graph, frame): canonical positions, attributes copied."""
    batch = getattr(data, "batch", None)
    if batch is None:
        batch = torch.zeros(pos.shape[0], dtype=torch.long, device=pos.device)
    num_graphs = frames.num_graphs
    node, frame = frames.replicas(batch)
    canonical = frames.canonical_positions(pos, node, frame)
    sizes = torch.bincount(batch, minlength=num_graphs)
    copies = sizes[frames.graph]  # nodes in each frame's copy
    fields: dict[str, Any] = {
        "pos": canonical,
        "batch": torch.repeat_interleave(torch.arange(len(frames), device=pos.device), copies),
        "ptr": torch.cat([copies.new_zeros(1), torch.cumsum(copies, 0)]),
    }
    edge_index = getattr(data, "edge_index", None)
    edge, edge_frame = None, None
    if edge_index is not None:
        # rank of every node inside its graph, to renumber edges in each copy
        order = torch.argsort(batch, stable=True)
        start = torch.cumsum(sizes, 0) - sizes
        rank = torch.empty_like(batch)
        rank[order] = torch.arange(batch.shape[0], device=batch.device) - start[batch[order]]
        edge, edge_frame = expand_groups(batch[edge_index[0]], frames.graph, num_graphs)
        first_replica = fields["ptr"][:-1]
        fields["edge_index"] = first_replica[edge_frame] + rank[edge_index[:, edge]]
    for key in data.keys():
        if key in _SPECIAL:
            continue
        value = data[key]
        if not isinstance(value, Tensor) or value.ndim == 0:
            fields[key] = value
        elif data.is_node_attr(key):
            fields[key] = value[node]
        elif edge is not None and data.is_edge_attr(key):
            fields[key] = value[edge]
        elif value.shape[0] == num_graphs:
            fields[key] = value[frames.graph]
        else:
            fields[key] = value
    return Batch(**fields), node, frame


def _average(value: Tensor, kind: str, level, frames: Frames, node, frame, num_nodes) -> Tensor:
    """Map one output of every frame back to the input frame and average."""
    num_frames, num_replicas = len(frames), node.shape[0]
    if level is None:
        if value.shape[0] == num_frames and num_frames != num_replicas:
            level = "graph"
        elif value.shape[0] == num_replicas and num_frames != num_replicas:
            level = "node"
        else:
            raise ValueError(
                f"cannot tell whether an output with leading dimension {value.shape[0]} is per "
                f"graph ({num_frames} frame copies) or per node ({num_replicas} node copies): "
                "give its level as {'kind': ..., 'level': 'graph' | 'node'}"
            )
    per_frame = torch.arange(num_frames, device=value.device) if level == "graph" else frame
    if kind != "invariant":
        d = frames.rotations.shape[-1]
        if value.shape[-1] != d:
            raise ValueError(
                f"a {kind} output must end in {d} components, got {tuple(value.shape)}"
            )
        rotation = frames.rotations[per_frame]
        rotation = rotation.reshape(rotation.shape[0], *([1] * (value.ndim - 2)), d, d)
        value = (rotation @ value.unsqueeze(-1)).squeeze(-1)
        if kind == "pseudovector":
            det = torch.linalg.det(frames.rotations[per_frame])
            value = value * det.reshape(-1, *([1] * (value.ndim - 1)))
        if kind == "position":
            center = frames.center[frames.graph[per_frame]]
            value = value + center.reshape(center.shape[0], *([1] * (value.ndim - 2)), d)
    weight = frames.weight[per_frame].reshape(-1, *([1] * (value.ndim - 1))).to(value.dtype)
    if level == "graph":
        return scatter(weight * value, frames.graph, 0, dim_size=frames.num_graphs, reduce="sum")
    return scatter(weight * value, node, 0, dim_size=num_nodes, reduce="sum")
