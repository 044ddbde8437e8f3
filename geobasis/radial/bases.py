r"""One-dimensional bases for distances (radial) and for coordinates (SFBC filters).

Every basis is an ``nn.Module`` mapping ``[...]`` to ``[..., num_basis]`` (the
spherical Bessel basis maps to ``[..., lmax+1, num_basis]``).  Radial bases take
distances :math:`r \in [0, c]`; the coordinate bases (Chebyshev, Fourier, B-spline)
take values on an interval ``[start, end]`` mapped to :math:`s \in [-1, 1]` (Chebyshev,
Fourier) or split into uniform knot spans (B-spline).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor, nn

from geobasis._chunked import block_rows, differentiable_gradients
from geobasis.radial.special import spherical_jn

__all__ = [
    "BesselBasis",
    "SphericalBesselBasis",
    "GaussianBasis",
    "ChebyshevBasis",
    "FourierBasis",
    "BSplineBasis",
    "spherical_bessel_roots",
    "interval_basis",
    "INTERVAL_BASES",
]


def _positive(name: str, value: float) -> float:
    value = float(value)
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return value


def _count(name: str, value: int, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def _interval(start: float, end: float) -> tuple[float, float]:
    start, end = float(start), float(end)
    if not end > start:
        raise ValueError(f"need start < end, got start={start}, end={end}")
    return start, end


def _sinc(t: Tensor) -> Tensor:
    """:math:`\\sin t / t`, smooth to every order at :math:`t = 0` (a Taylor series there;
    ``torch.sinc`` has a NaN second derivative at zero, which a force loss on an edge of
    length zero hits)."""
    small = t.abs() < 1e-2
    safe = torch.where(small, torch.ones_like(t), t)
    t2 = t * t
    series = 1 - t2 / 6 * (1 - t2 / 20 * (1 - t2 / 42))
    return torch.where(small, series, torch.sin(safe) / safe)


class BesselBasis(nn.Module):
    r"""DimeNet's radial Bessel basis :math:`e_n(r) = \sqrt{2/c}\ \sin(n\pi r/c)/r`.

    :math:`n = 1..N`; orthonormal on :math:`[0, c]` with weight :math:`r^2`.  Finite at
    :math:`r = 0` with the limit :math:`\sqrt{2/c}\ n\pi/c`, smooth through 0.  With
    :math:`\theta = \pi r / c` it is evaluated as

    .. math::
        \frac{\sin n\theta}{r} = U_{n-1}(\cos\theta)\, \frac{\sin\theta}{r},

    :math:`U` the Chebyshev polynomials of the second kind (three-term recurrence): one
    cosine and one sinc per distance instead of one sine per function (on CPU; on a GPU,
    where kernel launches dominate, and with ``trainable=True``, where the frequencies
    :math:`f_n = n\pi/c` are parameters, the functions :math:`f_n\,\mathrm{sinc}(f_n r)`
    are evaluated one by one).
    Shapes: ``r [...]`` -> ``[..., num_basis]``.

    Reference: Gasteiger, Groß & Günnemann, "Directional Message Passing for Molecular
    Graphs" (DimeNet, ICLR 2020).
    """

    def __init__(self, num_basis: int, cutoff: float, trainable: bool = False) -> None:
        super().__init__()
        self.num_basis = _count("num_basis", num_basis)
        self.cutoff = _positive("cutoff", cutoff)
        freq = torch.arange(1, num_basis + 1, dtype=torch.float64) * math.pi / self.cutoff
        self.trainable = trainable
        if trainable:
            self.frequencies = nn.Parameter(freq.to(torch.get_default_dtype()))
        else:  # exact in float64, cast to the input's dtype on use
            self.register_buffer("frequencies", freq)
        self.prefactor = math.sqrt(2.0 / self.cutoff)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Frequencies back to :math:`n\\pi/c`."""
        n = torch.arange(1, self.num_basis + 1, dtype=torch.float64)
        self.frequencies.copy_(n * math.pi / self.cutoff)

    def forward(self, r: Tensor) -> Tensor:
        if self.trainable or r.device.type != "cpu":
            # one sine per function: fewer, larger kernels, faster where launches dominate
            # (a training step on an H200: 7% faster than the recurrence below)
            freq = self.frequencies.to(r.dtype)
            return self.prefactor * freq * _sinc(r.unsqueeze(-1) * freq)
        # sin(n theta) / r = U_{n-1}(cos theta) sin(theta) / r, theta = pi r / c: one cos and
        # one sinc per distance, then the recurrence U_n = 2 cos(theta) U_{n-1} - U_{n-2}
        theta = r * (math.pi / self.cutoff)
        twice_cos = 2 * torch.cos(theta)
        scale = (self.prefactor * math.pi / self.cutoff) * _sinc(theta)
        rows = [scale, twice_cos * scale]  # the recurrence is linear: scaled from the start
        for _ in range(self.num_basis - 2):
            rows.append(twice_cos * rows[-1] - rows[-2])
        return torch.stack(rows[: self.num_basis], -1)

    def extra_repr(self) -> str:
        return f"num_basis={self.num_basis}, cutoff={self.cutoff}"


@lru_cache(maxsize=32)
def _roots_table(lmax: int, num_roots: int) -> np.ndarray:
    """First ``num_roots`` positive roots of :math:`j_l` for ``l = 0..lmax`` (float64)."""
    from scipy import optimize, special  # imported here: keeps `import geobasis` fast

    count = num_roots + lmax + 1
    roots = [np.arange(1, count + 1) * np.pi]  # j_0 = sin x / x
    for l in range(1, lmax + 1):
        prev = roots[-1]
        f = lambda x, l=l: special.spherical_jn(l, x)
        # roots of j_l interlace with those of j_(l-1)
        roots.append(
            np.array(
                [optimize.brentq(f, prev[i], prev[i + 1], xtol=1e-15) for i in range(len(prev) - 1)]
            )
        )
    return np.stack([r[:num_roots] for r in roots])


def spherical_bessel_roots(lmax: int, num_roots: int) -> Tensor:
    """``[lmax+1, num_roots]`` positive roots :math:`z_{ln}` of :math:`j_l` (float64, cached)."""
    return torch.from_numpy(_roots_table(lmax, num_roots).copy())


# The table's coefficients are kept while any column's exceeds this fraction of its
# largest: the Chebyshev coefficients computed in float64 level off near 1e-14.
_CHEBYSHEV_TAIL = 5e-14


def _double_factorial_odd(l: int) -> float:
    r""":math:`(2l+1)!! = 1 \cdot 3 \cdots (2l+1)`."""
    return float(np.prod(np.arange(1, 2 * l + 2, 2, dtype=np.float64)))


@lru_cache(maxsize=32)
def _chebyshev_table(lmax: int, num_basis: int) -> tuple[np.ndarray, np.ndarray, float]:
    r"""``(coefficients [D, (lmax+1) * num_basis], betas [lmax+1], error)`` of the
    unit-cutoff basis, ``error`` its largest relative error (:func:`_table_error`).

    Column ``(l, n)`` holds the Chebyshev coefficients in :math:`s = 2t - 1` of
    :math:`G_{ln}(t) = e^{\beta_l t}\, j_l(z_{ln}\sqrt t) / t^{l/2}` on
    :math:`t \in [0, 1]`, so that :math:`j_l(z_{ln} x) = x^l e^{-\beta_l x^2}
    \sum_k c_{k,ln} T_k(2x^2 - 1)`.  :math:`G` is entire in :math:`t`; the factor
    :math:`x^l` carries the small-argument behaviour exactly and
    :math:`\beta_l = \max(0, \ln(z_{l,N}^{l+1} / (2l+1)!!))` balances the decay of
    :math:`j_l(y)/y^l` (from :math:`1/(2l+1)!!` at 0 to about :math:`y^{-l-1}`), which
    would otherwise cost up to six digits of relative accuracy near the cutoff.
    """
    roots = _roots_table(lmax, num_basis)
    nodes = 2 * int(roots.max()) + 96
    k = np.arange(nodes)
    t = (np.cos(np.pi * (k + 0.5) / nodes) + 1) / 2  # Chebyshev points of the first kind
    x = np.sqrt(t)
    # DCT-II: values at the points -> Chebyshev coefficients
    dct = (2 / nodes) * np.cos(np.pi * np.outer(k, k + 0.5) / nodes)
    dct[0] /= 2
    betas = np.array(
        [
            max(0.0, math.log(roots[l, -1] ** (l + 1) / _double_factorial_odd(l)))
            for l in range(lmax + 1)
        ]
    )
    y = torch.from_numpy(roots[:, :, None] * x)  # [lmax+1, N, nodes]
    values = np.stack([spherical_jn(l, y[l]).numpy() for l in range(lmax + 1)])
    values = values / x ** np.arange(lmax + 1)[:, None, None] * np.exp(betas[:, None, None] * t)
    coefficients = dct @ values.reshape(-1, nodes).T  # [nodes, (lmax+1) * N]
    relative = np.abs(coefficients) / np.abs(coefficients).max(0)
    degree = int(np.nonzero((relative > _CHEBYSHEV_TAIL).any(1))[0].max()) + 1
    coefficients = coefficients[: min(degree, nodes // 2)]
    return coefficients, betas, _table_error(coefficients, betas, roots)


def _table_error(coefficients: np.ndarray, betas: np.ndarray, roots: np.ndarray) -> float:
    """Largest relative error of the table against the recurrence on 600 points of
    :math:`x \\in [10^{-6}, 1]`, away from the zeros of :math:`j_l` (where the function
    exceeds 1e-4 of its largest value)."""
    lmax = roots.shape[0] - 1
    x = np.concatenate([np.logspace(-6, 0, 300), np.linspace(0.002, 1, 300)])
    series = np.polynomial.chebyshev.chebval(2 * x * x - 1, coefficients)  # [(lmax+1) N, x]
    table = series.reshape(lmax + 1, -1, x.size) * x ** np.arange(lmax + 1)[:, None, None]
    table = table * np.exp(-np.outer(betas, x * x))[:, None, :]
    y = torch.from_numpy(roots[:, :, None] * x)
    exact = np.stack([spherical_jn(l, y[l]).numpy() for l in range(lmax + 1)])
    mask = np.abs(exact) > 1e-4 * np.abs(exact).max(-1, keepdims=True)
    mask &= np.abs(exact) > 1e-300
    return float((np.abs(table - exact)[mask] / np.abs(exact)[mask]).max())


def _chebyshev_terms(s: Tensor, degree: int) -> list[Tensor]:
    """:math:`T_0(s), \\dots, T_{degree-1}(s)` by :math:`T_{k+1} = 2 s T_k - T_{k-1}`
    (differentiable operations)."""
    terms = [torch.ones_like(s), s]
    for _ in range(degree - 2):
        terms.append(2 * s * terms[-1] - terms[-2])
    return terms[:degree]


def _chebyshev_rows(s: Tensor, degree: int) -> Tensor:
    r"""``[degree, ...]``: :math:`T_k(s)` for ``k < degree``.

    Without autograd, written in place by doubling,
    :math:`T_{m+j} = 2\,T_m T_j - T_{m-j}` for :math:`j = 1..m`: rows ``m+1..2m`` in one
    operation, so about :math:`3 \log_2 D` operations instead of :math:`2D`.  With
    gradients needed, the three-term recurrence from differentiable operations (autograd
    then also gives second derivatives).
    """
    if torch.is_grad_enabled() and s.requires_grad:
        return torch.stack(_chebyshev_terms(s, degree))
    rows = s.new_empty(degree, *s.shape)
    rows[0] = 1
    if degree > 1:
        rows[1] = s
    top = 1  # rows 0..top are filled
    while top < degree - 1:
        count = min(top, degree - 1 - top)
        below = rows[top - count : top].flip(0)  # T_{top-j}, j = 1..count
        torch.addcmul(below.neg_(), rows[top], rows[1 : count + 1], value=2,
                      out=rows[top + 1 : top + 1 + count])  # fmt: skip
        top += count
    return rows


def _powers(x: Tensor, count: int) -> Tensor:
    """``[E, count]``: :math:`x^0, \\dots, x^{count-1}` by a cumulative product (no autograd
    through it: ``_weight`` builds differentiable powers)."""
    columns = x.unsqueeze(-1).repeat(1, count)
    columns[:, 0] = 1
    return torch.cumprod(columns, -1)


class _ChebyshevTable(torch.autograd.Function):
    """The table form with a written-out backward (two GEMMs with the same Chebyshev rows,
    no autograd graph over the recurrence); second derivatives differentiate the plain
    form (:func:`~geobasis._chunked.differentiable_gradients`)."""

    @staticmethod
    def forward(ctx, x: Tensor, basis: SphericalBesselBasis, dtype: torch.dtype) -> Tensor:  # noqa: D102
        ctx.basis, ctx.dtype = basis, dtype
        ctx.save_for_backward(x)
        return basis._table_blocks(x, dtype)  # autograd is off in here: rows in place

    @staticmethod
    def backward(ctx, grad: Tensor):  # noqa: D102
        (x,) = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True
            plain = lambda t: ctx.basis._table(t).to(ctx.dtype)  # noqa: E731
            return differentiable_gradients(plain, (x,), (True,), grad)[0], None, None
        return ctx.basis._table_gradient(x, grad), None, None


class SphericalBesselBasis(nn.Module):
    r"""Spherical Bessel basis :math:`\sqrt{2/c^3}\ j_l(z_{ln} r / c) / |j_{l+1}(z_{ln})|`.

    :math:`z_{ln}` is the n-th positive root of :math:`j_l`, so every function vanishes at
    the cutoff, and for each :math:`l` the set is orthonormal on :math:`[0, c]` with
    weight :math:`r^2`.  Shapes: ``r [...]`` -> ``[..., lmax+1, num_basis]``.

    ``method="chebyshev"``: for :math:`x = r/c \in [-1, 1]` every function is

    .. math::
        j_l(z_{ln} x) = x^l\, e^{-\beta_l x^2} \sum_{k<D} c_{k,ln}\, T_k(2x^2 - 1),

    a float64 table fitted once (Chebyshev interpolation of an entire function, see
    ``_chebyshev_table``), so the whole basis is one GEMM of :math:`D = 16\text{–}40`
    Chebyshev rows (``lmax, num_basis <= 16``) with the table.  The factor :math:`x^l`
    is exact, so the relative accuracy holds as :math:`r \to 0`, where the closed forms
    used by DimeNet implementations cancel catastrophically: one rounding in float32; in
    float64
    :math:`10^{-11}` to :math:`4 \cdot 10^{-9}` relative up to ``lmax = num_basis = 16``
    (away from the zeros of :math:`j_l`), worse above (:math:`3 \cdot 10^{-6}` at 24).
    The table checks itself once against the recurrence (``table_error``).  Distances
    beyond the cutoff use the recurrence.  ``method="recurrence"``:
    :func:`~geobasis.radial.spherical_jn` everywhere (a few ulp in float64, slower).
    ``method="auto"`` (default): the table where ``table_error <= TABLE_TOLERANCE``
    (2e-8), else the recurrence.

    Reference: DimeNet (Gasteiger et al., ICLR 2020), spherical basis radial part.
    """

    METHODS = ("auto", "chebyshev", "recurrence")
    #: Largest relative error of the table for which ``method="auto"`` takes it.
    TABLE_TOLERANCE = 2e-8

    def __init__(self, lmax: int, num_basis: int, cutoff: float, method: str = "auto") -> None:
        super().__init__()
        self.lmax = _count("lmax", lmax, 0)
        self.num_basis = _count("num_basis", num_basis)
        self.cutoff = _positive("cutoff", cutoff)
        if method not in self.METHODS:
            raise ValueError(f"method must be one of {self.METHODS}, got {method!r}")
        from scipy import special

        roots = spherical_bessel_roots(lmax, num_basis)
        norm = np.sqrt(2.0 / self.cutoff**3) / np.abs(
            np.stack([special.spherical_jn(l + 1, roots[l].numpy()) for l in range(lmax + 1)])
        )
        self.register_buffer("roots", roots)
        self.register_buffer("norm", torch.from_numpy(norm))
        coefficients, betas, self.table_error = _chebyshev_table(lmax, num_basis)
        if method == "auto":
            method = "chebyshev" if self.table_error <= self.TABLE_TOLERANCE else "recurrence"
        self.method = method
        self.register_buffer("coefficients", torch.from_numpy(coefficients * norm.reshape(1, -1)))
        self.register_buffer("betas", torch.from_numpy(betas))
        # d/ds of the series, as Chebyshev coefficients (degree D - 2)
        slope = np.polynomial.chebyshev.chebder(coefficients * norm.reshape(1, -1), axis=0)
        self.register_buffer("derivative", torch.from_numpy(slope))
        self.register_buffer("degrees", torch.arange(lmax + 1, dtype=torch.float64))

    def _recurrence(self, x: Tensor) -> Tensor:
        """``[..., lmax+1, N]`` in float64 from ``x = r/c`` (float64)."""
        x = x.unsqueeze(-1)
        orders = [spherical_jn(l, x * self.roots[l]) for l in range(self.lmax + 1)]
        return torch.stack(orders, dim=-2) * self.norm

    def _series(self, s: Tensor) -> Tensor:
        r"""``[E, lmax+1, N]``: :math:`\sum_k c_{k,ln} T_k(s)` (float64, ``s = 2x^2 - 1``)."""
        rows = _chebyshev_rows(s, self.coefficients.shape[0])  # [D, E]
        return (rows.t() @ self.coefficients).view(-1, self.lmax + 1, self.num_basis)

    def _weight(self, x: Tensor) -> Tensor:
        """``[E, lmax+1]``: :math:`x^l e^{-\\beta_l x^2}`."""
        decay = torch.exp(-(x * x).unsqueeze(-1) * self.betas)
        if torch.is_grad_enabled() and x.requires_grad:
            # products, not pow or log: every derivative stays finite at x = 0
            powers = [torch.ones_like(x)]
            for _ in range(self.lmax):
                powers.append(powers[-1] * x)
            return torch.stack(powers, -1) * decay
        return _powers(x, self.lmax + 1) * decay

    def _weight_and_derivative(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``[E, lmax+1]`` twice (no autograd): :math:`w = x^l e^{-\\beta_l x^2}` and
        :math:`w' = (l x^{l-1} - 2\\beta_l x^{l+1})\\, e^{-\\beta_l x^2}`."""
        decay = torch.exp(-(x * x).unsqueeze(-1) * self.betas)
        powers = _powers(x, self.lmax + 2)  # x^0 .. x^(lmax+1)
        below = torch.cat([powers[:, :1], powers[:, : self.lmax]], -1)  # l = 0: times l = 0
        weight = powers[:, : self.lmax + 1] * decay
        slope = (self.degrees * below - 2 * self.betas * powers[:, 1:]) * decay
        return weight, slope

    def _table(self, x: Tensor) -> Tensor:
        """``[E, lmax+1, N]`` float64 by the table (``|x| <= 1``); differentiable when
        gradients are on (the plain form :class:`_ChebyshevTable` falls back to)."""
        return self._series(2 * x * x - 1) * self._weight(x).unsqueeze(-1)

    def _table_gradient(self, x: Tensor, grad: Tensor) -> Tensor:
        """``[E]``: the gradient to ``x`` of the table form, block by block."""
        out = torch.empty_like(x)
        for lo, hi in self._blocks(x):
            out[lo:hi] = self._block_gradient(x[lo:hi], grad[lo:hi].to(torch.float64))
        return out

    def _block_gradient(self, x: Tensor, grad: Tensor) -> Tensor:
        r"""``[E]``: :math:`\sum_{ln} g_{ln}\, \partial_x f_{ln}`, with
        :math:`f = w(x) P(s)`, :math:`s = 2x^2 - 1`: :math:`\partial_x f = w' P + 4x\, w P'`,
        :math:`P'` from the same Chebyshev rows and the derivative table."""
        s = 2 * x * x - 1
        rows = _chebyshev_rows(s, self.coefficients.shape[0])  # [D, E]
        shape = (-1, self.lmax + 1, self.num_basis)
        series = (rows.t() @ self.coefficients).view(shape)
        slope = (rows[: self.derivative.shape[0]].t() @ self.derivative).view(shape)
        along_series = (grad * series).sum(-1)  # [E, lmax+1]
        along_slope = (grad * slope).sum(-1)
        weight, weight_slope = self._weight_and_derivative(x)
        return (along_series * weight_slope).sum(-1) + 4 * x * (along_slope * weight).sum(-1)

    def _blocks(self, x: Tensor) -> list[tuple[int, int]]:
        """Ranges of distances whose float64 work stays in the CPU's cache (fresh 10-20 MB
        temporaries cost page faults); one block on a GPU unless memory requires more."""
        width = self.coefficients.shape[0] + 2 * self.coefficients.shape[1]
        size = block_rows(x.shape[0], 8 * width, x.device, max(1024, (1 << 19) // width))
        return [(lo, min(lo + size, x.shape[0])) for lo in range(0, x.shape[0], size)]

    def _table_blocks(self, x: Tensor, dtype: torch.dtype) -> Tensor:
        """``[E, lmax+1, N]`` in ``dtype`` by the table, block by block (no autograd)."""
        s, weight = 2 * x * x - 1, self._weight(x)
        out = torch.empty(x.shape[0], self.lmax + 1, self.num_basis, dtype=dtype, device=x.device)
        for lo, hi in self._blocks(x):
            out[lo:hi] = self._series(s[lo:hi]).mul_(weight[lo:hi].unsqueeze(-1))
        return out

    def forward(self, r: Tensor) -> Tensor:
        x = r.to(torch.float64).reshape(-1) / self.cutoff
        shape = (*r.shape, self.lmax + 1, self.num_basis)
        if self.method == "recurrence":
            return self._recurrence(x).to(r.dtype).view(shape)
        outside = x.abs() > 1  # the table is a fit on |x| <= 1: the recurrence there
        inside = torch.where(outside, torch.zeros_like(x), x)
        if torch.is_grad_enabled() and x.requires_grad:
            out = _ChebyshevTable.apply(inside, self, r.dtype)
        else:
            out = self._table_blocks(inside, r.dtype)
        if outside.any():  # the recurrence for those distances only
            where = outside.nonzero().squeeze(1)
            out = out.index_put((where,), self._recurrence(x[where]).to(r.dtype))
        return out.view(shape)

    def extra_repr(self) -> str:
        return (
            f"lmax={self.lmax}, num_basis={self.num_basis}, cutoff={self.cutoff}, "
            f"method={self.method!r}"
        )


class GaussianBasis(nn.Module):
    r"""Gaussian radial basis :math:`\exp(-(r - \mu_k)^2 / (2\sigma^2))`.

    Centres :math:`\mu_k` evenly spaced on ``[start, end]``; width :math:`\sigma` the
    spacing unless given.  ``trainable`` makes centres and width parameters.
    Shapes: ``r [...]`` -> ``[..., num_basis]``.

    Reference: Schütt et al., "SchNet" (NeurIPS 2017).
    """

    def __init__(
        self,
        num_basis: int,
        end: float,
        start: float = 0.0,
        width: float | None = None,
        trainable: bool = False,
    ) -> None:
        super().__init__()
        self.num_basis = _count("num_basis", num_basis)
        self.start, self.end = _interval(start, end)
        centres = torch.linspace(self.start, self.end, num_basis, dtype=torch.float64)
        spacing = (self.end - self.start) / max(num_basis - 1, 1)
        sigma = torch.tensor(
            _positive("width", width) if width is not None else spacing, dtype=torch.float64
        )
        if trainable:
            self.centres = nn.Parameter(centres.to(torch.get_default_dtype()))
            self.width = nn.Parameter(sigma.to(torch.get_default_dtype()))
        else:
            self.register_buffer("centres", centres)
            self.register_buffer("width", sigma)
        self._initial = (centres, sigma)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Centres and width back to their initial (evenly spaced) values."""
        self.centres.copy_(self._initial[0])
        self.width.copy_(self._initial[1])

    def forward(self, r: Tensor) -> Tensor:
        diff = r.unsqueeze(-1) - self.centres.to(r.dtype)
        return torch.exp(-0.5 * (diff / self.width.to(r.dtype)) ** 2)

    def extra_repr(self) -> str:
        return f"num_basis={self.num_basis}, start={self.start}, end={self.end}"


class _IntervalBasis(nn.Module):
    """Shared mapping of ``[start, end]`` onto ``s in [-1, 1]``."""

    def __init__(self, num_basis: int, start: float, end: float) -> None:
        super().__init__()
        self.num_basis = _count("num_basis", num_basis)
        self.start, self.end = _interval(start, end)

    def to_unit(self, x: Tensor) -> Tensor:
        return 2 * (x - self.start) / (self.end - self.start) - 1

    def extra_repr(self) -> str:
        return f"num_basis={self.num_basis}, start={self.start}, end={self.end}"


class ChebyshevBasis(_IntervalBasis):
    r"""Chebyshev polynomials of the first kind :math:`T_k(s)`, :math:`k = 0..N-1`.

    :math:`T_0 = 1, T_1 = s, T_{k+1} = 2 s T_k - T_{k-1}`; :math:`T_k(-s) = (-1)^k
    T_k(s)`.  Shapes: ``x [...]`` -> ``[..., num_basis]``.

    Reference: Mason & Handscomb, "Chebyshev Polynomials" (2003); used as a filter basis
    by SFBC (Winchenbach & Thuerey, ICLR 2024).
    """

    def __init__(self, num_basis: int, start: float = -1.0, end: float = 1.0) -> None:
        super().__init__(num_basis, start, end)

    def forward(self, x: Tensor) -> Tensor:
        return torch.stack(_chebyshev_terms(self.to_unit(x), self.num_basis), dim=-1)


class FourierBasis(_IntervalBasis):
    r"""Fourier basis on :math:`s \in [-1, 1]`, orthonormal in :math:`L^2([-1, 1])`.

    * ``"full"``: :math:`1/\sqrt2, \cos\pi s, \sin\pi s, \cos 2\pi s, \sin 2\pi s, \dots`
    * ``"even"``: :math:`1/\sqrt2, \cos\pi s, \cos 2\pi s, \dots` (:math:`b(-s) = b(s)`)
    * ``"odd"``: :math:`\sin\pi s, \sin 2\pi s, \dots` (:math:`b(-s) = -b(s)`)

    The three families of SFBC; its paper finds the symmetry of the basis decides what a
    convolution can learn.  Shapes: ``x [...]`` -> ``[..., num_basis]``.

    Reference: Winchenbach & Thuerey, "Symmetric Basis Convolutions for Learning
    Lagrangian Fluid Mechanics" (ICLR 2024).
    """

    FAMILIES = ("full", "even", "odd")

    def __init__(
        self, num_basis: int, family: str = "full", start: float = -1.0, end: float = 1.0
    ) -> None:
        super().__init__(num_basis, start, end)
        if family not in self.FAMILIES:
            raise ValueError(f"family must be one of {self.FAMILIES}, got {family!r}")
        self.family = family
        kinds, freqs = [], []  # kind 0: constant, 1: cos, 2: sin
        if family == "full":
            for i in range(num_basis):
                kinds.append(0 if i == 0 else (1 if i % 2 else 2))
                freqs.append((i + 1) // 2)
        elif family == "even":
            kinds = [0] + [1] * (num_basis - 1)
            freqs = list(range(num_basis))
        else:
            kinds = [2] * num_basis
            freqs = list(range(1, num_basis + 1))
        self.register_buffer("kinds", torch.tensor(kinds))
        self.register_buffer("freqs", torch.tensor(freqs, dtype=torch.float64))

    def forward(self, x: Tensor) -> Tensor:
        angle = math.pi * self.to_unit(x).unsqueeze(-1) * self.freqs.to(x.dtype)
        const = torch.full_like(angle, 1 / math.sqrt(2))
        return torch.where(
            self.kinds == 0, const, torch.where(self.kinds == 1, torch.cos(angle), torch.sin(angle))
        )

    def extra_repr(self) -> str:
        return super().extra_repr() + f", family={self.family!r}"


@lru_cache(maxsize=16)
def _cardinal_bspline_matrix(degree: int) -> np.ndarray:
    r"""``M [degree+1, degree+1]``: piece ``j`` of the cardinal B-spline is ``sum_k M[j,k] t^k``.

    Built once by evaluating the Cox–de Boor recursion at ``degree+1`` points per piece
    and solving the Vandermonde system.
    """

    def cardinal(u: float, p: int) -> float:
        if p == 0:
            return 1.0 if 0 <= u < 1 else 0.0
        return (u * cardinal(u, p - 1) + (p + 1 - u) * cardinal(u - 1, p - 1)) / p

    ts = (np.arange(degree + 1) + 0.5) / (degree + 1)
    vander = np.vander(ts, degree + 1, increasing=True)
    return np.stack(
        [np.linalg.solve(vander, [cardinal(j + t, degree) for t in ts]) for j in range(degree + 1)]
    )


class BSplineBasis(_IntervalBasis):
    r"""Uniform B-splines of a given degree, evaluated in matrix form.

    ``num_basis`` splines :math:`B_i(x) = N_p((x - t_i)/h)` on uniform knots
    :math:`t_i = a + (i - p) h`, :math:`h = (b - a)/(N - p)`, so they form a partition of
    unity on :math:`[a, b]`.  For :math:`x` in knot span :math:`s` with local coordinate
    :math:`t \in [0, 1)`, the :math:`p + 1` nonzero values are
    :math:`B_{s+p-j}(x) = \sum_k M_{jk} t^k` — one small matrix product, no recursion
    over degrees at run time.  Degree 1 gives the "linear" (hat) basis of SFBC.
    Input is clamped to ``[start, end]``.  Shapes: ``x [...]`` -> ``[..., num_basis]``.

    Reference: de Boor, "A Practical Guide to Splines" (1978); Qin, "General matrix
    representations for B-splines" (1998).
    """

    def __init__(
        self, num_basis: int, degree: int = 3, start: float = 0.0, end: float = 1.0
    ) -> None:
        super().__init__(num_basis, start, end)
        self.degree = _count("degree", degree, 0)
        if num_basis <= degree:
            raise ValueError(
                f"num_basis must exceed degree, got num_basis={num_basis}, degree={degree}"
            )
        self.num_spans = num_basis - degree
        self.register_buffer("matrix", torch.from_numpy(_cardinal_bspline_matrix(degree)))

    def forward(self, x: Tensor) -> Tensor:
        p = self.degree
        u = (x.clamp(self.start, self.end) - self.start) / (self.end - self.start) * self.num_spans
        span = torch.clamp(torch.floor(u.detach()), max=self.num_spans - 1)
        t = u - span
        powers = torch.stack([t**k for k in range(p + 1)], dim=-1)  # [..., p+1]
        local = powers @ self.matrix.to(x.dtype).t()  # [..., p+1], piece j
        index = span.long().unsqueeze(-1) + p - torch.arange(p + 1, device=x.device)
        out = x.new_zeros((*x.shape, self.num_basis))
        return out.scatter(-1, index, local)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", degree={self.degree}"


#: Names accepted by :func:`interval_basis` (the SFBC filter families).
INTERVAL_BASES = (
    "fourier",
    "fourier_even",
    "fourier_odd",
    "chebyshev",
    "linear",
    "bspline",
    "gaussian",
)


def interval_basis(name: str, num_basis: int, start: float = -1.0, end: float = 1.0) -> nn.Module:
    r"""A 1-D basis on ``[start, end]`` by name, for separable filters (SFBC).

    ``"fourier"`` / ``"fourier_even"`` / ``"fourier_odd"``: :class:`FourierBasis` full / even
    (:math:`b(-s) = b(s)`) / odd (:math:`b(-s) = -b(s)`); ``"chebyshev"``:
    :class:`ChebyshevBasis` (:math:`T_k(-s) = (-1)^k T_k(s)`); ``"linear"``: hat functions
    (:class:`BSplineBasis` of degree 1); ``"bspline"``: cubic :class:`BSplineBasis`;
    ``"gaussian"``: :class:`GaussianBasis` with centres spread over the interval.  On the
    symmetric interval ``[-1, 1]`` the last three are mirror-symmetric as a set,
    :math:`b_k(-s) = b_{N-1-k}(s)`, but no single function is even or odd.

    Reference: Winchenbach & Thuerey, "Symmetric Basis Convolutions for Learning
    Lagrangian Fluid Mechanics" (ICLR 2024), section 3.
    """
    if name not in INTERVAL_BASES:
        raise ValueError(f"unknown basis {name!r}; choose one of {INTERVAL_BASES}")
    if name.startswith("fourier"):
        family = "full" if name == "fourier" else name.split("_")[1]
        return FourierBasis(num_basis, family, start, end)
    if name == "chebyshev":
        return ChebyshevBasis(num_basis, start, end)
    if name == "linear":
        return BSplineBasis(num_basis, 1, start, end)
    if name == "bspline":
        return BSplineBasis(num_basis, 3, start, end)
    return GaussianBasis(num_basis, end, start)
