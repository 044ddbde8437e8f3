"""Check a small spherical-harmonics model for E(3) x permutation equivariance.

python examples/equivariance_check.py
"""

import torch
from torch_geometric.data import Batch, Data

from geobasis.testing import assert_equivariant, check_equivariance
from geobasis.testing.toy import ToyPotential

torch.manual_seed(0)
molecules = Batch.from_data_list(
    [Data(pos=torch.randn(n, 3) * 1.5, z=torch.randint(1, 9, (n,))) for n in (9, 5, 12)]
)
outputs = {"energy": "invariant", "forces": "forces", "features": 2}
print("a correct model:")
print(assert_equivariant(ToyPotential(), molecules, outputs=outputs))


class Broken(ToyPotential):
    """Adds a term that depends on the absolute z coordinate: not rotation invariant."""

    def forward(self, data):
        out = super().forward(data)
        out["energy"] = out["energy"] + torch.zeros_like(out["energy"]).index_add(
            0, data.batch, data.pos[:, 2]
        )
        return out


print("\na broken model:")
print(check_equivariance(Broken(), molecules, outputs=outputs))
