r"""Real spherical harmonics of arbitrary degree in e3nn's convention.

The harmonics are evaluated as polynomials of the unit vector, so they are finite and
smooth everywhere, including on the polar axis.  With the polar axis :math:`y` (e3nn's
choice) write :math:`c = y` and :math:`u + i w = z + i x`.  Then

.. math::

    Y_l^m(\hat r) = \bar Q_l^{|m|}(c)\,
    \begin{cases} \operatorname{Re}\,(u + i w)^{m} & m > 0 \\ 1 & m = 0 \\
    \operatorname{Im}\,(u + i w)^{|m|} & m < 0 \end{cases}

where :math:`\bar Q_l^m = N_{lm} P_l^m / \sin^m\theta` is the normalised associated
Legendre function (no Condon–Shortley phase) divided by :math:`\sin^m\theta`, a
polynomial in :math:`c`.  It obeys the three-term recurrence

.. math::

    \bar Q_l^m = a_{lm}\, c\, \bar Q_{l-1}^m - b_{lm}\, r^2\, \bar Q_{l-2}^m,\qquad
    a_{lm} = \sqrt{\tfrac{4l^2-1}{l^2-m^2}},\quad
    b_{lm} = \sqrt{\tfrac{((l-1)^2-m^2)(2l+1)}{(2l-3)(l^2-m^2)}},

started from :math:`\bar Q_m^m = \sqrt{(2m+1)/(2m)}\,\bar Q_{m-1}^{m-1}`.  The recurrence
is vectorised over :math:`m` (each degree is one block of ``2l+1`` rows, symmetric in
:math:`\pm m`), so a call costs :math:`O(l_{max})` tensor operations and there is no
upper limit on :math:`l_{max}`.  Vectors are processed in cache-sized chunks in a
degree-major work array (float64 for float32 input from ``lmax = 3``: one final rounding).
Low degrees (up to ``lmax`` 3 on CPU, 4 with its C kernel, 6 on CUDA) take the monomial form of
``_harmonic_polynomials`` instead: one GEMM, fewer and contiguous kernels (on CPU with a
C compiler, one fused C loop, ``_harmonics_native``).

The backward pass regenerates the blocks in the input's precision and needs no
recurrence for the derivative: since :math:`P_l^m/\sin^m\theta = d^m P_l/dc^m`,
:math:`\partial_c \bar Q_l^m \propto \bar Q_l^{m+1}`, and
:math:`\partial_u (u+iw)^m = m (u+iw)^{m-1}`.  A second backward
(forces trained through the harmonics) differentiates a plain polynomial form with autograd.

Reference for the recurrences: Limpanuparb & Milthorpe, "Associated Legendre Polynomials
and Spherical Harmonics Computation for Chemistry Applications" (2014).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import Tensor, nn

from geobasis._chunked import block_rows
from geobasis._tracing import traced
from geobasis.o3._harmonic_polynomials import (
    device_coefficients,
    harmonic_coefficients,
    max_degree,
    monomial_harmonics,
)
from geobasis.o3.layout import check_lmax, degree_slice

__all__ = ["SphericalHarmonics", "spherical_harmonics"]

_NORMALIZATIONS = ("integral", "component", "norm")


def degree_scale(l: int, normalization: str) -> float:
    """Factor turning orthonormal ("integral") harmonics of degree ``l`` into ``normalization``."""
    if normalization == "integral":
        return 1.0
    if normalization == "component":
        return math.sqrt(4 * math.pi)
    if normalization == "norm":
        return math.sqrt(4 * math.pi / (2 * l + 1))
    raise ValueError(f"normalization must be one of {_NORMALIZATIONS}, got {normalization!r}")


def _recurrence_tables(lmax: int, normalization: str) -> tuple[list[float], dict[str, Tensor]]:
    r"""Coefficients in the symmetric block layout, normalisation folded in.

    For degree ``l`` the block has rows ``m = -l..l`` holding
    :math:`s_l \sqrt{2 - \delta_{m0}}\,\bar Q_l^{|m|}`.  Rows ``|m| <= l - 1`` follow from
    the two previous blocks; the two outer rows are constants (returned as Python floats,
    so that no tensor is read back to the host in a forward pass).
    """
    a_rows, b_rows, edges = [], [], []
    for l in range(lmax + 1):
        s_l = degree_scale(l, normalization)
        s_1 = degree_scale(l - 1, normalization) if l >= 1 else 1.0
        s_2 = degree_scale(l - 2, normalization) if l >= 2 else 1.0
        for m in range(-(l - 1), l):
            mm = abs(m)
            a_rows.append(math.sqrt((4 * l * l - 1) / (l * l - mm * mm)) * s_l / s_1)
            num = ((l - 1) ** 2 - mm * mm) * (2 * l + 1)
            den = (2 * l - 3) * (l * l - mm * mm) if l >= 2 else 1
            b_rows.append(math.sqrt(num / den) * s_l / s_2 if num > 0 else 0.0)
    dcoef = []  # per block row m: d Qbar_l^|m| / dc = dcoef * Qbar_l^(|m|+1)
    for l in range(lmax + 1):
        for m in range(-l, l + 1):
            mm = abs(m)
            if mm == l:
                dcoef.append(0.0)
            else:
                dcoef.append(
                    math.sqrt((l - mm) * (l + mm + 1)) / (math.sqrt(2.0) if mm == 0 else 1.0)
                )
    diag = 1.0 / math.sqrt(4 * math.pi)
    for l in range(lmax + 1):
        if l >= 1:
            diag *= math.sqrt((2 * l + 1) / (2 * l))
        edges.append(diag * degree_scale(l, normalization) * (math.sqrt(2.0) if l else 1.0))
    f64 = torch.float64
    return edges, {
        "a": torch.tensor(a_rows, dtype=f64).unsqueeze(-1),
        "b": torch.tensor(b_rows, dtype=f64).unsqueeze(-1),
        "neg_b": -torch.tensor(b_rows, dtype=f64).unsqueeze(-1),
        "dcoef": torch.tensor(dcoef, dtype=f64).unsqueeze(-1),
        "m": torch.arange(1, lmax + 1, dtype=f64).unsqueeze(-1),
    }


def _azimuthal(lmax: int, u: Tensor, w: Tensor, out: Tensor) -> Tensor:
    """Rows ``Im (u+iw)^lmax .. Im (u+iw)^1, 1, Re (u+iw)^1 .. Re (u+iw)^lmax`` into ``out``."""
    t = out
    t[lmax].fill_(1.0)
    if lmax >= 1:
        t[lmax + 1].copy_(u)
        t[lmax - 1].copy_(w)
    for m in range(2, lmax + 1):
        c_prev, s_prev = t[lmax + m - 1], t[lmax - m + 1]
        torch.mul(u, c_prev, out=t[lmax + m]).addcmul_(w, s_prev, value=-1.0)
        torch.mul(u, s_prev, out=t[lmax - m]).addcmul_(w, c_prev)
    return t


def _cast(value, dtype: torch.dtype):
    return value.to(dtype) if isinstance(value, Tensor) else value


def _chunk_size(lmax: int, n: int, device: torch.device) -> int:
    """Vectors per chunk: on CPU the per-chunk work arrays stay in the processor's cache;
    on a GPU all of them unless memory requires blocks (:func:`block_rows`)."""
    cpu = max(1024, (1 << 19) // (lmax + 1) ** 2)
    return block_rows(n, 8 * (lmax + 1) ** 2, device, cpu)


def _chunks(n: int, size: int):
    """``(lo, hi)`` ranges covering ``0..n`` in pieces of ``size``."""
    return [(lo, min(lo + size, n)) for lo in range(0, n, size)]


def _unit_chunk(cuw: Tensor, lo: int, hi: int, work: torch.dtype) -> tuple[Tensor, Tensor]:
    r"""Chunk of ``cuw`` in the work precision, renormalised there; and the nonzero mask.

    Renormalising makes the polynomial recurrence (which assumes :math:`|\hat r| = 1`)
    exact for float32 input evaluated in float64; zero vectors stay zero.
    """
    chunk = cuw[:, lo:hi].to(work)
    norm = torch.sqrt(chunk[0] * chunk[0] + chunk[1] * chunk[1] + chunk[2] * chunk[2])
    positive = norm > 0
    chunk = chunk / torch.where(positive, norm, torch.ones_like(norm))
    return chunk, positive.to(work)


def _legendre_blocks(lmax: int, c: Tensor, q: Tensor, tables: dict[str, Tensor]) -> Tensor:
    """Fill ``q [(lmax+1)**2, B]`` with the scaled blocks :math:`\bar Q_l^{|m|}(c)` (in place)."""
    a, neg_b, edge = tables["a"], tables["neg_b"], tables["edge"]
    q[0].fill_(edge[0])
    row = 0
    for l in range(1, lmax + 1):
        block = q[degree_slice(l)]
        inner = block[1:-1]
        torch.mul(q[(l - 1) ** 2 : l * l], c, out=inner).mul_(a[row : row + 2 * l - 1])
        if l >= 2:
            inner[1:-1].addcmul_(q[(l - 2) ** 2 : (l - 1) ** 2], neg_b[row + 1 : row + 2 * l - 2])
        block[0].fill_(edge[l])
        block[-1].fill_(edge[l])
        row += 2 * l - 1
    return q


def _forward_chunked(lmax: int, cuw: Tensor, tables: dict[str, Tensor]) -> Tensor:
    """Harmonics ``[N, (lmax+1)**2]`` of the directions of ``cuw [3, N]``.

    Each chunk of vectors is computed in a degree-major ``[(lmax+1)**2, B]`` work array
    (every operation runs along contiguous vectors), then written transposed into the
    output.  Degrees ``l >= 1`` vanish for zero vectors, as in e3nn.
    """
    n = cuw.shape[-1]
    dim = (lmax + 1) ** 2
    out = cuw.new_empty((n, dim))
    work = tables["a"].dtype  # float64 work arrays for float32 input: one final rounding
    bsz = min(_chunk_size(lmax, n, cuw.device), max(n, 1))
    q_full = cuw.new_empty((dim, bsz), dtype=work)
    t_full = cuw.new_empty((2 * lmax + 1, bsz), dtype=work)
    for lo, hi in _chunks(n, bsz):
        chunk, nonzero = _unit_chunk(cuw, lo, hi, work)
        q, t = q_full[:, : hi - lo], t_full[:, : hi - lo]
        _azimuthal(lmax, chunk[1], chunk[2], t)
        _legendre_blocks(lmax, chunk[0], q, tables)
        for l in range(1, lmax + 1):
            q[degree_slice(l)].mul_(t[lmax - l : lmax + l + 1])
        if lmax >= 1:
            q[1:].mul_(nonzero)
        out[lo:hi].copy_(q.t())
    return out


def _vjp_chunked(lmax: int, cuw: Tensor, grad: Tensor, tables: dict[str, Tensor]) -> Tensor:
    r"""Vector-Jacobian product ``grad [N, (lmax+1)**2]`` -> ``[3, N]`` on the unit sphere.

    Regenerates the Legendre blocks (in the input's precision) and uses
    :math:`\partial_c \bar Q_l^m = \sqrt{(l-m)(l+m+1)}\,(s_m / s_{m+1})\, \bar Q_l^{m+1}`
    (because :math:`P_l^m / \sin^m\theta = d^m P_l / dc^m`; :math:`s_0 = 1`,
    :math:`s_{m>0} = \sqrt 2`), so no recurrence is run again.  Per chunk:
    :math:`h_m = \sum_l g_{lm} \bar Q_l^{|m|}`, :math:`h'_m = \sum_l g_{lm}
    \partial_c \bar Q_l^{|m|}`, then :math:`\partial_c = \sum_m h'_m T_m` and the
    in-plane derivatives follow from :math:`\partial_u (u + i w)^m = m (u + i w)^{m-1}`.
    """
    dcoef, m_weights = tables["dcoef"], tables["m"]
    n = cuw.shape[-1]
    dim = (lmax + 1) ** 2
    width = 2 * lmax + 1
    work = cuw.dtype
    result = cuw.new_empty((3, n))
    bsz = min(_chunk_size(lmax, n, cuw.device), max(n, 1))
    g_full = cuw.new_empty((dim, bsz), dtype=work)
    gc_full = cuw.new_empty((dim, bsz), dtype=work)
    q_full = cuw.new_empty((dim, bsz), dtype=work)
    t_full = cuw.new_empty((width, bsz), dtype=work)
    h_full = cuw.new_empty((width, bsz), dtype=work)
    hd_full = cuw.new_empty((width, bsz), dtype=work)
    for lo, hi in _chunks(n, bsz):
        k = hi - lo
        chunk, _ = _unit_chunk(cuw, lo, hi, work)
        g, gc = g_full[:, :k], gc_full[:, :k]
        g.copy_(grad[lo:hi].t())
        q = _legendre_blocks(lmax, chunk[0], q_full[:, :k], tables)
        t = _azimuthal(lmax, chunk[1], chunk[2], t_full[:, :k])
        h, hd = h_full[:, :k].zero_(), hd_full[:, :k].zero_()
        h[lmax].addcmul_(g[0], q[0])
        torch.mul(g, dcoef, out=gc)
        for l in range(1, lmax + 1):
            block = degree_slice(l)
            gl, gcl, ql = g[block], gc[block], q[block]
            h[lmax - l : lmax + l + 1].addcmul_(gl, ql)
            hd[lmax : lmax + l].addcmul_(gcl[l : 2 * l], ql[l + 1 :])  # m = 0..l-1
            if l >= 2:
                hd[lmax - l + 1 : lmax].addcmul_(gcl[1:l], ql[: l - 1])  # m = -(l-1)..-1
        out = result[:, lo:hi]
        out[0].copy_(hd.mul_(t).sum(0))
        if lmax == 0:
            out[1:].zero_()
            continue
        pos = h[lmax + 1 :].mul_(m_weights)  # m = 1..lmax
        neg = h[:lmax].flip(0).mul_(m_weights)  # |m| = 1..lmax
        cos_prev = t[lmax : 2 * lmax]  # Re (u+iw)^(m-1)
        sin_prev = torch.cat([torch.zeros_like(t[:1]), t[1:lmax].flip(0)])  # Im (u+iw)^(m-1)
        out[1].copy_((pos * cos_prev + neg * sin_prev).sum(0))
        out[2].copy_((neg * cos_prev - pos * sin_prev).sum(0))
    return result


class _UnitHarmonics(torch.autograd.Function):
    """Harmonics of the directions of ``cuw [3, N]``; analytic, twice-differentiable backward."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, cuw: Tensor, lmax: int, tables: dict[str, Tensor]
    ) -> Tensor:
        out = _forward_chunked(lmax, cuw, tables)
        ctx.save_for_backward(cuw)
        ctx.lmax = lmax
        ctx.tables = tables
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (cuw,) = ctx.saved_tensors
        if torch.is_grad_enabled():
            # double backward requested: differentiate the plain polynomial form
            with torch.enable_grad():
                tables = {k: _cast(v, cuw.dtype) for k, v in ctx.tables.items()}
                unit = _safe_unit(cuw)
                r2 = (unit * unit).sum(0)
                out = _plain_evaluate(ctx.lmax, unit, tables, r2).t()
                (grad_cuw,) = torch.autograd.grad(out, cuw, grad, create_graph=True)
            return grad_cuw, None, None
        tables = {k: _cast(v, cuw.dtype) for k, v in ctx.tables.items()}
        grad_unit = _vjp_chunked(ctx.lmax, cuw, grad, tables)
        # through r_hat = r / max(|r|, eps): project out the radial part, divide by |r|
        norm = torch.sqrt((cuw * cuw).sum(0))
        scale = norm.clamp_min(_EPS)
        radial = (grad_unit * cuw).sum(0) / scale
        grad_cuw = (grad_unit - radial * cuw / scale) / scale
        # the direction of the zero vector is undefined: no gradient through it (as the
        # double-backward form below), instead of grad / eps
        return torch.where(norm > _EPS, grad_cuw, torch.zeros_like(grad_cuw)), None, None


_EPS = 1e-12  # e3nn's normalisation epsilon


def _safe_unit(cuw: Tensor) -> Tensor:
    """``cuw / |cuw|`` column-wise, zero for (near-)zero columns with a zero gradient there,
    to every order (``F.normalize`` has a NaN second derivative at the zero vector)."""
    square = (cuw * cuw).sum(0)
    positive = square > _EPS * _EPS
    norm = torch.sqrt(torch.where(positive, square, torch.ones_like(square)))
    return torch.where(positive, cuw / norm, torch.zeros_like(cuw))


class SphericalHarmonics(nn.Module):
    r"""Real spherical harmonics :math:`Y_l^m`, :math:`l = 0..l_{max}`, in e3nn's basis.

    .. math::

        Y(\vec r) = \big[Y_0^0, Y_1^{-1}, Y_1^0, Y_1^1, \dots, Y_{l_{max}}^{l_{max}}\big],
        \qquad \int_{S^2} Y_l^m Y_{l'}^{m'} \, d\Omega = \delta_{ll'}\delta_{mm'}
        \ \text{("integral")}

    e3nn's convention: the polar axis is :math:`y`, :math:`Y_1 \propto (x, y, z)`, no
    Condon–Shortley phase; the values equal ``e3nn.o3.spherical_harmonics``.
    Normalisations: ``"integral"`` (orthonormal on the sphere), ``"component"``
    (:math:`\|Y_l\|^2 = 2l+1`) and ``"norm"`` (:math:`\|Y_l\| = 1`).

    Args:
        lmax: highest degree (any non-negative int).
        normalize: evaluate at the direction :math:`\hat r = \vec r / |\vec r|` (the
            zero vector gives :math:`Y_0` and zeros, as in e3nn, with finite gradients;
            e3nn's ``x / max(|x|, 1e-12)`` differs only for lengths below 1e-12).  With
            ``normalize=False`` the output is the solid harmonic
            :math:`|\vec r|^l Y_l^m(\hat r)`, a homogeneous polynomial.
        normalization: ``"integral"``, ``"component"`` or ``"norm"``.

    Shapes: ``vectors [..., 3]`` -> ``[..., (lmax+1)**2]``.
    """

    def __init__(self, lmax: int, normalize: bool = True, normalization: str = "integral") -> None:
        super().__init__()
        check_lmax(lmax)
        degree_scale(0, normalization)  # validates the name
        self.lmax = lmax
        self.normalize = normalize
        self.normalization = normalization
        edges, tables = _recurrence_tables(lmax, normalization)
        self.edge = edges
        self._coefficients: dict[tuple, Tensor] = {}  # monomial tables per (dtype, device)
        for name, value in tables.items():
            self.register_buffer(name, value, persistent=False)

    def forward(self, vectors: Tensor) -> Tensor:
        if vectors.shape[-1] != 3:
            raise ValueError(f"vectors must have shape [..., 3], got {tuple(vectors.shape)}")
        if not vectors.is_floating_point():
            raise TypeError(f"vectors must be a floating-point tensor, got {vectors.dtype}")
        if not traced() and self.lmax <= max_degree(vectors):
            return self._monomials(vectors)
        return self._recurrence(vectors)

    def _monomials(self, vectors: Tensor) -> Tensor:
        """Low degrees: one GEMM over monomials (``_harmonic_polynomials``), in the input's
        precision (half precisions in float32)."""
        work = vectors.dtype if vectors.dtype == torch.float64 else torch.float32
        key = (work, vectors.device)
        if key not in self._coefficients:
            table = harmonic_coefficients(self.lmax, self.normalization)
            self._coefficients[key] = device_coefficients(table, work, vectors.device)
        flat = vectors.reshape(-1, 3).to(work)
        out = monomial_harmonics(self.lmax, flat, self._coefficients[key], self.normalize)
        return out.to(vectors.dtype).reshape(*vectors.shape[:-1], (self.lmax + 1) ** 2)

    def _recurrence(self, vectors: Tensor) -> Tensor:
        """Any degree: the vectorised recurrence (module docstring)."""
        tables = {"a": self.a, "b": self.b, "neg_b": self.neg_b, "dcoef": self.dcoef, "m": self.m}
        # the chunked kernels work in float64 for float32 input from lmax 3 on (one final
        # rounding; below, float32 arithmetic already stays within 1e-6); half
        # precisions are computed in float32
        wide = vectors.dtype == torch.float64 or (vectors.dtype == torch.float32 and self.lmax >= 3)
        work = torch.float64 if wide else torch.float32
        if self.a.dtype != work or self.a.device != vectors.device:
            tables = {k: v.to(device=vectors.device, dtype=work) for k, v in tables.items()}
        tables["edge"] = self.edge
        lead = vectors.shape[:-1]
        flat = vectors.reshape(-1, 3)
        # e3nn: polar axis y, azimuth in the z-x plane from z towards x
        cuw = flat.t()[[1, 2, 0]]
        if self.normalize and traced():  # compiled or under torch.func: plain ops only
            unit = _safe_unit(cuw)
            tables = {k: _cast(v, vectors.dtype) for k, v in tables.items()}
            out = _plain_evaluate(self.lmax, unit, tables, (unit * unit).sum(0)).t()
        elif self.normalize and torch.is_grad_enabled() and cuw.requires_grad:
            out = _UnitHarmonics.apply(cuw, self.lmax, tables)
        elif self.normalize:  # inference: no autograd bookkeeping
            out = _forward_chunked(self.lmax, cuw, tables)
        else:
            r2 = (flat * flat).sum(-1)
            tables = {k: _cast(v, vectors.dtype) for k, v in tables.items()}
            out = _plain_evaluate(self.lmax, cuw, tables, r2).t()
        return out.reshape(*lead, (self.lmax + 1) ** 2)

    def extra_repr(self) -> str:
        return f"lmax={self.lmax}, normalize={self.normalize}, normalization={self.normalization!r}"


def _plain_evaluate(lmax: int, cuw: Tensor, tables: dict[str, Tensor], r2: Tensor | None) -> Tensor:
    """Autograd-friendly evaluation: solid harmonics, or unit input when ``r2`` is None."""
    a, b, edge = tables["a"], tables["b"], tables["edge"]
    c, u, w = cuw[0], cuw[1], cuw[2]
    one = torch.ones_like(c).unsqueeze(0)
    blocks = [edge[0] * one]
    row = 0
    for l in range(1, lmax + 1):
        inner = a[row : row + 2 * l - 1] * c * blocks[-1]
        if l >= 2:
            lower = b[row + 1 : row + 2 * l - 2] * blocks[-2]
            if r2 is not None:
                lower = lower * r2
            inner = torch.cat([inner[:1], inner[1:-1] - lower, inner[-1:]])
        blocks.append(torch.cat([edge[l] * one, inner, edge[l] * one]))
        row += 2 * l - 1
    cos_t, sin_t = [], []
    cm, sm = u, w
    for m in range(1, lmax + 1):
        if m > 1:
            cm, sm = u * cm - w * sm, u * sm + w * cm
        cos_t.append(cm)
        sin_t.append(sm)
    t = torch.stack(sin_t[::-1] + [torch.ones_like(c)] + cos_t)
    return torch.cat([blocks[l] * t[lmax - l : lmax + l + 1] for l in range(lmax + 1)])


@lru_cache(maxsize=64)
def _cached_module(
    lmax: int, normalize: bool, normalization: str, device: torch.device
) -> SphericalHarmonics:
    # tables stay in float64: the kernels cast them to their work precision when needed
    return SphericalHarmonics(lmax, normalize, normalization).to(device=device)


def spherical_harmonics(
    lmax: int,
    vectors: Tensor,
    normalize: bool = True,
    normalization: str = "integral",
) -> Tensor:
    r"""Functional form of :class:`SphericalHarmonics`: ``[..., 3] -> [..., (lmax+1)**2]``.

    Equal to ``e3nn.o3.spherical_harmonics(list(range(lmax + 1)), vectors, normalize,
    normalization=normalization)`` wherever e3nn is defined (``lmax <= 12``) and defined
    for any ``lmax``.  Constant tables are cached per (lmax, options, device).
    """
    check_lmax(lmax)
    if not isinstance(vectors, Tensor):
        raise TypeError(f"vectors must be a torch.Tensor, got {type(vectors).__name__}")
    module = _cached_module(lmax, bool(normalize), normalization, vectors.device)
    return module(vectors)
