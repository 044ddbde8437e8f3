"""pytest fixtures for equivariance tests.

Enable in a ``conftest.py``::

    pytest_plugins = ["geobasis.testing.pytest_plugin"]

Fixtures: ``geobasis_generator`` (a seeded ``torch.Generator``), ``random_rotation64``
(a float64 rotation), ``random_reflection64`` (a float64 improper orthogonal matrix),
``water``, ``ethanol`` (small molecules as ``Data(pos, z)`` in Å, float64),
``molecule_batch`` (both in one ``Batch``) and ``assert_equivariant`` (the function).
"""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Batch, Data

from geobasis.o3 import random_orthogonal, random_rotation
from geobasis.testing.equivariance import assert_equivariant as _assert_equivariant

_ETHANOL_POS = [
    [-0.0487, 0.5533, 0.0000], [1.3993, 0.0398, 0.0000], [-0.9497, -0.5290, 0.0000],
    [-0.2744, 1.1590, 0.8865], [-0.2744, 1.1590, -0.8865], [1.6120, -0.5749, 0.8773],
    [1.6120, -0.5749, -0.8773], [2.0717, 0.8970, 0.0000], [-1.8374, -0.1677, 0.0000],
]  # fmt: skip
_ETHANOL_Z = [6, 6, 8, 1, 1, 1, 1, 1, 1]
_WATER_POS = [[0.0, 0.0, 0.1173], [0.0, 0.7572, -0.4692], [0.0, -0.7572, -0.4692]]


@pytest.fixture
def geobasis_generator() -> torch.Generator:
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def random_rotation64(geobasis_generator: torch.Generator) -> torch.Tensor:
    return random_rotation(dtype=torch.float64, generator=geobasis_generator)


@pytest.fixture
def random_reflection64(geobasis_generator: torch.Generator) -> torch.Tensor:
    return random_orthogonal(dtype=torch.float64, generator=geobasis_generator, improper=True)


@pytest.fixture
def ethanol() -> Data:
    return Data(pos=torch.tensor(_ETHANOL_POS, dtype=torch.float64), z=torch.tensor(_ETHANOL_Z))


@pytest.fixture
def water() -> Data:
    return Data(pos=torch.tensor(_WATER_POS, dtype=torch.float64), z=torch.tensor([8, 1, 1]))


@pytest.fixture
def molecule_batch(ethanol: Data, water: Data) -> Batch:
    return Batch.from_data_list([ethanol, water])


@pytest.fixture
def assert_equivariant():
    return _assert_equivariant
