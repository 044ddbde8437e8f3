"""Self-checks of the built-in operations, run by ``geobasis check``.

Each check evaluates one operation on random data in float64 and returns its largest
error and the tolerance it must meet.  The same properties are tested in depth by the
test suite; this is the quick health report a user can run on any machine.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["CheckResult", "CHECKS", "run_checks"]


@dataclass
class CheckResult:
    name: str
    error: float
    tolerance: float

    @property
    def passed(self) -> bool:
        return self.error <= self.tolerance


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _sh_vs_e3nn() -> float:
    from e3nn import o3 as e3o3

    from geobasis.o3 import spherical_harmonics

    x = torch.randn(2000, 3, dtype=torch.float64, generator=_gen())
    return max(
        float(
            (
                spherical_harmonics(l, x)
                - e3o3.spherical_harmonics(list(range(l + 1)), x, True, normalization="integral")
            )
            .abs()
            .max()
        )
        for l in range(0, 12)
    )


def _sh_equivariance() -> float:
    from geobasis.o3 import random_orthogonal, spherical_harmonics, wigner_D

    x = torch.randn(500, 3, dtype=torch.float64, generator=_gen(1))
    R = random_orthogonal(8, dtype=torch.float64, generator=_gen(2))
    lhs = spherical_harmonics(12, torch.einsum("bij,nj->bni", R, x))
    rhs = torch.einsum("bkj,nj->bnk", wigner_D(12, R), spherical_harmonics(12, x))
    return float((lhs - rhs).abs().max())


def _sh_high_degree() -> float:
    from geobasis.o3.s2grid import S2Grid

    grid = S2Grid(24, 30, 60)
    gram = grid.harmonics.t() @ (grid.harmonics * grid.weights[:, None])
    return float((gram - torch.eye(gram.shape[0], dtype=gram.dtype)).abs().max())


def _clebsch_gordan() -> float:
    from geobasis.o3 import clebsch_gordan, random_rotation, wigner_D
    from geobasis.o3.layout import degree_slice

    R = random_rotation(dtype=torch.float64, generator=_gen(3))
    D = wigner_D(4, R)
    err = 0.0
    for l1, l2, l3 in [(1, 1, 1), (2, 2, 3), (2, 3, 4), (3, 3, 2)]:
        C = clebsch_gordan(l1, l2, l3, dtype=torch.float64)
        d1, d2, d3 = (D[degree_slice(l), degree_slice(l)] for l in (l1, l2, l3))
        # sum_ab C_abc (D1 x)_a (D2 y)_b = (D3 sum_ab C_ab. x_a y_b)_c for all x, y
        lhs = torch.einsum("ai,bj,abk->ijk", d1, d2, C)
        rhs = torch.einsum("ck,ijk->ijc", d3, C)
        err = max(err, float((lhs - rhs).abs().max()))
    return err


def _gaunt() -> float:
    from geobasis.o3 import gaunt
    from geobasis.o3.s2grid import S2Grid

    grid = S2Grid(8, 16, 32)
    Y, w = grid.harmonics, grid.weights
    err = 0.0
    for l1, l2, l3 in [(1, 1, 2), (2, 2, 2), (3, 2, 5), (4, 4, 4)]:
        G = gaunt(l1, l2, l3, dtype=torch.float64)
        q = torch.einsum(
            "ga,gb,gc,g->abc",
            Y[:, l1 * l1 : (l1 + 1) ** 2],
            Y[:, l2 * l2 : (l2 + 1) ** 2],
            Y[:, l3 * l3 : (l3 + 1) ** 2],
            w,
        )
        err = max(err, float((G - q).abs().max()))
    return err


def _products_agree() -> float:
    """Gaunt grid == Gaunt Fourier == CG with Gaunt path weights (float64)."""
    from geobasis.products import ClebschGordanProduct, GauntFourierProduct, GauntGridProduct

    gen = _gen(11)
    x1 = torch.randn(5, 16, 3, dtype=torch.float64, generator=gen)
    x2 = torch.randn(5, 9, dtype=torch.float64, generator=gen)
    w = torch.randn(5, 11, 3, dtype=torch.float64, generator=gen)
    grid = GauntGridProduct(3, 2, 3, 3, "external").double()
    fourier = GauntFourierProduct(3, 2, 3, 3, "external").double()
    cg = ClebschGordanProduct(3, 2, 3, 3, "external", paths="even", path_normalization="none")
    reference = cg.double()(x1, x2, grid.clebsch_gordan_weights(w))
    return max(
        float((grid(x1, x2, w) - reference).abs().max()),
        float((fourier(x1, x2, w) - reference).abs().max()),
    )


def _product_equivariance() -> float:
    """CG product (odd paths: pseudotensor output) under a random reflection."""
    from geobasis.o3 import random_orthogonal, wigner_D
    from geobasis.products import ClebschGordanProduct

    gen = _gen(12)
    R = random_orthogonal(dtype=torch.float64, generator=gen)
    while torch.det(R) > 0:
        R = random_orthogonal(dtype=torch.float64, generator=gen)
    product = ClebschGordanProduct(3, 3, 3, 4, "external", paths="odd").double()
    x1 = torch.randn(6, 16, 4, dtype=torch.float64, generator=gen)
    x2 = torch.randn(6, 16, dtype=torch.float64, generator=gen)
    w = torch.randn(6, len(product.paths), 4, dtype=torch.float64, generator=gen)
    D, D_pseudo = wigner_D(3, R), wigner_D(3, R, pseudo=True)
    lhs = product(D @ x1, x2 @ D.t(), w)
    rhs = D_pseudo @ product(x1, x2, w)
    return float((lhs - rhs).abs().max())


def _grid_round_trip() -> float:
    from geobasis.o3 import from_grid, to_grid

    x = torch.randn(4, 81, 3, dtype=torch.float64, generator=_gen(4))
    return float((from_grid(to_grid(x, 8), 8) - x).abs().max())


def _spherical_bessel() -> float:
    from scipy.special import spherical_jn as ref

    from geobasis.radial import spherical_jn_all

    x = torch.logspace(-6, 1.5, 400, dtype=torch.float64)
    ours = spherical_jn_all(8, x)
    exact = torch.stack([torch.from_numpy(ref(l, x.numpy())) for l in range(9)], -1)
    scale = torch.maximum(exact.abs(), 1e-3 / x.clamp(min=1)[:, None])
    return float(((ours - exact).abs() / scale).max())


def _log_bessel() -> float:
    from scipy.special import ive, kve

    from geobasis.radial import log_iv, log_kv

    v = torch.tensor([0.0, 0.5, 3.0, 20.0, 80.0], dtype=torch.float64)[:, None]
    x = torch.tensor([0.01, 0.5, 2.0, 10.0, 60.0], dtype=torch.float64)[None, :]
    ref_i = torch.from_numpy(ive(v.numpy(), x.numpy())).log() + x
    ref_k = torch.from_numpy(kve(v.numpy(), x.numpy())).log() - x
    rel = lambda a, b: ((a - b).abs() / b.abs().clamp(min=1)).max()
    return float(max(rel(log_iv(v, x), ref_i), rel(log_kv(v, x), ref_k)))


def _envelope() -> float:
    from geobasis.radial import PolynomialEnvelope

    env = PolynomialEnvelope(4.0, p=6)
    r = torch.tensor([4.0 - 1e-9], dtype=torch.float64, requires_grad=True)
    f = env(r)
    (d1,) = torch.autograd.grad(f.sum(), r, create_graph=True)
    (d2,) = torch.autograd.grad(d1.sum(), r)
    return float(max(f.abs().max(), d1.abs().max(), d2.abs().max()))


def _radius_graph() -> float:
    from geobasis.graph import radius_graph

    pos = torch.randn(300, 3, dtype=torch.float64, generator=_gen(5)) * 3
    batch = torch.arange(300) // 100
    ours = radius_graph(pos, 2.0, batch)
    d = torch.cdist(pos, pos)
    mask = (d < 2.0) & (batch[:, None] == batch[None, :])
    mask.fill_diagonal_(False)
    return float(
        len({tuple(e) for e in ours.t().tolist()} ^ {(j, i) for i, j in mask.nonzero().tolist()})
    )


def _toy_model_equivariance() -> float:
    from torch_geometric.data import Batch, Data

    from geobasis.testing import check_equivariance
    from geobasis.testing.toy import ToyPotential

    gen = _gen(6)
    batch = Batch.from_data_list(
        [
            Data(
                pos=torch.randn(n, 3, generator=gen) * 1.5,
                z=torch.randint(1, 9, (n,), generator=gen),
            )
            for n in (7, 5)
        ]
    )
    report = check_equivariance(
        ToyPotential(), batch, outputs={"energy": "invariant", "forces": "forces", "features": 2}
    )
    return max(err / max(report.scales[key], 1.0) for key, err in report.errors.items())


def _sfbc() -> float:
    """SFBCConv: periodic translation invariance and an antisymmetric filter by construction."""
    from geobasis.graph import radius_graph
    from geobasis.nn import SFBCConv

    with torch.random.fork_rng():
        torch.manual_seed(0)
        conv = SFBCConv(2, 3, 2, 0.3, "fourier", 5, symmetry="odd", target_features=True)
    conv = conv.double()
    pos = torch.rand(80, 2, dtype=torch.float64, generator=_gen(7)) * 2 - 1
    x = torch.randn(80, 2, dtype=torch.float64, generator=_gen(8))
    cell = 2 * torch.eye(2, dtype=torch.float64)

    def run(p):
        p = torch.remainder(p + 1, 2) - 1
        edge_index, shifts = radius_graph(p, 0.3, loop=True, cell=cell)
        return conv(x, p, edge_index, shifts, cell)

    shifted = run(pos + torch.tensor([0.77, -1.31], dtype=torch.float64))
    q = torch.rand(100, 2, dtype=torch.float64, generator=_gen(9)) * 2 - 1
    return max(
        float((run(pos) - shifted).abs().max()),
        float((conv.filter(-q) + conv.filter(q)).abs().max()),
    )


def _frame_averaging() -> float:
    """FAENet (frame-averaged Cartesian network) on a generic molecule and on ideal benzene
    (degenerate spectrum): relative E(3) x S_n error of energy and forces."""
    import math

    from torch_geometric.data import Batch, Data

    from geobasis.nn import FAENet
    from geobasis.testing import check_equivariance

    angle = torch.arange(6, dtype=torch.float64) * math.pi / 3
    ring = torch.stack([angle.cos(), angle.sin(), torch.zeros(6, dtype=torch.float64)], -1)
    benzene = torch.cat([1.39 * ring, 2.48 * ring])
    gen = _gen(10)
    batch = Batch.from_data_list(
        [
            Data(pos=benzene, z=torch.tensor([6] * 6 + [1] * 6)),
            Data(pos=torch.randn(7, 3, generator=gen, dtype=torch.float64), z=torch.arange(1, 8)),
        ]
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = FAENet(channels=8, num_layers=2)
    report = check_equivariance(model, batch, outputs={"energy": "invariant", "forces": "forces"})
    return max(err / max(report.scales[key], 1.0) for key, err in report.errors.items())


def _spe_basis_invariance() -> float:
    """SPE on the hypercube Q3 (eigenvalue multiplicity 3): change under a random orthogonal
    change of basis inside every repeated eigenspace."""
    from geobasis.pe import SPE, laplacian_eigenpairs

    nodes = torch.arange(8)
    edge_index = torch.cat([torch.stack([nodes, nodes ^ (1 << k)]) for k in range(3)], 1)
    pairs = laplacian_eigenpairs(edge_index, 8)
    values, rotated = pairs.values[0], pairs.vectors.clone()
    labels = torch.round(values * 1e6).long()
    gen = _gen(11)
    for label in labels.unique():
        block = (labels == label).nonzero()[:, 0]
        q, _ = torch.linalg.qr(
            torch.randn(len(block), len(block), generator=gen, dtype=torch.float64)
        )
        rotated[:, block] = pairs.vectors[:, block] @ q
    with torch.random.fork_rng():
        torch.manual_seed(0)
        spe = SPE(8).double()
    a = spe(pairs.vectors, pairs.values, pairs.mask, edge_index)
    b = spe(rotated, pairs.values, pairs.mask, edge_index)
    return float((a - b).abs().max())


CHECKS: list[tuple[str, Callable[[], float], float]] = [
    ("o3.spherical_harmonics == e3nn (l<=11)", _sh_vs_e3nn, 1e-12),
    ("Y(Rx) == D(R) Y(x), O(3), l<=12", _sh_equivariance, 1e-12),
    ("orthonormality on S2 grid, l<=24", _sh_high_degree, 1e-12),
    ("clebsch_gordan equivariance", _clebsch_gordan, 1e-12),
    ("gaunt == quadrature", _gaunt, 1e-12),
    ("from_grid(to_grid(x)) == x, l<=8", _grid_round_trip, 1e-12),
    ("Gaunt grid == Gaunt FFT == Gaunt-weighted CG", _products_agree, 1e-12),
    ("CG product, odd paths: pseudotensor under O(3)", _product_equivariance, 1e-12),
    ("spherical_jn_all vs SciPy (rel)", _spherical_bessel, 1e-10),
    ("log_iv / log_kv vs SciPy (rel)", _log_bessel, 1e-10),
    ("PolynomialEnvelope: f, f', f'' at cutoff", _envelope, 1e-6),
    ("radius_graph == brute force (edge diff)", _radius_graph, 0.0),
    ("SFBCConv: periodic translation, odd filter", _sfbc, 1e-12),
    ("toy SH potential: E(3) x S_n report", _toy_model_equivariance, 1e-10),
    ("FAENet frame averaging, benzene too: E(3) x S_n", _frame_averaging, 1e-10),
    ("SPE: invariant to eigenspace bases (hypercube)", _spe_basis_invariance, 1e-10),
]


def run_checks(progress: bool = True) -> list[CheckResult]:
    """Run every check; return the results (never raises for a failed check)."""
    from tqdm.auto import tqdm

    results = []
    for name, fn, tol in tqdm(CHECKS, desc="geobasis check", disable=not progress, leave=False):
        try:
            err = fn()
        except Exception as exc:  # report, do not hide, a crashing check
            print(f"check {name!r} raised {type(exc).__name__}: {exc}")
            err = math.inf
        results.append(CheckResult(name, err, tol))
    return results
