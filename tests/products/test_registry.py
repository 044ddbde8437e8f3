"""The product registry: every name builds its product; unknown names list the choices."""

import pytest
import torch

from geobasis import products
from geobasis.o3 import random_orthogonal, spherical_harmonics, wigner_D


@pytest.mark.parametrize("name", sorted(products.PRODUCTS))
def test_every_registered_product_is_o3_equivariant_with_external_weights(name):
    product = products.make(name, 2, 2, 2, 3).double()
    assert isinstance(product, products.EquivariantProduct)
    assert product.weight_mode == "external"
    x1 = torch.randn(5, 9, 3, dtype=torch.float64)
    vectors = torch.randn(5, 3, dtype=torch.float64)
    weight = torch.randn(5, *product.weight_shape, dtype=torch.float64)
    R = random_orthogonal(dtype=torch.float64)  # reflections too: natural parity
    D = wigner_D(2, R)
    rotated = product(D @ x1, spherical_harmonics(2, vectors @ R.T), weight)
    assert torch.allclose(rotated, D @ product(x1, spherical_harmonics(2, vectors), weight),
                          atol=1e-10)  # fmt: skip


def test_unknown_name_lists_the_choices():
    with pytest.raises(ValueError, match="unknown product 'tensor'; choose one of"):
        products.make("tensor", 1, 1, 1, 2)
