"""Symmetric contractions: O(3) equivariance, completeness of the CG basis, the Gaunt-grid
span inside it, derivatives, compile, errors."""

from __future__ import annotations

import pytest
import torch

from geobasis.nn.contraction import (
    CONTRACTIONS,
    CGContraction,
    GauntGridContraction,
    make_contraction,
)
from geobasis.o3.product_basis import symmetric_product_basis
from geobasis.testing import assert_equivariant

F64 = torch.float64


def _inputs(lmax_in: int, channels: int = 3, n: int = 7, species: int = 2, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, (lmax_in + 1) ** 2, channels, generator=generator, dtype=F64)
    return x, torch.randint(0, species, (n,), generator=generator)


@pytest.mark.parametrize("name", sorted(CONTRACTIONS))
@pytest.mark.parametrize("lmax_in", [1, 2, 3])
def test_o3_equivariance(name, lmax_in):
    module = make_contraction(name, lmax_in, 2, 3, correlation=3, num_species=2).double()
    x, species = _inputs(lmax_in)
    assert_equivariant(
        lambda pos, x, species: module(x, species),
        {"pos": torch.randn(7, 3, dtype=F64), "x": x, "species": species},
        outputs={"output": 2},
        inputs={"x": lmax_in},
        transformations=("rotation", "reflection", "permutation"),
        atol=1e-10,
        rtol=1e-10,
    )


def test_output_parity_is_natural():
    """Under inversion A_l -> (-1)^l A_l the output of degree L changes as (-1)^L."""
    for name in CONTRACTIONS:
        module = make_contraction(name, 2, 2, 3, correlation=3).double()
        x, _ = _inputs(2, species=1)
        sign_in = torch.tensor([(-1.0) ** l for l in range(3) for _ in range(2 * l + 1)], dtype=F64)
        sign_out = sign_in  # lmax_out = 2 as well
        species = torch.zeros(7, dtype=torch.long)
        inverted = module(x * sign_in[:, None], species)
        torch.testing.assert_close(inverted, module(x, species) * sign_out[:, None])


@pytest.mark.parametrize(
    ("lmax_in", "lmax_out", "nu", "per_degree"),
    [
        # hand counts: scalars A0^3, A0 |A1|^2; vectors A0^2 A1, |A1|^2 A1
        (1, 1, 3, [2, 2]),
        # pairs l1 <= l2 of natural parity, symmetric: L=0 (00,11,22), L=1 (01,12 is odd:
        # no; 1x2 -> 1 has l1+l2+L even: yes), L=2 (02,11,22)
        (2, 2, 2, [3, 2, 3]),
        # one factor: the identity on shared degrees
        (3, 1, 1, [1, 1]),
    ],
)
def test_cg_basis_counts(lmax_in, lmax_out, nu, per_degree):
    basis = symmetric_product_basis(lmax_in, lmax_out, nu)
    counts = torch.bincount(basis.degrees, minlength=lmax_out + 1).tolist()
    assert counts == per_degree
    assert symmetric_product_basis(lmax_in, lmax_out, nu) is basis  # tables built once


def _basis_features(x: torch.Tensor, lmax_in: int, lmax_out: int, correlation: int):
    """``{L: [N*(2L+1), K_L]}`` every CG basis element of every order on one channel."""
    columns: dict[int, list[torch.Tensor]] = {}
    for nu in range(1, correlation + 1):
        basis = symmetric_product_basis(lmax_in, lmax_out, nu)
        values = basis.evaluate(x)  # [N, K, D_out]
        for k, l in enumerate(basis.degrees.tolist()):
            columns.setdefault(l, []).append(values[:, k, l * l : (l + 1) ** 2].reshape(-1))
    return {l: torch.stack(c, -1) for l, c in columns.items()}


def test_gaunt_grid_lies_in_the_cg_span():
    """Every Gaunt-grid output (any weights) is a combination of the complete CG basis."""
    lmax_in, lmax_out = 2, 2
    module = GauntGridContraction(lmax_in, lmax_out, 1, correlation=3).double()
    with torch.no_grad():
        module.input_weights.normal_()
        module.output_weights.normal_()
    x, _ = _inputs(lmax_in, channels=1, n=200, species=1)
    out = module(x, torch.zeros(200, dtype=torch.long))[..., 0]
    features = _basis_features(x[..., 0], lmax_in, lmax_out, 3)
    for l, columns in features.items():
        target = out[:, l * l : (l + 1) ** 2].reshape(-1)
        solution = torch.linalg.lstsq(columns, target[:, None]).solution
        residual = (columns @ solution)[:, 0] - target
        assert residual.abs().max() < 1e-8 * target.abs().max()


def test_cg_contraction_spans_its_basis():
    """With one-hot weights the CG contraction returns single basis elements, and they
    are linearly independent (no redundant paths)."""
    module = CGContraction(2, 1, 1, correlation=3).double()
    x, _ = _inputs(2, channels=1, n=100, species=1)
    features = _basis_features(x[..., 0], 2, 1, 3)
    for columns in features.values():
        assert torch.linalg.matrix_rank(columns) == columns.shape[1]
    with torch.no_grad():
        for weight in module.weights:
            weight.zero_()
        module.weights[2][0, 0, 0] = 1.0  # the first order-3 element (a scalar)
    out = module(x, torch.zeros(100, dtype=torch.long))
    expected = symmetric_product_basis(2, 1, 3).evaluate(x[..., 0])[:, 0, 0]
    torch.testing.assert_close(out[:, 0, 0], expected)
    assert expected.abs().max() > 0.1


@pytest.mark.parametrize("name", sorted(CONTRACTIONS))
def test_gradcheck_and_gradgradcheck(name):
    module = make_contraction(name, 1, 1, 2, correlation=3, num_species=2).double()
    x, species = _inputs(1, channels=2, n=4)
    x.requires_grad_(True)
    params = tuple(module.parameters())

    def f(x, *p):
        return torch.func.functional_call(
            module,
            dict(zip([n for n, _ in module.named_parameters()], p, strict=True)),
            (x, species),
        )

    assert torch.autograd.gradcheck(f, (x, *params))
    assert torch.autograd.gradgradcheck(f, (x, *params))


@pytest.mark.parametrize("name", sorted(CONTRACTIONS))
def test_compiles_without_graph_breaks(name):
    module = make_contraction(name, 2, 1, 3, correlation=3, num_species=2)
    x, species = _inputs(2)
    x = x.to(torch.get_default_dtype())
    compiled = torch.compile(module, backend="eager", fullgraph=True, dynamic=True)
    torch.testing.assert_close(compiled(x, species), module(x, species))


def test_species_select_weights():
    module = CGContraction(1, 1, 2, correlation=2, num_species=2).double()
    x, _ = _inputs(1, channels=2, n=3)
    a = module(x, torch.zeros(3, dtype=torch.long))
    b = module(x, torch.ones(3, dtype=torch.long))
    assert not torch.allclose(a, b)


def test_errors():
    with pytest.raises(ValueError, match="contraction: unknown 'ace'"):
        make_contraction("ace", 1, 1, 2)
    with pytest.raises(ValueError, match="correlation >= 1"):
        CGContraction(1, 1, 2, correlation=0)
    module = CGContraction(1, 1, 2)
    x = torch.randn(3, 4, 2)
    with pytest.raises(ValueError, match="species must be \\[N\\] long"):
        module(x, torch.zeros(3))
    with pytest.raises(ValueError, match="CGContraction"):
        module(torch.randn(3, 9, 2), torch.zeros(3, dtype=torch.long))
