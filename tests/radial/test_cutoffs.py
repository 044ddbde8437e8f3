import pytest
import torch

from geobasis.radial import CosineCutoff, PolynomialEnvelope


@pytest.mark.parametrize("p", [2, 5, 6, 9])
def test_polynomial_envelope_value_and_two_derivatives_vanish_at_cutoff(p):
    env = PolynomialEnvelope(3.0, p)
    r = torch.tensor([3.0 - 1e-7, 3.0, 3.5], dtype=torch.float64, requires_grad=True)
    f = env(r)
    (d1,) = torch.autograd.grad(f.sum(), r, create_graph=True)
    (d2,) = torch.autograd.grad(d1.sum(), r)
    assert f.abs().max() < 1e-12
    assert d1.abs().max() < 1e-5
    assert d2.abs().max() < 1e-4
    assert float(env(torch.tensor(0.0, dtype=torch.float64))) == 1.0
    x = torch.linspace(0, 3, 50, dtype=torch.float64)
    assert (env(x) >= -1e-12).all() and (env(x) <= 1 + 1e-12).all()


def test_cosine_cutoff():
    cut = CosineCutoff(2.0)
    assert torch.allclose(
        cut(torch.tensor([0.0, 1.0, 2.0, 3.0])), torch.tensor([1.0, 0.5, 0.0, 0.0]), atol=1e-7
    )


def test_errors():
    with pytest.raises(ValueError):
        PolynomialEnvelope(1.0, 0)
    with pytest.raises(ValueError):
        CosineCutoff(0.0)
