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
upper limit on :math:`l_{max}`.  The first derivative is computed analytically
(:math:`\partial_c \bar Q`, :math:`\partial_u (u+iw)^m = m (u+iw)^{m-1}`), and the
backward pass is itself written in differentiable operations, so second derivatives are
exact.

Reference for the recurrences: Limpanuparb & Milthorpe, "Associated Legendre Polynomials
and Spherical Harmonics Computation for Chemistry Applications" (2014).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import Tensor, nn

__all__ = ["SphericalHarmonics", "spherical_harmonics"]

_NORMALIZATIONS = ("integral", "component", "norm")


def check_lmax(lmax: int, name: str = "lmax") -> None:
    """Raise a clear error unless ``lmax`` is a non-negative int."""
    if not isinstance(lmax, int) or isinstance(lmax, bool) or lmax < 0:
        raise ValueError(f"{name} must be a non-negative int, got {lmax!r}")


def degree_scale(l: int, normalization: str) -> float:
    """Factor turning orthonormal ("integral") harmonics of degree ``l`` into ``normalization``."""
    if normalization == "integral":
        return 1.0
    if normalization == "component":
        return math.sqrt(4 * math.pi)
    if normalization == "norm":
        return math.sqrt(4 * math.pi / (2 * l + 1))
    raise ValueError(f"normalization must be one of {_NORMALIZATIONS}, got {normalization!r}")


def _recurrence_tables(lmax: int, normalization: str) -> dict[str, Tensor]:
    r"""Coefficients in the symmetric block layout, normalisation folded in.

    For degree ``l`` the block has rows ``m = -l..l`` holding
    :math:`s_l \sqrt{2 - \delta_{m0}}\,\bar Q_l^{|m|}`.  Rows ``|m| <= l - 1`` follow from
    the two previous blocks; the two outer rows are constants.
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
    diag = 1.0 / math.sqrt(4 * math.pi)
    for l in range(lmax + 1):
        if l >= 1:
            diag *= math.sqrt((2 * l + 1) / (2 * l))
        edges.append(diag * degree_scale(l, normalization) * (math.sqrt(2.0) if l else 1.0))
    f64 = torch.float64
    return {
        "a": torch.tensor(a_rows, dtype=f64).unsqueeze(-1),
        "b": torch.tensor(b_rows, dtype=f64).unsqueeze(-1),
        "edge": torch.tensor(edges, dtype=f64),
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


def _chunk_size(lmax: int) -> int:
    """Vectors per chunk: the per-chunk work arrays stay in the processor's cache."""
    return max(1024, (1 << 19) // (lmax + 1) ** 2)


def _forward_chunked(lmax: int, cuw: Tensor, r2: Tensor, tables: dict[str, Tensor]) -> Tensor:
    """Harmonics ``[N, (lmax+1)**2]`` of unit vectors given as ``cuw [3, N]``.

    Each chunk of vectors is computed in a degree-major ``[(lmax+1)**2, B]`` work array
    (every operation runs along contiguous vectors), then written transposed into the
    output.  The work arrays are allocated once per call.
    """
    a, b, edge = tables["a"], tables["b"], tables["edge"]
    n = cuw.shape[-1]
    dim = (lmax + 1) ** 2
    out = cuw.new_empty((n, dim))
    bsz = min(_chunk_size(lmax), max(n, 1))
    work = a.dtype  # float64 work arrays for float32 input: error of one final rounding
    q = cuw.new_empty((dim, bsz), dtype=work)
    t = cuw.new_empty((2 * lmax + 1, bsz), dtype=work)
    for lo in range(0, n, bsz):
        hi = min(lo + bsz, n)
        k = hi - lo
        chunk = cuw[:, lo:hi].to(work)
        c, u, w = chunk[0], chunk[1], chunk[2]
        rr = (chunk * chunk).sum(0)  # |r_hat|^2 in the work precision
        qk, tk = q[:, :k], t[:, :k]
        _azimuthal(lmax, u, w, tk)
        qk[0].fill_(float(edge[0]))
        row = 0
        for l in range(1, lmax + 1):
            block = qk[l * l : (l + 1) ** 2]
            inner = block[1:-1]
            torch.mul(qk[(l - 1) ** 2 : l * l], c, out=inner)
            inner.mul_(a[row : row + 2 * l - 1])
            if l >= 2:
                lower = qk[(l - 2) ** 2 : (l - 1) ** 2] * b[row + 1 : row + 2 * l - 2]
                inner[1:-1].sub_(lower.mul_(rr))
            block[0].fill_(float(edge[l]))
            block[-1].fill_(float(edge[l]))
            row += 2 * l - 1
        for l in range(1, lmax + 1):
            qk[l * l : (l + 1) ** 2].mul_(tk[lmax - l : lmax + l + 1])
        out[lo:hi].copy_(qk.t())
    return out


def _vjp_chunked(
    lmax: int, cuw: Tensor, r2: Tensor, grad: Tensor, tables: dict[str, Tensor]
) -> Tensor:
    r"""Vector-Jacobian product ``grad [N, (lmax+1)**2]`` -> ``[3, N]`` (``r2`` held fixed).

    Per chunk, the Legendre blocks and their :math:`\partial_c` are regenerated degree
    by degree and contracted at once with the incoming gradient:
    :math:`h_m = \sum_l g_{lm} \bar Q_l^{|m|}`, :math:`h'_m = \sum_l g_{lm}
    \partial_c \bar Q_l^{|m|}`; then :math:`\partial_c = \sum_m h'_m T_m` and the
    in-plane derivatives follow from :math:`\partial_u (u + i w)^m = m (u + i w)^{m-1}`.
    """
    a, b, edge = tables["a"], tables["b"], tables["edge"]
    n = cuw.shape[-1]
    dim = (lmax + 1) ** 2
    width = 2 * lmax + 1
    result = cuw.new_empty((3, n))
    bsz = min(_chunk_size(lmax), max(n, 1))
    work = a.dtype
    g_t = cuw.new_empty((dim, bsz), dtype=work)
    t = cuw.new_empty((width, bsz), dtype=work)
    ring_q = cuw.new_empty((3, width, bsz), dtype=work)  # q_l, q_(l-1), q_(l-2), centred
    ring_d = cuw.new_empty((3, width, bsz), dtype=work)
    h = cuw.new_empty((width, bsz), dtype=work)
    hd = cuw.new_empty((width, bsz), dtype=work)
    m_weights = tables["m"]
    for lo in range(0, n, bsz):
        hi = min(lo + bsz, n)
        k = hi - lo
        chunk = cuw[:, lo:hi].to(work)
        c, u, w = chunk[0], chunk[1], chunk[2]
        rr = (chunk * chunk).sum(0)  # |r_hat|^2 in the work precision
        gk = g_t[:, :k]
        gk.copy_(grad[lo:hi].t())
        tk = _azimuthal(lmax, u, w, t[:, :k])
        hk, hdk = h[:, :k].zero_(), hd[:, :k].zero_()
        hk[lmax].add_(gk[0], alpha=float(edge[0]))
        qs, ds = ring_q[:, :, :k], ring_d[:, :, :k]
        qs[0, lmax].fill_(float(edge[0]))
        ds[0, lmax].zero_()
        row = 0
        for l in range(1, lmax + 1):
            cur, prev, prev2 = l % 3, (l - 1) % 3, (l - 2) % 3
            rows = slice(lmax - l + 1, lmax + l)  # |m| <= l - 1
            al = a[row : row + 2 * l - 1]
            q_in, d_in = qs[cur, rows], ds[cur, rows]
            torch.mul(qs[prev, rows], c, out=q_in)
            torch.addcmul(qs[prev, rows], ds[prev, rows], c, out=d_in)
            q_in.mul_(al)
            d_in.mul_(al)
            if l >= 2:
                bl = b[row + 1 : row + 2 * l - 2] * rr
                inner2 = slice(lmax - l + 2, lmax + l - 1)
                qs[cur, inner2].sub_(qs[prev2, inner2] * bl)
                ds[cur, inner2].sub_(ds[prev2, inner2] * bl)
            qs[cur, lmax - l].fill_(float(edge[l]))
            qs[cur, lmax + l].fill_(float(edge[l]))
            ds[cur, lmax - l].zero_()
            ds[cur, lmax + l].zero_()
            row += 2 * l - 1
            g = gk[l * l : (l + 1) ** 2]
            full = slice(lmax - l, lmax + l + 1)
            hk[full].addcmul_(g, qs[cur, full])
            hdk[rows].addcmul_(g[1:-1], ds[cur, rows])
        out = result[:, lo:hi]
        out[0].copy_(hdk.mul_(tk).sum(0))
        if lmax == 0:
            out[1:].zero_()
            continue
        pos = hk[lmax + 1 :].mul_(m_weights)  # m = 1..lmax
        neg = hk[:lmax].flip(0).mul_(m_weights)  # |m| = 1..lmax
        cos_prev = tk[lmax : 2 * lmax]  # Re (u+iw)^(m-1)
        sin_prev = torch.cat([torch.zeros_like(tk[:1]), tk[1:lmax].flip(0)])  # Im (u+iw)^(m-1)
        out[1].copy_((pos * cos_prev + neg * sin_prev).sum(0))
        out[2].copy_((neg * cos_prev - pos * sin_prev).sum(0))
    return result


class _UnitHarmonics(torch.autograd.Function):
    """Harmonics of unit vectors ``cuw [3, N]`` with an analytic, twice-differentiable backward."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, cuw: Tensor, r2: Tensor, lmax: int, tables: dict[str, Tensor]
    ) -> Tensor:
        ctx.save_for_backward(cuw, r2)
        ctx.lmax = lmax
        ctx.tables = tables
        return _forward_chunked(lmax, cuw, r2, tables)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        # |r_hat|^2 is held constant: exact for every vector longer than the
        # normalisation eps, where the radial part is projected out by normalize().
        cuw, r2 = ctx.saved_tensors
        if torch.is_grad_enabled():
            # double backward requested: differentiate the plain polynomial form
            with torch.enable_grad():
                tables = {k: v.to(cuw.dtype) for k, v in ctx.tables.items()}
                out = _plain_evaluate(ctx.lmax, cuw, tables, r2).t()
                (grad_cuw,) = torch.autograd.grad(out, cuw, grad, create_graph=True)
            return grad_cuw, None, None, None
        return _vjp_chunked(ctx.lmax, cuw, r2, grad, ctx.tables), None, None, None


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
        normalize: normalise the input vectors first (as e3nn, ``x / max(|x|, 1e-12)``:
            the zero vector maps to the zero vector, with finite gradients).  With
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
        for name, value in _recurrence_tables(lmax, normalization).items():
            self.register_buffer(name, value, persistent=False)

    def forward(self, vectors: Tensor) -> Tensor:
        if vectors.shape[-1] != 3:
            raise ValueError(f"vectors must have shape [..., 3], got {tuple(vectors.shape)}")
        if not vectors.is_floating_point():
            raise TypeError(f"vectors must be a floating-point tensor, got {vectors.dtype}")
        tables = {"a": self.a, "b": self.b, "edge": self.edge, "m": self.m}
        # the chunked kernels work in float64 (one final rounding for float32 input);
        # half precisions are computed in float32
        work = torch.float64 if vectors.dtype in (torch.float32, torch.float64) else torch.float32
        if self.a.dtype != work or self.a.device != vectors.device:
            tables = {k: v.to(device=vectors.device, dtype=work) for k, v in tables.items()}
        lead = vectors.shape[:-1]
        flat = vectors.reshape(-1, 3)
        if self.normalize:
            flat = torch.nn.functional.normalize(flat, dim=-1)
        # e3nn: polar axis y, azimuth in the z-x plane from z towards x
        cuw = flat.t()[[1, 2, 0]]
        r2 = (flat * flat).sum(-1)
        if self.normalize:
            out = _UnitHarmonics.apply(cuw, r2.detach(), self.lmax, tables)
        else:
            tables = {k: v.to(vectors.dtype) for k, v in tables.items()}
            out = _plain_evaluate(self.lmax, cuw, tables, r2).t()
        return out.reshape(*lead, (self.lmax + 1) ** 2)

    def extra_repr(self) -> str:
        return f"lmax={self.lmax}, normalize={self.normalize}, normalization={self.normalization!r}"


def _plain_evaluate(
    lmax: int, cuw: Tensor, tables: dict[str, Tensor], r2: Tensor | None
) -> Tensor:
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
    lmax: int, normalize: bool, normalization: str, dtype: torch.dtype, device: torch.device
) -> SphericalHarmonics:
    return SphericalHarmonics(lmax, normalize, normalization).to(device=device, dtype=dtype)


def spherical_harmonics(
    lmax: int,
    vectors: Tensor,
    normalize: bool = True,
    normalization: str = "integral",
) -> Tensor:
    r"""Functional form of :class:`SphericalHarmonics`: ``[..., 3] -> [..., (lmax+1)**2]``.

    Equal to ``e3nn.o3.spherical_harmonics(list(range(lmax + 1)), vectors, normalize,
    normalization=normalization)`` wherever e3nn is defined (``lmax <= 12``) and defined
    for any ``lmax``.  Constant tables are cached per (lmax, options, dtype, device).
    """
    check_lmax(lmax)
    if not isinstance(vectors, Tensor):
        raise TypeError(f"vectors must be a torch.Tensor, got {type(vectors).__name__}")
    dtype = vectors.dtype if vectors.is_floating_point() else torch.get_default_dtype()
    module = _cached_module(lmax, bool(normalize), normalization, dtype, vectors.device)
    return module(vectors)
