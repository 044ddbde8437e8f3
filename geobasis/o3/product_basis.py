r"""The symmetric product basis: equivariant polynomials of one spherical tensor, by degree.

For a spherical tensor :math:`A` with degrees :math:`0 \dots L_\text{in}` (one channel;
natural parity, :math:`A_l` of parity :math:`(-1)^l`), the order-:math:`\nu` product basis
is the set of equivariant homogeneous polynomials of degree :math:`\nu` in :math:`A`:

.. math::

    B^{(\nu)}_{k, LM} = \sum_{i_1 \le \dots \le i_\nu} U^{(\nu)}_{k, LM, (i_1 \dots i_\nu)}\,
        A_{i_1} \cdots A_{i_\nu}

with :math:`i` running over the :math:`(L_\text{in}+1)^2` components.  The candidates
are the generalised Clebsch–Gordan couplings :math:`((l_1 \otimes l_2)_{l_{12}} \otimes
l_3)_L \dots` with :math:`(-1)^{l_1 + \dots + l_\nu} = (-1)^L`; written on the monomials
(:math:`A_{i_1} \cdots A_{i_\nu}` is symmetric, so only the symmetric part of a coupling
survives) they are linearly dependent, and an SVD per output degree keeps an orthonormal
basis of their span: no redundant paths, the "symmetric contraction" of ACE and MACE.
Each basis element is scaled so that i.i.d. standard normal :math:`A` give outputs of unit
variance.

References: Drautz, "Atomic cluster expansion" (PRB 2019); Batatia et al., "MACE"
(NeurIPS 2022).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
from torch import Tensor

from geobasis.o3.coupling import clebsch_gordan
from geobasis.o3.layout import check_lmax, num_components

__all__ = ["ProductBasis", "symmetric_product_basis"]


@dataclass(frozen=True)
class ProductBasis:
    """The order-``correlation`` basis as sparse tensors (float64 / long, CPU).

    Entry ``e`` says: basis element ``element[e]`` has, in its output component
    ``component[e]`` (the ``LM`` index), the coefficient ``value[e]`` on the monomial
    ``monomials[monomial[e]]``.  Only monomials some element uses are listed.

    Attributes:
        monomials: ``[M, nu]`` component indices ``i_1 <= ... <= i_nu`` of each monomial.
        monomial, element, component, value: ``[nnz]`` the nonzero coefficients.
        degrees: ``[K]`` the output degree ``L`` of each basis element.
    """

    monomials: Tensor
    monomial: Tensor
    element: Tensor
    component: Tensor
    value: Tensor
    degrees: Tensor

    @property
    def num_elements(self) -> int:
        return int(self.degrees.numel())

    def evaluate(self, x: Tensor) -> Tensor:
        """``[N, K, (L_out+1)**2]``: every basis element on ``x [N, (L_in+1)**2]`` (one
        channel; for tests and analysis, the layers use the same entries batched)."""
        monomials = x[:, self.monomials].prod(-1)  # [N, M]
        size = (int(self.degrees.max()) + 1) ** 2 if self.num_elements else 0
        out = x.new_zeros(x.shape[0], self.num_elements, size)
        terms = monomials[:, self.monomial] * self.value.to(x.dtype)
        nodes = torch.arange(x.shape[0], device=x.device)[:, None]
        index = (nodes, self.element[None, :], self.component[None, :])
        return out.index_put_(index, terms, accumulate=True)


def _embedded_cg(l1: int, l2: int, l3: int, dim: int, start2: int) -> np.ndarray:
    """CG ``[2l1+1, dim, 2l3+1]`` with the second index placed in a ``dim``-component
    layout at ``start2``."""
    out = np.zeros((2 * l1 + 1, dim, 2 * l3 + 1))
    block = clebsch_gordan(l1, l2, l3, dtype=torch.float64).numpy()
    out[:, start2 : start2 + 2 * l2 + 1] = block
    return out


def _couplings(lmax_in: int, lmax_out: int, nu: int) -> list[tuple[int, int, np.ndarray]]:
    """``(L, parity sum, tensor [D]*nu + [2L+1])`` of every coupling tree of ``nu`` factors
    whose final degree can still reach ``<= lmax_out``."""
    dim = num_components(lmax_in)
    trees = []
    for l in range(lmax_in + 1):
        t = np.zeros((dim, 2 * l + 1))
        t[l * l : (l + 1) ** 2] = np.eye(2 * l + 1)
        trees.append((l, l, t))
    for step in range(1, nu):
        reach = lmax_out + (nu - 1 - step) * lmax_in  # what later factors can still lower
        grown = []
        for l12, parity, t in trees:
            for l3 in range(lmax_in + 1):
                for l in range(abs(l12 - l3), min(l12 + l3, reach) + 1):
                    cg = _embedded_cg(l12, l3, l, dim, l3 * l3)
                    grown.append((l, parity + l3, np.tensordot(t, cg, axes=([-1], [0]))))
        trees = grown
    return trees


def _on_monomials(tensor: np.ndarray, monomials: list[tuple[int, ...]]) -> np.ndarray:
    """``[M, 2L+1]``: the coefficient of each sorted monomial (sum over its orderings)."""
    out = np.zeros((len(monomials), tensor.shape[-1]))
    for row, index in enumerate(monomials):
        for order in set(itertools.permutations(index)):
            out[row] += tensor[order]
    return out


def _unit_variance(rows: np.ndarray, monomials: np.ndarray, dim: int) -> np.ndarray:
    """Scale each basis element ``rows [K, M, 2L+1]`` to unit output variance for i.i.d.
    standard normal inputs (estimated on a fixed sample)."""
    sample = np.random.default_rng(0).standard_normal((4096, dim))
    values = np.prod(sample[:, monomials], axis=-1)  # [S, M]
    out = np.einsum("sm,kmc->skc", values, rows, optimize=True)
    rms = np.sqrt(np.mean(out**2, axis=(0, 2)))
    return rows / np.maximum(rms, 1e-12)[:, None, None]


@cache
def _basis(lmax_in: int, lmax_out: int, nu: int) -> ProductBasis:
    dim = num_components(lmax_in)
    monomials = list(itertools.combinations_with_replacement(range(dim), nu))
    by_degree: dict[int, list[np.ndarray]] = {}
    for l, parity, tensor in _couplings(lmax_in, lmax_out, nu):
        if l <= lmax_out and (parity + l) % 2 == 0:
            by_degree.setdefault(l, []).append(_on_monomials(tensor, monomials))
    rows, degrees = [], []  # rows: [M, 2L+1] coefficients of each basis element
    for l in sorted(by_degree):
        candidates = np.stack(by_degree[l])  # [K_cand, M, 2L+1]
        _, singular, vt = np.linalg.svd(
            candidates.reshape(len(candidates), -1), full_matrices=False
        )
        rank = int((singular > 1e-9 * singular[0]).sum()) if singular.size else 0
        basis = vt[:rank].reshape(rank, len(monomials), 2 * l + 1)
        rows.extend(_unit_variance(basis, np.array(monomials), dim))
        degrees.extend([l] * rank)
    return _sparse(rows, degrees, monomials, nu)


def _sparse(rows: list[np.ndarray], degrees: list[int], monomials: list, nu: int) -> ProductBasis:
    """The nonzero coefficients of ``rows`` (``[M, 2L+1]`` each), unused monomials dropped."""
    entries = []  # (monomial, element, component, value)
    for k, (row, l) in enumerate(zip(rows, degrees, strict=True)):
        for m, mu in zip(*np.nonzero(np.abs(row) > 1e-12), strict=True):
            entries.append((int(m), k, l * l + int(mu), float(row[m, mu])))
    used = sorted({e[0] for e in entries})
    renumber = {m: i for i, m in enumerate(used)}
    columns = list(zip(*entries, strict=True)) if entries else [[], [], [], []]
    return ProductBasis(
        monomials=torch.tensor([monomials[m] for m in used], dtype=torch.long).reshape(-1, nu),
        monomial=torch.tensor([renumber[m] for m in columns[0]], dtype=torch.long),
        element=torch.tensor(columns[1], dtype=torch.long),
        component=torch.tensor(columns[2], dtype=torch.long),
        value=torch.tensor(columns[3], dtype=torch.float64),
        degrees=torch.tensor(degrees, dtype=torch.long),
    )


def symmetric_product_basis(lmax_in: int, lmax_out: int, correlation: int) -> ProductBasis:
    r"""The order-``correlation`` symmetric product basis of a natural-parity spherical
    tensor of degrees ``0..lmax_in``, output degrees ``0..lmax_out`` (cached).

    Its outputs have natural parity (an output of degree :math:`L` changes sign as
    :math:`(-1)^L` under inversion).  ``correlation = 1`` is the identity on the degrees
    both sides share.
    """
    check_lmax(lmax_in, "lmax_in")
    check_lmax(lmax_out, "lmax_out")
    if correlation < 1:
        raise ValueError(f"correlation must be >= 1, got {correlation}")
    return _basis(lmax_in, lmax_out, correlation)
