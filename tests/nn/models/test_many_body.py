"""ManyBodyPotential: E(3) x S_n symmetry, forces as exact gradients, per-element weights,
compile, registry and errors."""

import pytest
import torch
from torch_geometric.data import Batch, Data

from geobasis.nn import MODELS, ManyBodyPotential, build_model
from geobasis.nn.contraction import CONTRACTIONS
from geobasis.testing import assert_equivariant


def _molecule(n=8, seed=0, scale=1.2):
    g = torch.Generator().manual_seed(seed)
    pos = torch.randn(n, 3, generator=g, dtype=torch.float64) * scale
    z = torch.tensor([1, 6, 7, 8, 1, 6, 1, 8, 6, 1][:n])
    return Data(pos=pos, z=z)


def _model(**kwargs):
    torch.manual_seed(0)
    options = {"channels": 6, "lmax": 2, "lmax_hidden": 1, "cutoff": 3.0, "radial_hidden": 8,
               "elements": "1,6,7,8"}  # fmt: skip
    options.update(kwargs)
    return ManyBodyPotential(**options).double().eval()


@pytest.mark.parametrize("contraction", sorted(CONTRACTIONS))
def test_energy_invariant_forces_equivariant(contraction):
    model = _model(contraction=contraction)
    assert_equivariant(
        model,
        _molecule(),
        outputs={"energy": "invariant", "forces": "forces"},
        atol=1e-10,
        rtol=1e-10,
    )
    assert model(_molecule())["forces"].abs().max() > 1e-4


def test_forces_are_minus_the_energy_gradient():
    model = _model()
    data = _molecule()
    forces = model(data)["forces"]
    eps = 1e-6
    for atom, axis in [(0, 0), (5, 2)]:
        plus, minus = data.clone(), data.clone()
        plus.pos, minus.pos = data.pos.clone(), data.pos.clone()
        plus.pos[atom, axis] += eps
        minus.pos[atom, axis] -= eps
        numeric = -(model(plus)["energy"] - model(minus)["energy"]) / (2 * eps)
        torch.testing.assert_close(forces[atom, axis], numeric[0], atol=1e-7, rtol=1e-6)


def test_batch_equals_separate_graphs():
    model = _model()
    a, b = _molecule(seed=1), _molecule(n=6, seed=2)
    together = model(Batch.from_data_list([a, b]))
    torch.testing.assert_close(together["energy"][0], model(a)["energy"][0])
    torch.testing.assert_close(together["forces"][8:], model(b)["forces"])


def test_body_order_reaches_beyond_two():
    """After one layer of correlation 1 an atom's features are a sum over its neighbours
    (two-body); correlation 3 is not: E(abc) - E(ab) - E(ac) + E(a) = 0 fails."""

    def three_body_signal(correlation):
        model = _model(correlation=correlation, num_layers=1, lmax_hidden=0)
        z = torch.tensor([6, 1, 1])

        def features(p):
            from geobasis.graph import radius_graph

            edges = model.edge_embedding(p, radius_graph(p, 3.0))
            h = model.embedding(z)[:, None, :]
            return model.interactions[0](h, edges, model.species(z))[0, 0]

        pos = torch.tensor([[0.0, 0, 0], [1.1, 0, 0], [0, 1.2, 0]], dtype=torch.float64)
        a_b, a_c, alone = pos.clone(), pos.clone(), pos.clone()
        a_b[2] = 100.0
        a_c[1] = -100.0
        alone[1], alone[2] = -100.0, 100.0
        with torch.no_grad():
            signal = features(pos) - features(a_b) - features(a_c) + features(alone)
        return float(signal.abs().max())

    assert three_body_signal(1) < 1e-12
    assert three_body_signal(3) > 1e-4


def test_unknown_element_is_a_clear_error():
    model = _model(elements="1,6")
    with pytest.raises(ValueError, match=r"elements: atomic numbers \[7, 8\]"):
        model(_molecule())
    with pytest.raises(ValueError, match="elements: expected comma-separated"):
        ManyBodyPotential(elements="H,C")


def test_registry_and_options():
    assert MODELS["manybody"] is ManyBodyPotential
    assert "elements" in ManyBodyPotential.data_options
    model = build_model("manybody", channels=4, lmax=1, contraction="gaunt_grid", elements="1,8")
    assert model.config["contraction"] == "gaunt_grid"
    with pytest.raises(ValueError, match="contraction: must be one of"):
        build_model("manybody", contraction="ace")
    with pytest.raises(ValueError, match="lmax_hidden <= lmax"):
        ManyBodyPotential(lmax=1, lmax_hidden=2)


def test_energies_and_forces_trace_without_graph_breaks():
    """The path ``--compile`` takes (forces by torch.func.grad) as one graph; the eager
    backend checks the trace itself (inductor's C++ build is the conv tests' business)."""
    model = _model().train()
    data = _molecule()
    from geobasis.graph import radius_graph

    edge_index = radius_graph(data.pos, 3.0)
    batch = torch.zeros(8, dtype=torch.long)
    traced = torch.compile(model.atomic_energies_and_forces, backend="eager", fullgraph=True)
    atomic, forces = traced(data.pos, data.z, batch, edge_index)
    eager_atomic, eager_forces = model.atomic_energies_and_forces(
        data.pos, data.z, batch, edge_index
    )
    torch.testing.assert_close(forces, eager_forces)
    torch.testing.assert_close(atomic, eager_atomic)
