r"""Positional encodings of graph nodes: Laplacian eigenvectors (with sign handling),
random-walk return probabilities, SignNet and SPE.

Every learned encoder takes the precomputed eigenpairs of
:class:`AddLaplacianEigenpairs` (``eigvecs [N, K]``, ``eigvals [B, K]``,
``eigmask [B, K]``) plus ``edge_index`` and ``batch`` and returns ``[N, out]``:

================  =============================================  ==========================
encoder           output                                         invariant to
================  =============================================  ==========================
``LaplacianPE``   :math:`v_{i,2..k+1}` (signs: none / random /   nothing / - / sign flips
                  canonical)                                     (generic vectors)
``RandomWalkPE``  :math:`[(D^{-1}A)^t]_{ii},\ t = 1..T`          everything (no eigvecs)
``SignNet``       :math:`\rho([\phi(v_j) + \phi(-v_j)]_j)`       sign flips
``SPE``           :math:`\rho\big([V\operatorname{diag}(\phi_l   sign flips *and* bases of
                  (\lambda))V^\top]_{l=1..m}\big)`               repeated eigenspaces;
                                                                 stable
================  =============================================  ==========================

SPE (Huang et al., "On the Stability of Expressive Positional Encodings for Graphs",
ICLR 2024) filters the spectrum with :math:`m` learned elementwise functions
:math:`\phi_l` of the eigenvalues; :math:`V\operatorname{diag}(\phi_l(\lambda))V^\top =
\sum_\lambda \phi_l(\lambda) P_\lambda` depends only on the eigenspace projectors, so it is
basis invariant, and it is Lipschitz in the Laplacian when :math:`\phi_l` is, so a
perturbation of size :math:`\varepsilon` moves it by :math:`O(\varepsilon)` even where the
eigenvectors themselves jump.  :math:`\rho` is a GIN (Xu et al., ICLR 2019) run on every
column :math:`j` of the ``[n, n, m]`` tensor, summed over :math:`j`: permutation
equivariant.  SignNet: Lim et al., "Sign and Basis Invariant Networks for Spectral Graph
Representation Learning", ICLR 2023.  Random walk: Dwivedi et al., "Graph Neural Networks
with Learnable Structural and Positional Representations", ICLR 2022.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.nn.inits import reset
from torch_geometric.transforms import BaseTransform
from torch_geometric.utils import scatter, to_dense_adj, to_dense_batch

from geobasis.pe.eigen import NORMALIZATIONS, laplacian_eigenpairs

__all__ = [
    "AddLaplacianEigenpairs",
    "LaplacianPE",
    "RandomWalkPE",
    "random_walk_pe",
    "SignNet",
    "SPE",
    "SIGN_MODES",
]

SIGN_MODES = ("none", "random", "canonical")


def _graph_batch(data) -> Tensor:
    batch = getattr(data, "batch", None)
    if batch is None:
        return torch.zeros(data.num_nodes, dtype=torch.long, device=data.edge_index.device)
    return batch


class AddLaplacianEigenpairs(BaseTransform):
    """PyG transform: stores ``eigvals [B, k]``, ``eigvecs [N, k]`` and ``eigmask [B, k]``
    (graph-level tensors as ``[1, k]`` per graph, so batching stacks them).

    Args are those of :func:`geobasis.pe.laplacian_eigenpairs`; the values are stored in
    ``dtype`` (float32 by default, computed in float64).
    """

    def __init__(
        self,
        k: int,
        normalization: str | None = "sym",
        whole_eigenspaces: bool = False,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be None or 'sym', got {normalization!r}")
        self.k, self.normalization = k, normalization
        self.whole_eigenspaces, self.dtype = whole_eigenspaces, dtype

    def forward(self, data):
        pairs = laplacian_eigenpairs(
            data.edge_index,
            data.num_nodes,
            _graph_batch(data),
            getattr(data, "edge_weight", None),
            self.normalization,
            self.k,
            whole_eigenspaces=self.whole_eigenspaces,
        )
        data.eigvals = pairs.values.to(self.dtype)
        data.eigvecs = pairs.vectors.to(self.dtype)
        data.eigmask = pairs.mask
        return data

    def __repr__(self) -> str:
        return f"{type(self).__name__}(k={self.k}, normalization={self.normalization!r})"


class LaplacianPE(nn.Module):
    r"""Laplacian eigenvector encoding :math:`[v_2, \dots, v_{k+1}]` (the trivial first pair
    skipped), with a choice of sign handling:

    * ``"none"``: eigenvectors as ``eigh`` returned them (arbitrary signs);
    * ``"random"``: an independent random sign per graph and eigenvector in training mode
      (Dwivedi et al.), none in evaluation;
    * ``"canonical"``: the sign that makes :math:`\sum_i v_i^3 > 0` (permutation invariant;
      left as is where that moment vanishes, e.g. on bipartite symmetric vectors).

    ``forward(eigvecs [N, K], eigvals, eigmask [B, K], edge_index, batch)`` -> ``[N, k]``.
    """

    def __init__(self, k: int, sign: str = "canonical", skip_trivial: bool = True) -> None:
        super().__init__()
        if sign not in SIGN_MODES:
            raise ValueError(f"sign must be one of {SIGN_MODES}, got {sign!r}")
        self.k, self.sign, self.skip_trivial = k, sign, skip_trivial
        self.out_channels = k

    def forward(self, eigvecs, eigvals=None, eigmask=None, edge_index=None, batch=None) -> Tensor:
        first = 1 if self.skip_trivial else 0
        if eigvecs.shape[1] < first + self.k:
            raise ValueError(
                f"LaplacianPE(k={self.k}) needs {first + self.k} eigenpairs, got {eigvecs.shape[1]}"
            )
        v = eigvecs[:, first : first + self.k]
        if batch is None:
            batch = torch.zeros(v.shape[0], dtype=torch.long, device=v.device)
        num_graphs = int(batch.max()) + 1 if batch.numel() else 0
        if self.sign == "random" and self.training:
            flips = torch.randint(0, 2, (num_graphs, self.k), device=v.device) * 2 - 1
            v = v * flips[batch].to(v.dtype)
        elif self.sign == "canonical":
            moment = scatter(v**3, batch, 0, dim_size=num_graphs)
            scale = scatter(v.abs() ** 3, batch, 0, dim_size=num_graphs)
            decided = moment.abs() > 1e-6 * scale.clamp_min(1e-30)
            flips = torch.where(decided & (moment < 0), -1.0, 1.0).to(v.dtype)
            v = v * flips[batch]
        return v


def random_walk_pe(
    edge_index: Tensor,
    num_nodes: int,
    steps: int,
    batch: Tensor | None = None,
    edge_weight: Tensor | None = None,
) -> Tensor:
    r"""Return probabilities :math:`[(D^{-1}A)^t]_{ii}` for :math:`t = 1..` ``steps``:
    ``[N, steps]``, dense per graph and batched (no loop over graphs)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if batch is None:
        batch = torch.zeros(num_nodes, dtype=torch.long, device=edge_index.device)
    num_graphs = int(batch.max()) + 1 if num_nodes else 0
    _, node_mask = to_dense_batch(batch[:, None], batch, batch_size=num_graphs)
    n_max = node_mask.shape[1]
    if edge_index.numel():
        adjacency = to_dense_adj(edge_index, batch, edge_weight, n_max, num_graphs).double()
    else:
        adjacency = torch.zeros(num_graphs, n_max, n_max, dtype=torch.float64, device=batch.device)
    degree = adjacency.sum(-1, keepdim=True)
    walk = adjacency / degree.clamp_min(1e-300)
    power = walk
    out = []
    for _ in range(steps):
        out.append(power.diagonal(dim1=1, dim2=2))
        power = power @ walk
    return torch.stack(out, -1)[node_mask].float()


class RandomWalkPE(BaseTransform):
    """PyG transform: stores :func:`random_walk_pe` as ``data[attr]`` ``[N, steps]``."""

    def __init__(self, steps: int, attr: str = "rw_pe") -> None:
        self.steps, self.attr = steps, attr

    def forward(self, data):
        value = random_walk_pe(
            data.edge_index,
            data.num_nodes,
            self.steps,
            getattr(data, "batch", None),
            getattr(data, "edge_weight", None),
        )
        data[self.attr] = value
        return data

    def __repr__(self) -> str:
        return f"{type(self).__name__}(steps={self.steps})"


def _mlp(sizes: list[int], final_activation: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or final_activation:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class _NodeGIN(nn.Module):
    """GIN layers on node features of any trailing shape ``[N, ..., C]`` (sum over edges)."""

    def __init__(self, channels: int, layers: int) -> None:
        super().__init__()
        self.mlps = nn.ModuleList(_mlp([channels, channels, channels], True) for _ in range(layers))
        self.eps = nn.Parameter(torch.zeros(layers))

    def reset_parameters(self) -> None:
        """Re-initialise the MLPs; the GIN ``eps`` start at zero."""
        for child in self.children():
            reset(child)
        nn.init.zeros_(self.eps)

    def forward(self, h: Tensor, edge_index: Tensor) -> Tensor:
        src, dst = edge_index
        for k, mlp in enumerate(self.mlps):
            neighbours = scatter(h[src], dst, 0, dim_size=h.shape[0], reduce="sum")
            h = mlp((1 + self.eps[k]) * h + neighbours)
        return h


class SignNet(nn.Module):
    r"""Sign-invariant encoder :math:`\rho\big([\phi(v_j, \lambda_j) + \phi(-v_j,
    \lambda_j)]_{j=1..k}\big)` with :math:`\phi` a GIN on the graph (each eigenvector a node
    signal) and :math:`\rho` an MLP on the concatenation (Lim et al., ICLR 2023).

    ``forward(eigvecs [N, K], eigvals [B, K], eigmask [B, K], edge_index, batch)`` ->
    ``[N, out_channels]`` (the first ``k`` pairs are used).
    """

    def __init__(self, k: int, out_channels: int, hidden: int = 16, phi_layers: int = 2) -> None:
        super().__init__()
        self.k, self.out_channels = k, out_channels
        self.lift = nn.Linear(2, hidden)
        self.phi = _NodeGIN(hidden, phi_layers)
        self.rho = _mlp([k * hidden, out_channels, out_channels])

    def reset_parameters(self) -> None:
        """Re-initialise every submodule's parameters (PyG's ``reset``)."""
        for child in self.children():
            reset(child)

    def forward(self, eigvecs, eigvals, eigmask, edge_index, batch=None) -> Tensor:
        if batch is None:
            batch = torch.zeros(eigvecs.shape[0], dtype=torch.long, device=eigvecs.device)
        missing = max(self.k - eigvecs.shape[1], 0)  # fewer stored pairs: pad, masked
        pad = torch.nn.functional.pad
        v = pad(eigvecs, (0, missing))[:, : self.k]
        lam = pad(eigvals, (0, missing))[:, : self.k][batch]
        mask = pad(eigmask, (0, missing))[:, : self.k][batch].to(v.dtype)[..., None]

        def phi(x: Tensor) -> Tensor:
            return self.phi(torch.relu(self.lift(torch.stack([x, lam], -1))), edge_index)

        h = (phi(v) + phi(-v)) * mask  # [N, k, hidden]
        return self.rho(h.flatten(1))


class SPE(nn.Module):
    r"""Stable and expressive positional encoding (Huang et al., ICLR 2024).

    .. math::

        \mathrm{SPE}(V, \lambda) = \rho\big(V\operatorname{diag}(\phi_1(\lambda))V^\top,
        \dots, V\operatorname{diag}(\phi_m(\lambda))V^\top\big)

    Args:
        out_channels: encoding width per node.
        num_filters: :math:`m`, the number of spectral filters :math:`\phi_l`.
        phi_hidden: width of the (shared, elementwise) filter MLP
            :math:`\lambda \mapsto (\phi_1(\lambda), \dots, \phi_m(\lambda))`.
        rho_hidden, rho_layers: width and depth of the GIN :math:`\rho`.

    ``forward(eigvecs [N, K], eigvals [B, K], eigmask [B, K], edge_index, batch)`` ->
    ``[N, out_channels]``.  Memory is :math:`O(B\, n_\text{max}^2\, \text{rho\_hidden})`
    (molecular graphs); masked pairs contribute nothing.
    """

    def __init__(
        self,
        out_channels: int,
        num_filters: int = 8,
        phi_hidden: int = 16,
        rho_hidden: int = 16,
        rho_layers: int = 2,
    ) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.phi = _mlp([1, phi_hidden, phi_hidden, num_filters])
        self.lift = nn.Linear(num_filters, rho_hidden)
        self.rho = nn.ModuleList(
            _mlp([rho_hidden, rho_hidden, rho_hidden], True) for _ in range(rho_layers)
        )
        self.eps = nn.Parameter(torch.zeros(rho_layers))
        self.out = nn.Linear(rho_hidden, out_channels)

    def reset_parameters(self) -> None:
        """Re-initialise the MLPs; the GIN ``eps`` start at zero."""
        for child in self.children():
            reset(child)
        nn.init.zeros_(self.eps)

    def filters(self, eigvals: Tensor, eigmask: Tensor) -> Tensor:
        r"""``[B, K, m]``: :math:`\phi_l(\lambda_k)`, zero for masked pairs."""
        return self.phi(eigvals[..., None]) * eigmask[..., None].to(eigvals.dtype)

    def spectral_tensor(self, eigvecs, eigvals, eigmask, batch) -> tuple[Tensor, Tensor]:
        r"""``([B, n, n, m], node_mask [B, n])``: :math:`V\operatorname{diag}(\phi_l(\lambda))
        V^\top` per graph."""
        V, node_mask = to_dense_batch(eigvecs, batch, batch_size=eigvals.shape[0])
        phi = self.filters(eigvals, eigmask)
        return torch.einsum("bik,bkl,bjk->bijl", V, phi, V), node_mask

    def forward(self, eigvecs, eigvals, eigmask, edge_index, batch=None) -> Tensor:
        if batch is None:
            batch = torch.zeros(eigvecs.shape[0], dtype=torch.long, device=eigvecs.device)
        Z, node_mask = self.spectral_tensor(eigvecs, eigvals, eigmask, batch)
        n = node_mask.shape[1]
        if edge_index.numel():
            adjacency = to_dense_adj(edge_index, batch, None, n, eigvals.shape[0]).to(Z.dtype)
        else:
            adjacency = Z.new_zeros(eigvals.shape[0], n, n)
        columns = node_mask[:, None, :, None].to(Z.dtype)  # only real nodes j
        h = self.lift(Z) * columns
        for k, mlp in enumerate(self.rho):
            neighbours = torch.einsum("bik,bkjc->bijc", adjacency, h)
            h = mlp((1 + self.eps[k]) * h + neighbours) * columns
        pooled = h.sum(2)  # sum over the columns j: permutation equivariant in i
        return self.out(pooled)[node_mask]
