r"""Spherical harmonics of low degree as one matrix product over monomials.

A solid harmonic :math:`r^l Y_l^m(\hat r)` is a homogeneous polynomial of degree
:math:`l` in :math:`(x, y, z)`, so for every degree up to :math:`l_{max}` at once

.. math::

    Y(\vec v) = M(\vec v)\, C, \qquad
    M(\vec v) = \big[x^a y^b z^c\big]_{a + b + c \le l_{max}},

with a constant coefficient matrix :math:`C` ``[num_monomials, (lmax+1)**2]``,
block-diagonal in the degree (a degree-:math:`l` harmonic uses degree-:math:`l`
monomials only).  :math:`C` is read off the recurrence of ``_spherical_harmonics`` once,
by interpolation on generic points in float64 (exact: both sides span the same
polynomials).  Evaluated at :math:`\hat r = \vec v / |\vec v|` these are the harmonics;
at :math:`\vec v` itself, the solid harmonics.

The monomials of degree :math:`d` are built from those of degree :math:`d - 1`:
:math:`x` times all of them, :math:`y` times those free of :math:`x`, :math:`z` times
:math:`z^{d-1}`; in this order each of the three is a contiguous suffix of the previous
degree.  So a forward pass is three elementwise products per degree on contiguous rows
``[n, N]`` and one GEMM, and the hand-written backward runs the same recursion in
reverse (one GEMM, six elementwise operations per degree).  There are
:math:`\binom{l_{max}+3}{3}` monomials, :math:`O(l_{max}^3)`, against
:math:`(l_{max}+1)^2` harmonics: this form wins at the low degrees where most models
live, the recurrence above them (``spherical_harmonics`` dispatches per device, see
:data:`MAX_DEGREE`).  On CPU with a C compiler the same product and its backward run in C
(:mod:`geobasis.o3._harmonics_native`: 16 vectors per register tile, one pass; 1.9-2.4x
the PyTorch form fwd+bwd in float32, 1.4-1.6x in float64, at lmax 1-4; measured);
second derivatives differentiate a plain autograd form.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor

from geobasis._workspace import scratch
from geobasis.o3 import _harmonics_native as native

__all__ = [
    "MAX_DEGREE",
    "max_degree",
    "num_monomials",
    "harmonic_coefficients",
    "device_coefficients",
    "monomial_harmonics",
]

#: Highest ``lmax`` evaluated this way in PyTorch, per device type (measured against the
#: recurrence, fwd+bwd, 100k vectors: on one CPU thread the recurrence is faster from lmax
#: 4; on an H200 the monomials win at every lmax measured, 1..6, where both are
#: launch-bound).  With the C kernel on CPU: :data:`NATIVE_DEGREE`.
MAX_DEGREE = {"cpu": 3, "cuda": 6}

_EPS = 1e-12  # e3nn's normalisation epsilon: shorter vectors have no direction


#: Highest ``lmax`` of the monomials on CPU when the C kernel is built: at lmax 4 it is
#: 2.6x the recurrence fwd+bwd in float32 and 1.2x in float64 (level at 6 and slower at 8 in
#: float64; measured); its float32 values are as accurate as e3nn's float32 formulas
#: (4.0e-7 against 3.97e-7 at lmax 4), as below.
NATIVE_DEGREE = 4


def max_degree(vectors: Tensor) -> int:
    """Highest ``lmax`` evaluated as monomials for ``vectors``: :data:`MAX_DEGREE` of their
    device (other accelerators: CUDA's value), :data:`NATIVE_DEGREE` on CPU with the C
    kernel."""
    limit = MAX_DEGREE.get(vectors.device.type, MAX_DEGREE["cuda"])
    if native.usable(vectors, NATIVE_DEGREE):
        return max(limit, NATIVE_DEGREE)
    return limit


def num_monomials(lmax: int) -> int:
    """Monomials :math:`x^a y^b z^c` with :math:`a + b + c \\le l_{max}`."""
    return (lmax + 1) * (lmax + 2) * (lmax + 3) // 6


def _degree_start(d: int) -> int:
    """Row of the first degree-``d`` monomial."""
    return num_monomials(d - 1) if d > 0 else 0


def _suffixes(d: int) -> tuple[tuple[int, int, int], ...]:
    """For degree ``d >= 2``: ``(variable, first row, rows)`` of each of the three parts,
    the part's rows being ``variable`` times the last ``rows`` monomials of degree d-1."""
    n = d * (d + 1) // 2  # monomials of degree d - 1
    return ((0, 0, n), (1, n, d), (2, n + d, 1))


def _monomials(lmax: int, u: Tensor) -> Tensor:
    """Monomials ``[num_monomials, N]`` of the rows of ``u [3, N]`` (no autograd)."""
    out = u.new_empty(num_monomials(lmax), u.shape[1])
    out[0].fill_(1.0)
    if lmax >= 1:
        out[1:4].copy_(u)
    _higher_degrees(lmax, out)
    return out


def _vector_monomials(lmax: int, vectors: Tensor, normalize: bool, keep: bool = False,
                      ) -> tuple[Tensor, Tensor, Tensor | None]:  # fmt: skip
    """Monomials ``[num_monomials(max(lmax, 1)), N]`` of ``vectors [N, 3]`` (of their
    directions if ``normalize``), the rows ``u = x, y, z`` among them (a ``[3, N]`` view)
    and ``1 / |v|`` (``None`` without ``normalize``).  A new tensor to ``keep`` (for
    backward), else a scratch buffer (:func:`~geobasis._workspace.scratch`: no fresh
    memory per call, 2.5-4x faster forward passes; measured)."""
    shape = (num_monomials(max(lmax, 1)), vectors.shape[0])
    out = vectors.new_empty(shape) if keep else scratch("monomials", shape, vectors)
    u = out[1:4]
    for k in range(3):  # three strided row copies: 3x faster than one transposing copy
        u[k].copy_(vectors[:, k])
    inv = None
    if normalize:
        inv = _inverse_length(u)
        u.mul_(inv)
    out[0].fill_(1.0)
    _higher_degrees(lmax, out)
    return out, u, inv


def _higher_degrees(lmax: int, out: Tensor) -> None:
    """Fill the monomials of degrees ``2..lmax`` of ``out`` from its rows ``0..3``."""
    u = out[1:4]
    for d in range(2, lmax + 1):
        prev = out[_degree_start(d - 1) : _degree_start(d)]
        block = out[_degree_start(d) : _degree_start(d + 1)]
        for k, first, rows in _suffixes(d):
            torch.mul(prev[prev.shape[0] - rows :], u[k], out=block[first : first + rows])


def _plain_monomials(lmax: int, u: Tensor) -> Tensor:
    """The same with differentiable operations (for second derivatives and tracing)."""
    blocks = [torch.ones_like(u[:1])]
    prev = u
    if lmax >= 1:
        blocks.append(u)
    for d in range(2, lmax + 1):
        prev = torch.cat([prev[prev.shape[0] - rows :] * u[k] for k, _, rows in _suffixes(d)])
        blocks.append(prev)
    return torch.cat(blocks)


def _inverse_length(xyz: Tensor) -> Tensor:
    """``1 / |xyz|`` per column of ``xyz [3, N]`` (zero for the zero vector)."""
    square = (xyz * xyz).sum(0)
    return torch.where(square > _EPS * _EPS, square.clamp_min(_EPS * _EPS).rsqrt(), 0.0)


def _plain(lmax: int, xyz: Tensor, coefficients: Tensor, normalize: bool) -> Tensor:
    """``[N, (lmax+1)**2]`` in plain autograd operations."""
    u = xyz * _inverse_length(xyz) if normalize else xyz
    return torch.mm(_plain_monomials(lmax, u).t(), coefficients[:, : (lmax + 1) ** 2])


class _MonomialHarmonics(torch.autograd.Function):
    """``M(v) C`` with the hand-written reverse recursion as backward."""

    @staticmethod
    def forward(ctx, vectors, coefficients, lmax, normalize):  # noqa: D102
        monomials, u, inv = _vector_monomials(lmax, vectors, normalize, keep=True)
        ctx.save_for_backward(vectors, coefficients, inv, monomials)
        ctx.lmax, ctx.normalize = lmax, normalize
        return _combine(monomials, coefficients, lmax)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        vectors, coefficients, inv, monomials = ctx.saved_tensors
        lmax = ctx.lmax
        if torch.is_grad_enabled():  # create_graph=True: differentiate the plain form
            with torch.enable_grad():  # through the saved input: stays in the graph
                out = _plain(lmax, vectors.t(), coefficients, ctx.normalize)
                (g,) = torch.autograd.grad(out, vectors, grad, create_graph=True)
            return g, None, None, None
        u = monomials[1:4]
        g_u = _gradient_of_rows(lmax, monomials, coefficients, grad)
        if ctx.normalize:  # through u = v / |v|: drop the radial part, divide by |v|
            radial = torch.linalg.vecdot(g_u, u, dim=0)
            g_u.addcmul_(u, radial, value=-1.0).mul_(inv)
        return g_u.t(), None, None, None


class _NativeHarmonics(torch.autograd.Function):
    """``M(v) C`` in C (:mod:`geobasis.o3._harmonics_native`), its backward too; second
    derivatives differentiate the plain form."""

    @staticmethod
    def forward(ctx, vectors, coefficients, lmax, normalize):  # noqa: D102
        ctx.save_for_backward(vectors, coefficients)
        ctx.lmax, ctx.normalize = lmax, normalize
        return native.forward(lmax, vectors, coefficients, normalize)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        vectors, coefficients = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: differentiate the plain form
            with torch.enable_grad():  # through the saved input: stays in the graph
                out = _plain(ctx.lmax, vectors.t(), coefficients, ctx.normalize)
                (g,) = torch.autograd.grad(out, vectors, grad, create_graph=True)
            return g, None, None, None
        return (
            native.backward(ctx.lmax, vectors, coefficients, ctx.normalize, grad),
            None,
            None,
            None,
        )


def _gradient_of_rows(lmax: int, monomials: Tensor, coefficients: Tensor, grad: Tensor,
                      ) -> Tensor:  # fmt: skip
    """``[3, N]``: the gradient of ``M(u) C`` with respect to ``u = monomials[1:4]``, for the
    output gradient ``grad [N, D]``: one GEMM to the monomials, then the recursion of
    :func:`_higher_degrees` in reverse (``x``, ``y``, ``z`` times tails of the degree below)."""
    u = monomials[1:4]
    g_mono = scratch("monomial gradients", monomials.shape, monomials)[: num_monomials(lmax)]
    torch.mm(coefficients[:, : grad.shape[1]], grad.t(), out=g_mono)  # [num_monomials, N]
    g_u = u.new_zeros(u.shape)
    for d in range(lmax, 1, -1):
        prev = monomials[_degree_start(d - 1) : _degree_start(d)]
        g_prev = g_mono[_degree_start(d - 1) : _degree_start(d)]
        block = g_mono[_degree_start(d) : _degree_start(d + 1)]
        for k, first, rows in _suffixes(d):
            part = block[first : first + rows]
            tail = slice(prev.shape[0] - rows, prev.shape[0])
            g_u[k] += torch.linalg.vecdot(part, prev[tail], dim=0)
            g_prev[tail].addcmul_(part, u[k])
    if lmax >= 1:
        g_u += g_mono[1:4]
    return g_u


@lru_cache(maxsize=32)
def harmonic_coefficients(lmax: int, normalization: str) -> Tensor:
    r"""``C [num_monomials(lmax), (lmax+1)**2]`` (float64): the harmonics of degree
    ``<= lmax`` as combinations of monomials, read off the recurrence by exact
    interpolation (degree by degree, on more generic points than unknowns)."""
    from geobasis.o3._spherical_harmonics import SphericalHarmonics

    g = torch.Generator().manual_seed(0)
    points = torch.randn(4 * num_monomials(lmax) + 16, 3, generator=g, dtype=torch.float64)
    monomials = _monomials(lmax, points.t().contiguous()).t()
    solid = SphericalHarmonics(lmax, False, normalization)._recurrence(points)
    coefficients = torch.zeros(num_monomials(lmax), (lmax + 1) ** 2, dtype=torch.float64)
    for l in range(lmax + 1):
        rows = slice(_degree_start(l), _degree_start(l + 1))
        cols = slice(l * l, (l + 1) ** 2)
        coefficients[rows, cols] = torch.linalg.lstsq(monomials[:, rows], solid[:, cols]).solution
    return coefficients


def monomial_harmonics(
    lmax: int, vectors: Tensor, coefficients: Tensor, normalize: bool = True
) -> Tensor:
    """Harmonics ``[N, (lmax+1)**2]`` of ``vectors [N, 3]`` (``coefficients`` from
    :func:`device_coefficients`, in the vectors' dtype and device)."""
    if native.usable(vectors, lmax) and coefficients.dtype == vectors.dtype:
        return _NativeHarmonics.apply(vectors, coefficients, lmax, normalize)
    if torch.is_grad_enabled() and vectors.requires_grad:
        return _MonomialHarmonics.apply(vectors, coefficients, lmax, normalize)
    return _combine(_vector_monomials(lmax, vectors, normalize)[0], coefficients, lmax)


def device_coefficients(table: Tensor, dtype: torch.dtype, device: torch.device) -> Tensor:
    """:func:`harmonic_coefficients` ready for the GEMM, built once per (dtype, device): on
    CPU in float32 its columns are padded with zeros to a multiple of 16 when there are
    more than 8 (MKL's sgemm is up to 2.4x slower for an output row of 9 floats than of
    16; float64 and 4 columns gain nothing; measured with 100k vectors)."""
    table = table.to(device=device, dtype=dtype)
    dim = table.shape[1]
    padded = -(-dim // 16) * 16
    if device.type == "cpu" and dtype == torch.float32 and 8 < dim < padded:
        table = torch.nn.functional.pad(table, (0, padded - dim))
    return table


def _combine(monomials: Tensor, coefficients: Tensor, lmax: int) -> Tensor:
    """``monomials.T @ coefficients`` ``[N, (lmax+1)**2]`` (padding columns and the rows
    above ``num_monomials(lmax)`` dropped)."""
    monomials, dim = monomials[: num_monomials(lmax)], (lmax + 1) ** 2
    if coefficients.shape[1] == dim:
        return torch.mm(monomials.t(), coefficients)
    padded = scratch("padded harmonics", (monomials.shape[1], coefficients.shape[1]), monomials)
    return torch.mm(monomials.t(), coefficients, out=padded)[:, :dim].contiguous()
