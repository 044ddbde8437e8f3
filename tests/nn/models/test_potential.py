"""Potential: E(3) x S_n symmetry, forces and stress as exact gradients, batching, errors."""

import pytest
import torch
from torch_geometric.data import Batch, Data

from geobasis.graph import radius_graph
from geobasis.nn import Potential
from geobasis.o3 import random_orthogonal
from geobasis.testing import assert_equivariant
from geobasis.typing import WITH_CPU_COMPILER


def _molecule(n=9, seed=0, scale=1.3):
    g = torch.Generator().manual_seed(seed)
    pos = torch.randn(n, 3, generator=g, dtype=torch.float64) * scale
    z = torch.tensor([1, 6, 7, 8, 1, 6, 1, 8, 6, 1, 7, 6][:n])
    return Data(pos=pos, z=z)


def _model(**kwargs):
    torch.manual_seed(0)
    options = {"channels": 8, "lmax": 2, "num_layers": 2, "cutoff": 3.0, "radial_hidden": 16}
    options.update(kwargs)
    return Potential(**options).double().eval()


@pytest.mark.parametrize("product", ["cg", "gaunt_grid", "gaunt_fourier"])
def test_energy_invariant_forces_equivariant(product):
    model = _model(product=product)
    report = assert_equivariant(
        model, _molecule(), outputs={"energy": "invariant", "forces": "forces"}
    )
    assert report is not None
    assert model(_molecule())["forces"].abs().max() > 1e-4


def test_s2_nonlinearity_is_equivariant_to_grid_accuracy():
    model = _model(nonlinearity="s2")
    assert_equivariant(
        model,
        _molecule(),
        outputs={"energy": "invariant", "forces": "forces"},
        atol=1e-6,
        rtol=1e-4,
    )


def test_forces_are_minus_the_energy_gradient():
    model = _model()
    data = _molecule()
    forces = model(data)["forces"].detach()
    eps = 1e-6
    for atom, axis in [(0, 0), (3, 1), (7, 2)]:
        plus, minus = data.clone(), data.clone()
        plus.pos = data.pos.clone()
        minus.pos = data.pos.clone()
        plus.pos[atom, axis] += eps
        minus.pos[atom, axis] -= eps
        numeric = -(model(plus)["energy"] - model(minus)["energy"]) / (2 * eps)
        assert abs(float(numeric) - float(forces[atom, axis])) < 1e-7
    assert forces.sum(0).abs().max() < 1e-12  # translation invariance: no net force


def test_batch_equals_separate_graphs_and_own_graph_equals_given():
    model = _model()
    a, b = _molecule(seed=1), _molecule(n=7, seed=2)
    batch = Batch.from_data_list([a, b])
    out = model(batch)
    for k, d in enumerate((a, b)):
        single = model(d)
        assert torch.allclose(out["energy"][k], single["energy"][0], atol=1e-12)
        mask = batch.batch == k
        assert torch.allclose(out["forces"][mask], single["forces"], atol=1e-12)
    given = a.clone()
    given.edge_index = radius_graph(a.pos, 3.0)
    assert torch.allclose(model(given)["energy"], model(a)["energy"], atol=1e-12)


def _crystal(seed=0):
    g = torch.Generator().manual_seed(seed)
    cell = torch.tensor([[4.0, 0.3, 0.0], [0.2, 3.8, 0.1], [0.0, -0.4, 4.2]], dtype=torch.float64)
    frac = torch.rand(6, 3, generator=g, dtype=torch.float64)
    return Data(pos=frac @ cell, z=torch.tensor([6, 8, 1, 1, 6, 8]), cell=cell[None])


def test_stress_is_the_strain_derivative_and_rotates():
    model = _model()
    data = _crystal()
    out = model(data)
    assert out["stress"].shape == (1, 3, 3)
    assert torch.allclose(out["stress"], out["stress"].transpose(1, 2), atol=1e-12)
    eps = 1e-6
    volume = torch.linalg.det(data.cell[0]).abs()
    for i, j in [(0, 0), (1, 2), (2, 2)]:
        strain = torch.zeros(3, 3, dtype=torch.float64)
        strain[i, j] = strain[j, i] = eps / 2 if i != j else eps
        energies = []
        for sign in (1, -1):
            deformed = data.clone()
            transform = torch.eye(3, dtype=torch.float64) + sign * strain
            deformed.pos = data.pos @ transform
            deformed.cell = data.cell @ transform
            energies.append(model(deformed)["energy"])
        numeric = (energies[0] - energies[1]) / (2 * eps) / volume
        expected = out["stress"][0, i, j]  # symmetric strain: both (i, j) and (j, i)
        assert abs(float(numeric) - float(expected)) < 1e-6
    R = random_orthogonal(dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    rotated = data.clone()
    rotated.pos, rotated.cell = data.pos @ R.T, data.cell @ R.T
    turned = model(rotated)
    assert torch.allclose(turned["energy"], out["energy"], atol=1e-10)
    assert torch.allclose(turned["stress"][0], R @ out["stress"][0] @ R.T, atol=1e-10)
    assert torch.allclose(turned["forces"], out["forces"] @ R.T, atol=1e-10)


def test_periodic_energy_invariant_to_wrapping_atoms_into_the_cell():
    model = _model()
    data = _crystal(seed=4)
    shifted = data.clone()
    shifted.pos = data.pos + torch.tensor([1.0, -2.0, 1.0], dtype=torch.float64) @ data.cell[0]
    assert torch.allclose(model(shifted)["energy"], model(data)["energy"], atol=1e-10)


def test_reference_energies_by_least_squares():
    model = _model()
    true = {1: -13.6, 6: -1029.0, 7: -1485.0, 8: -2040.0}
    graphs = [_molecule(n=n, seed=n) for n in (3, 5, 7, 9, 11, 12)]
    batch = Batch.from_data_list(graphs)
    energy = torch.tensor([sum(true[int(z)] for z in g.z) for g in graphs], dtype=torch.float64)
    energy = energy + 0.01 * torch.randn(len(graphs), dtype=torch.float64)
    reference = model.fit_reference_energies(batch.z, batch.batch, energy)
    for z, value in true.items():
        assert abs(float(reference[z]) - value) < 0.05
    assert float(model.energy_scale) < 0.05
    lonely = Data(pos=torch.zeros(1, 3, dtype=torch.float64), z=torch.tensor([8]))
    out = model(lonely)  # an isolated atom: its reference energy plus the readout of h_0
    assert torch.isfinite(out["energy"]).all() and out["forces"].abs().max() == 0


def test_training_mode_keeps_the_graph_for_force_losses():
    model = _model().train()
    out = model(_molecule())
    loss = out["forces"].square().sum() + out["energy"].sum()
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and sum(float(g.abs().sum()) for g in grads) > 0


def test_errors():
    model = _model()
    with pytest.raises(ValueError, match="`z`"):
        model(Data(pos=torch.zeros(2, 3, dtype=torch.float64)))
    with pytest.raises(ValueError, match="stress needs a cell"):
        model(_molecule(), compute_stress=True)
    with pytest.raises(ValueError, match="nonlinearity"):
        Potential(nonlinearity="relu")
    with pytest.raises(ValueError, match="num_layers"):
        Potential(num_layers=0)


@pytest.mark.skipif(not WITH_CPU_COMPILER, reason="torch.compile on CPU needs a C++ compiler")
def test_functional_forces_equal_autograd_forces_eagerly_and_compiled():
    """``atomic_energies_and_forces`` (torch.func.grad) == ``forward`` (autograd.grad): the
    values and the parameter gradients of a force loss, eager and under torch.compile."""
    from torch_geometric.utils import scatter

    batch = Batch.from_data_list([_molecule(7, 1), _molecule(5, 2)])
    batch.edge_index = radius_graph(batch.pos, 3.0, batch.batch)
    model = _model(channels=4, lmax=1, num_layers=1).train()
    params = list(model.parameters())

    def loss_and_grads(energy, forces):
        loss = energy.square().sum() + forces.square().sum()
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]

    out = model(batch)
    reference = loss_and_grads(out["energy"], out["forces"])
    args = (batch.pos, batch.z, batch.batch, batch.edge_index)
    for fn in (
        model.atomic_energies_and_forces,
        torch.compile(model.atomic_energies_and_forces, dynamic=True),
    ):
        atomic, forces = fn(*args)
        energy = scatter(atomic, batch.batch, 0, dim_size=2)
        torch.testing.assert_close(energy, out["energy"])
        torch.testing.assert_close(forces, out["forces"])
        for got, expected in zip(loss_and_grads(energy, forces), reference):
            torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("product", ["cg", "gaunt_grid", "gaunt_fourier"])
@pytest.mark.parametrize("training", [True, False])
def test_functional_forces_work_for_every_product_in_both_modes(product, training):
    """torch.func.grad reaches the products' and harmonics' plain forms (no custom
    autograd Function, no out= kernel), also under no_grad."""
    batch = Batch.from_data_list([_molecule(6, 3)])
    batch.edge_index = radius_graph(batch.pos, 3.0, batch.batch)
    model = _model(product=product).train(training)
    reference = model(batch)["forces"].detach()
    with torch.no_grad():
        _, forces = model.atomic_energies_and_forces(
            batch.pos, batch.z, batch.batch, batch.edge_index
        )
    torch.testing.assert_close(forces, reference)


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
def test_forces_under_no_grad_and_inference_mode(mode):
    """Forces are derivatives: they are computed inside even when the caller turned
    autograd off (an ASE driver, an inference server), and come back detached."""
    model = _model().eval()
    molecule = _molecule()
    expected = model(molecule)
    context = torch.no_grad() if mode == "no_grad" else torch.inference_mode()
    with context:
        out = model(molecule)
    assert not out["forces"].requires_grad
    assert torch.allclose(out["energy"], expected["energy"])
    assert torch.allclose(out["forces"], expected["forces"])


def test_force_loss_on_coincident_atoms_has_finite_parameter_gradients():
    """Two atoms at one place (an edge of length 0): the force loss's gradient was NaN."""
    model = _model().train()
    molecule = _molecule()
    molecule.pos[1] = molecule.pos[0]
    out = model(molecule)
    loss = out["energy"].square().sum() + out["forces"].square().sum()
    grads = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)
    assert torch.isfinite(out["forces"]).all()
    assert all(g is None or torch.isfinite(g).all() for g in grads)


def test_inference_memory_per_edge_stays_small():
    """Energy + forces + stress keep only the edge geometry per edge (about 1 KB with the
    neighbour list), not the messages and radial-network activations (6.6 KB before)."""
    import json
    import subprocess
    import sys

    script = """
import json, resource, torch
from torch_geometric.data import Data
from geobasis.graph import radius_graph
from geobasis.nn import Potential
torch.set_num_threads(1)
torch.manual_seed(0)
model = Potential(channels=16, lmax=2, num_layers=2, cutoff=5.0).eval()
side = (3000 / 0.1) ** (1 / 3)
pos = torch.rand(3000, 3) * side
cell = torch.eye(3) * side
edges = radius_graph(pos, 5.0, cell=cell)[0].shape[1]
data = Data(pos=pos, z=torch.ones(3000, dtype=torch.long), cell=cell[None])
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
model(data)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
print(json.dumps({"edges": edges, "bytes_per_edge": peak * 1024 / edges}))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    assert measured["edges"] > 100_000
    assert measured["bytes_per_edge"] < 2500, measured
