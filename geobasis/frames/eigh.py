r"""Symmetric eigendecomposition whose derivatives stay finite on repeated eigenvalues.

For :math:`A = V \Lambda V^\top` the first-order perturbation theory gives

.. math::

    d\lambda_i = v_i^\top\, dA\, v_i, \qquad
    dV = V \big( F \circ (V^\top dA\, V) \big), \qquad
    F_{ij} = \frac{1}{\lambda_j - \lambda_i} \ (i \ne j),

so the backward pass is
:math:`\bar A = V\big(\operatorname{diag}(\bar\lambda) + F \circ V^\top \bar V\big)V^\top`
(symmetrised).  Inside a block of (near-)repeated eigenvalues the eigenvectors are not
determined and :math:`F` blows up (``torch.linalg.eigh`` then returns ``inf``/``nan``).
:func:`symmetric_eigh` sets :math:`F_{ij} = 0` for every pair inside a block: the
derivative is then exact for every quantity that does not depend on the choice of basis
inside a block (a spectral projector, the eigenvectors outside the block, an average
over sign flips of the block's vectors), which is how :mod:`geobasis.frames` uses it.
The backward is written with differentiable operations on the saved outputs, so it is
differentiable again (forces trained through frames need the double backward).

Reference: Giles, "An extended collection of matrix derivative results for forward and
reverse mode automatic differentiation" (2008), section 3.1.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["symmetric_eigh", "eigenvalue_blocks"]


def eigenvalue_blocks(eigenvalues: Tensor, tol: float) -> Tensor:
    r"""Block labels ``[..., d]`` of ascending eigenvalues: consecutive eigenvalues whose gap
    is at most ``tol`` times the largest :math:`|\lambda|` share a label (chains merge)."""
    values = eigenvalues.detach()
    scale = values.abs().amax(-1, keepdim=True).clamp_min(torch.finfo(values.dtype).tiny)
    gaps = values.diff(dim=-1) > tol * scale
    labels = torch.zeros_like(values, dtype=torch.long)
    labels[..., 1:] = gaps.long().cumsum(-1)
    return labels


class _SymmetricEigh(torch.autograd.Function):
    @staticmethod
    def forward(ctx, matrix: Tensor, tol: float):  # type: ignore[override]
        eigenvalues, eigenvectors = torch.linalg.eigh(matrix)
        ctx.tol = tol
        ctx.save_for_backward(eigenvalues, eigenvectors)
        return eigenvalues, eigenvectors

    @staticmethod
    def backward(ctx, grad_values: Tensor, grad_vectors: Tensor):  # type: ignore[override]
        eigenvalues, eigenvectors = ctx.saved_tensors
        labels = eigenvalue_blocks(eigenvalues, ctx.tol)
        same_block = labels[..., :, None] == labels[..., None, :]
        difference = eigenvalues[..., None, :] - eigenvalues[..., :, None]  # lambda_j - lambda_i
        inverse = torch.where(same_block, torch.zeros_like(difference), difference)
        inverse = torch.where(same_block, inverse, 1.0 / torch.where(same_block, 1.0, inverse))
        inner = eigenvectors.transpose(-1, -2) @ grad_vectors
        middle = inverse * inner + torch.diag_embed(grad_values)
        grad = eigenvectors @ middle @ eigenvectors.transpose(-1, -2)
        return 0.5 * (grad + grad.transpose(-1, -2)), None


def symmetric_eigh(matrix: Tensor, tol: float = 1e-6) -> tuple[Tensor, Tensor]:
    r"""Eigenvalues (ascending) ``[..., d]`` and eigenvectors (columns) ``[..., d, d]`` of
    symmetric ``matrix [..., d, d]``, with the block-safe derivative described above.

    ``tol`` is the relative eigengap below which two eigenvalues count as one block.
    """
    if matrix.ndim < 2 or matrix.shape[-1] != matrix.shape[-2]:
        raise ValueError(f"matrix must be [..., d, d], got {tuple(matrix.shape)}")
    return _SymmetricEigh.apply(matrix, float(tol))
