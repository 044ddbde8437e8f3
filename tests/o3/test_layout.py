"""The spherical-channel layout: slices, degree indices and checks agree with e3nn's order."""

import pytest
import torch
from e3nn import o3 as e3o3

from geobasis.o3.layout import (
    check_lmax,
    check_spherical,
    degree_index,
    degree_slice,
    num_components,
)


@pytest.mark.parametrize("lmax", [0, 1, 4, 7])
def test_slices_tile_the_rows_in_e3nn_order(lmax):
    irreps = e3o3.Irreps.spherical_harmonics(lmax)
    assert num_components(lmax) == irreps.dim
    rows = torch.cat([torch.arange(num_components(lmax))[degree_slice(l)] for l in range(lmax + 1)])
    assert torch.equal(rows, torch.arange(irreps.dim))
    for (mul, ir), piece in zip(irreps, irreps.slices(), strict=True):
        assert degree_slice(ir.l) == piece and mul == 1
    index = degree_index(lmax)
    assert index.dtype == torch.long and index.shape == (irreps.dim,)
    assert torch.equal(index, torch.tensor([ir.l for _, ir in irreps for _ in range(ir.dim)]))


def test_checks_name_what_is_wrong():
    check_lmax(3)
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="lmax must be a non-negative int"):
            check_lmax(bad)
    check_spherical(torch.zeros(5, 9, 4), 2, 4, "Layer")
    with pytest.raises(ValueError, match=r"Layer: expected x of shape \[..., 9, 4\]"):
        check_spherical(torch.zeros(5, 4, 4), 2, 4, "Layer")
    with pytest.raises(TypeError, match="Layer: x must be a tensor"):
        check_spherical([1.0], 2, 4, "Layer")
