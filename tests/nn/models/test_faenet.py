import copy

import pytest
import torch
from torch_geometric.data import Batch, Data

from geobasis.nn import CartesianMPNN, FAENet
from geobasis.testing import assert_equivariant, check_equivariance

OUTPUTS = {"energy": "invariant", "forces": "forces"}


def _molecules():
    g = torch.Generator().manual_seed(0)
    graphs = [
        Data(pos=torch.randn(n, 3, generator=g) * 1.2, z=torch.randint(1, 9, (n,), generator=g))
        for n in (9, 5)
    ]
    return Batch.from_data_list(graphs)


def test_network_alone_is_not_invariant_but_faenet_is_exactly():
    data = _molecules()
    model = FAENet(channels=16, num_layers=2)
    network = copy.deepcopy(model.network).double()  # a function is not cast for us

    def raw_energy(batch):
        from geobasis.graph import radius_graph

        batch = batch.clone()
        batch.edge_index = radius_graph(batch.pos, 5.0, batch.batch)
        return network(batch)["atomic_energy"].sum()[None]

    assert not check_equivariance(raw_energy, data, outputs={"output": "invariant"}).ok
    report = assert_equivariant(model, data, outputs=OUTPUTS, atol=1e-10, rtol=0)
    assert max(report.errors.values()) < 1e-10


def test_so3_faenet_is_rotation_invariant_only():
    data = _molecules()
    model = FAENet(channels=16, num_layers=2, group="SO3")
    assert_equivariant(
        model,
        data,
        outputs=OUTPUTS,
        transformations=("rotation", "translation", "permutation"),
        atol=1e-10,
        rtol=0,
    )
    assert not check_equivariance(model, data, outputs=OUTPUTS, transformations=("reflection",)).ok


def test_forces_are_conservative_and_training_samples_frames():
    data = _molecules()
    model = FAENet(channels=8, num_layers=2).double()
    data.pos = data.pos.double()
    pos = data.pos.clone().requires_grad_()

    def energy(p):
        moved = data.clone()
        moved.pos = p
        return model(moved, compute_forces=False)["energy"]

    model.eval()
    torch.autograd.gradcheck(energy, (pos,))
    (grad,) = torch.autograd.grad(energy(pos).sum(), pos)
    torch.testing.assert_close(model(data)["forces"], -grad)
    torch.testing.assert_close(model(data)["energy"], model(data)["energy"])  # full: exact
    model.train()
    draws = torch.stack([model(data)["energy"].detach() for _ in range(20)])
    assert float(draws.std(0).max()) > 0  # one random frame per molecule and step
    out = model(data)
    assert out["forces"].requires_grad  # create_graph: force losses train


def test_errors():
    with pytest.raises(ValueError, match="frames: must be"):
        FAENet(frames="some")
    data = _molecules()
    data.cell = torch.eye(3)[None].repeat(2, 1, 1) * 10
    with pytest.raises(ValueError, match="periodic"):
        FAENet(channels=4, num_layers=1)(data, compute_stress=False)
    assert isinstance(FAENet().network, CartesianMPNN)
