"""SFBCConv: explicit per-pair filter, symmetries, invariances, gradients, periodicity, errors."""

import itertools

import pytest
import torch
from torch_geometric.data import Data

from geobasis.data import simulate_sph_1d
from geobasis.graph import radius_graph
from geobasis.nn import SFBCConv
from geobasis.radial import INTERVAL_BASES, interval_basis
from geobasis.testing import assert_equivariant


@pytest.fixture(autouse=True)
def _float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def _points(n, dim, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, dim, generator=g), torch.randn(n, 3, generator=g)


def _explicit(conv, x, pos, edge_index, radius, shifts=None, cell=None):
    """Per-pair sum with the filter built term by term from the 1-D bases."""
    out = torch.zeros(pos.shape[0], conv.out_channels)
    bases = [interval_basis(conv.basis_name, n) for n in conv.num_basis]
    for e, (j, i) in enumerate(edge_index.t().tolist()):
        image = pos[j] if shifts is None else pos[j] + shifts[e].to(pos.dtype) @ cell
        q = (pos[i] - image) / radius
        values = [b(q[a : a + 1])[0] for a, b in enumerate(bases)]
        filt = torch.zeros(conv.message_channels, conv.out_channels)
        for k, index in enumerate(itertools.product(*[range(n) for n in conv.num_basis])):
            term = torch.prod(torch.stack([values[a][index[a]] for a in range(conv.dim)]))
            filt = filt + term * conv.weight[k]
        features = torch.cat([x[j], x[i]]) if conv.target_features else x[j]
        out[i] += features @ filt
    if conv.root is not None:
        out += conv.root(x)
    return out + conv.bias


@pytest.mark.parametrize("per_edge", [True, False])
@pytest.mark.parametrize("basis", INTERVAL_BASES)
@pytest.mark.parametrize("dim", [1, 2, 3])
def test_equals_explicit_per_pair_sum(basis, dim, per_edge):
    n, radius = 24, 0.45
    pos, _ = _points(n, dim, seed=dim)
    x = torch.randn(n, 2)
    edge_index = radius_graph(pos, radius, loop=True)
    sizes = (4, 3, 5)[:dim] if basis not in ("linear", "bspline") else (5, 6, 4)[:dim]
    conv = SFBCConv(2, 3, dim, radius, basis, sizes, target_features=dim == 2, root_weight=True)
    torch.nn.init.normal_(conv.bias)
    conv.contract_per_edge = per_edge  # both evaluation orders
    got = conv(x, pos, edge_index)
    assert torch.allclose(got, _explicit(conv, x, pos, edge_index, radius), atol=1e-12)


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("basis", ["fourier", "chebyshev", "bspline"])
def test_symmetry_options_by_construction(dim, basis):
    q = torch.rand(50, dim) * 2 - 1
    for symmetry, sign in (("even", 1), ("odd", -1)):
        conv = SFBCConv(2, 3, dim, 1.0, basis, 4 if basis != "bspline" else 5, symmetry=symmetry)
        assert torch.allclose(conv.filter(-q), sign * conv.filter(q), atol=1e-13)
        assert conv.filter(q).abs().max() > 1e-3  # not trivially zero


@pytest.mark.parametrize(
    "options",
    [
        {"symmetry": "odd"},
        {"symmetry": "even"},
        {"window": "cosine"},
        {"window": "wendland", "symmetry": "odd"},
    ],
)
def test_both_evaluation_orders_agree_with_symmetry_and_window(options):
    pos, _ = _points(40, 3, seed=5)
    edge_index = radius_graph(pos, 0.5, loop=True)
    x = torch.randn(40, 2)
    conv = SFBCConv(2, 3, 3, 0.5, "chebyshev", (3, 4, 2), target_features=True, **options)
    conv.contract_per_edge = True
    edge = conv(x, pos, edge_index)
    conv.contract_per_edge = False
    assert torch.allclose(edge, conv(x, pos, edge_index), atol=1e-12)


def test_edge_blocks_give_the_same_values_and_gradients():
    pos, _ = _points(60, 2, seed=6)
    edge_index = radius_graph(pos, 0.4, loop=True)
    x = torch.randn(60, 3)
    conv = SFBCConv(3, 2, 2, 0.4, "fourier", 4, window="cosine", symmetry="odd")

    def run(chunk):
        conv.zero_grad()
        conv.edge_chunk_size = chunk
        p, f = pos.clone().requires_grad_(), x.clone().requires_grad_()
        out = conv(f, p, edge_index)
        out.square().sum().backward()
        return out, p.grad, f.grad, conv.weight.grad.clone()

    whole, blocks = run(10**6), run(7)  # 7: many blocks, a ragged last one
    assert edge_index.shape[1] > 100
    for a, b in zip(whole, blocks):
        assert torch.allclose(a, b, atol=1e-12)
    small, _ = _points(10, 2, seed=7)
    small_edges = radius_graph(small, 0.4)
    conv.edge_chunk_size = 5
    p, f = small.clone().requires_grad_(), torch.randn(10, 3, requires_grad=True)
    assert small_edges.shape[1] > 10
    assert torch.autograd.gradcheck(lambda f, p: conv(f, p, small_edges), (f, p))
    assert torch.autograd.gradgradcheck(lambda f, p: conv(f, p, small_edges), (f, p))


def test_fourier_families_have_their_parity():
    q1 = torch.rand(40, 1) * 2 - 1
    even = SFBCConv(1, 2, 1, 1.0, "fourier_even", 6)
    odd = SFBCConv(1, 2, 1, 1.0, "fourier_odd", 6)
    assert torch.allclose(even.filter(-q1), even.filter(q1), atol=1e-13)
    assert torch.allclose(odd.filter(-q1), -odd.filter(q1), atol=1e-13)
    # a product of d odd functions has parity (-1)^d: the odd family is even in 2-D
    q2 = torch.rand(40, 2) * 2 - 1
    odd2 = SFBCConv(1, 2, 2, 1.0, "fourier_odd", 4)
    assert torch.allclose(odd2.filter(-q2), odd2.filter(q2), atol=1e-13)
    full = SFBCConv(1, 2, 1, 1.0, "fourier", 6)  # both parities present
    assert (full.filter(-q1) - full.filter(q1)).abs().max() > 1e-2
    assert (full.filter(-q1) + full.filter(q1)).abs().max() > 1e-2


@pytest.mark.parametrize("window", ["cosine", "polynomial", "wendland"])
def test_window_vanishes_at_the_support_and_is_one_at_the_centre(window):
    conv = SFBCConv(1, 1, 2, 1.0, "fourier", 3, window=window)
    plain = SFBCConv(1, 1, 2, 1.0, "fourier", 3)
    plain.load_state_dict(conv.state_dict())
    rim = torch.tensor([[0.6, 0.8], [-1.0, 0.0]])
    assert conv.filter(rim).abs().max() < 1e-12
    centre = torch.zeros(1, 2)
    assert torch.allclose(conv.filter(centre), plain.filter(centre))


def test_translation_and_permutation_via_the_testing_toolkit():
    pos, _ = _points(30, 3)
    conv = SFBCConv(3, 4, 3, 0.5, "fourier", 3, target_features=True, root_weight=True)

    def model(data):
        edge_index = radius_graph(data.pos, 0.5, loop=True)
        return {"y": conv(data.h, data.pos, edge_index)}

    data = Data(pos=pos, h=torch.randn(30, 3))
    assert_equivariant(
        model, data, outputs={"y": "invariant"}, transformations=("translation", "permutation")
    )


def test_not_rotation_invariant_cartesian_filter():
    """A separable Cartesian filter is not rotation-invariant; the toolkit must say so."""
    pos, _ = _points(30, 3)
    conv = SFBCConv(1, 2, 3, 0.5, "fourier", 3)

    def model(data):
        return {"y": conv(None, data.pos, radius_graph(data.pos, 0.5, loop=True))}

    with pytest.raises(AssertionError):
        assert_equivariant(
            model, Data(pos=pos), outputs={"y": "invariant"}, transformations=("rotation",)
        )


@pytest.mark.parametrize("dim", [1, 2])
def test_periodic_translation_invariance(dim):
    n, radius = 60, 0.3
    pos = torch.rand(n, dim) * 2 - 1
    cell = 2 * torch.eye(dim)
    x = torch.randn(n, 2)
    conv = SFBCConv(2, 3, dim, radius, "fourier", 5, target_features=True)

    def run(p):
        p = torch.remainder(p + 1, 2) - 1
        edge_index, shifts = radius_graph(p, radius, loop=True, cell=cell)
        return conv(x, p, edge_index, shifts, cell)

    shift = torch.rand(dim) * 4 - 2
    assert torch.allclose(run(pos), run(pos + shift), atol=1e-11)


def test_periodic_neighbours_equal_an_explicitly_tiled_system():
    n, radius = 40, 0.35
    pos = torch.rand(n, 1) * 2 - 1
    x = torch.randn(n, 1)
    conv = SFBCConv(1, 2, 1, radius, "fourier", 6)
    cell = torch.tensor([[2.0]])
    edge_index, shifts = radius_graph(pos, radius, loop=True, cell=cell)
    periodic = conv(x, pos, edge_index, shifts, cell)
    assert torch.allclose(periodic, _explicit(conv, x, pos, edge_index, radius, shifts, cell))
    tiled = torch.cat([pos - 2, pos, pos + 2])
    tiled_edges = radius_graph(tiled, radius, loop=True)
    reference = conv(x.repeat(3, 1), tiled, tiled_edges)[n : 2 * n]
    assert torch.allclose(periodic, reference, atol=1e-12)


@pytest.mark.parametrize(
    "basis,window",
    [
        ("fourier", None),
        ("bspline", "cosine"),
        ("chebyshev", "wendland"),
        ("gaussian", "polynomial"),
    ],
)
def test_gradcheck_including_positions(basis, window):
    n, radius = 12, 0.6
    pos, _ = _points(n, 2, seed=3)
    edge_index = radius_graph(pos, radius, loop=False)
    conv = SFBCConv(2, 2, 2, radius, basis, 5, window=window, target_features=True)
    x = torch.randn(n, 2, requires_grad=True)
    pos = pos.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda x, p: conv(x, p, edge_index), (x, pos))
    assert torch.autograd.gradgradcheck(lambda x, p: conv(x, p, edge_index), (x, pos))


def test_weight_gradient_and_float32():
    pos, _ = _points(50, 3)
    edge_index = radius_graph(pos, 0.4)
    conv = SFBCConv(3, 5, 3, 0.4, "fourier", 4).float()
    y = conv(torch.randn(50, 3).float(), pos.float(), edge_index)
    assert y.dtype == torch.float32
    y.square().sum().backward()
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


def test_least_squares_fits_reproduce_the_symmetry_finding():
    """SPH density (even kernel) and pressure acceleration (odd kernel) fitted exactly by
    least squares (the convolution is linear in its weights): odd-only fails on the
    density, even-only on the acceleration, full Fourier fits both."""
    trajectory = simulate_sph_1d(num_particles=128, num_frames=8, neighbours=12, seed=4)
    h, cell = trajectory.support, trajectory.cell

    def relative_error(basis, target_name):
        conv = SFBCConv(1, 1, 1, h, basis, 8, target_features=target_name == "acc", bias=False)
        rows, targets = [], []
        for t in range(len(trajectory)):
            pos = trajectory.positions[t]
            edge_index, shifts = radius_graph(pos, h, loop=True, cell=cell)
            if target_name == "acc":
                x = (trajectory.pressure[t] / trajectory.density[t] ** 2)[:, None]
                target = trajectory.pressure_acceleration[t]
            else:
                x, target = None, trajectory.density[t]
            design = []
            for k in range(conv.num_terms):  # column k: the output with only term k
                with torch.no_grad():
                    conv.weight.zero_()
                    conv.weight[k] = 1.0  # with target features: f_j + f_i
                    design.append(conv(x, pos, edge_index, shifts, cell)[:, 0])
            rows.append(torch.stack(design, 1))
            targets.append(target)
        a, b = torch.cat(rows), torch.cat(targets)
        solution = torch.linalg.lstsq(a, b[:, None]).solution
        return float((a @ solution - b[:, None]).norm() / b.norm())

    assert relative_error("fourier", "density") < 1e-2
    assert relative_error("fourier_even", "density") < 1e-2
    assert relative_error("fourier_odd", "density") > 0.5
    assert relative_error("fourier", "acc") < 0.05
    assert relative_error("fourier_odd", "acc") < 0.05
    assert relative_error("fourier_even", "acc") > 0.5


def test_errors():
    with pytest.raises(ValueError, match="dim"):
        SFBCConv(1, 1, 4, 1.0)
    with pytest.raises(ValueError, match="radius"):
        SFBCConv(1, 1, 2, -1.0)
    with pytest.raises(ValueError, match="radius"):
        SFBCConv(1, 1, 2, float("inf"))
    with pytest.raises(ValueError, match="unknown basis"):
        SFBCConv(1, 1, 2, 1.0, basis="legendre")
    with pytest.raises(ValueError, match="num_basis"):
        SFBCConv(1, 1, 2, 1.0, num_basis=(3, 3, 3))
    with pytest.raises(ValueError, match="num_basis"):
        SFBCConv(1, 1, 2, 1.0, num_basis=0)
    with pytest.raises(ValueError, match="window"):
        SFBCConv(1, 1, 2, 1.0, window="hann")
    with pytest.raises(ValueError, match="symmetry"):
        SFBCConv(1, 1, 2, 1.0, symmetry="anti")
    with pytest.raises(ValueError, match="in_channels"):
        SFBCConv(0, 1, 2, 1.0)
    conv = SFBCConv(2, 1, 2, 0.5)
    pos = torch.rand(10, 2)
    edge_index = radius_graph(pos, 0.5)
    with pytest.raises(ValueError, match=r"pos must be \[N, 2\]"):
        conv(torch.randn(10, 2), torch.rand(10, 3), edge_index)
    with pytest.raises(ValueError, match="x must be"):
        conv(torch.randn(10, 3), pos, edge_index)
    with pytest.raises(ValueError, match="x=None"):
        conv(None, pos, edge_index)
    with pytest.raises(ValueError, match="longer than the support radius"):
        conv(torch.randn(10, 2), pos, radius_graph(pos, 2.0))
    with pytest.raises(TypeError, match="dtype"):
        conv(torch.randn(10, 2).float(), pos, edge_index)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    pos, _ = _points(200, 2)
    x = torch.randn(200, 3)
    conv = SFBCConv(3, 4, 2, 0.2, "fourier", 6, window="cosine")
    edge_index = radius_graph(pos, 0.2, loop=True)
    expected = conv(x, pos, edge_index)
    got = conv.cuda()(x.cuda(), pos.cuda(), radius_graph(pos.cuda(), 0.2, loop=True)).cpu()
    assert torch.allclose(got, expected, atol=1e-10)
