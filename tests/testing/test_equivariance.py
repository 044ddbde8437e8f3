import pytest
import torch
from hypothesis import given, settings
from torch import nn
from torch_geometric.data import Data

from geobasis.o3 import spherical_harmonics
from geobasis.testing import EquivarianceError, assert_equivariant, check_equivariance
from geobasis.testing.strategies import batches, molecules, point_clouds
from geobasis.testing.toy import ToyPotential

OUTPUTS = {"energy": "invariant", "forces": "forces", "features": 2}


def test_correct_potential_passes_every_transformation(molecule_batch):
    report = assert_equivariant(ToyPotential(), molecule_batch, outputs=OUTPUTS)
    assert report.ok
    assert set(t for t, _ in report.errors) == {
        "rotation",
        "reflection",
        "translation",
        "permutation",
    }
    assert max(report.errors.values()) < 1e-10


def test_catches_a_model_that_mixes_in_a_fixed_frame(ethanol):
    class FixedAxis(nn.Module):
        def forward(self, data):
            # energy depends on the z coordinate of the centred positions
            centred = data.pos - data.pos.mean(0)
            return {"energy": (centred[:, 2] ** 2).sum()[None]}

    with pytest.raises(EquivarianceError) as info:
        assert_equivariant(
            FixedAxis(), ethanol, outputs={"energy": "invariant", "forces": "forces"}
        )
    message = str(info.value)
    assert "'energy' under rotation" in message and "'forces' under rotation" in message
    assert (
        "translation" not in message.split("\n")[0] and "permutation" not in message.split("\n")[0]
    )


def test_declared_vector_inputs_are_rotated(ethanol):
    data = ethanol.clone()
    data.vel = torch.randn(data.num_nodes, 3, dtype=torch.float64)

    def momentum(d):
        return {"p": d.vel.sum(0, keepdim=True)}

    # correct when vel is declared as a vector ...
    assert_equivariant(momentum, data, outputs={"p": "vector"}, inputs={"vel": "vector"})
    # ... and the toolkit notices when the input is left undeclared (then it is not rotated)
    report = check_equivariance(momentum, data, outputs={"p": "vector"})
    assert ("rotation", "p") in report.failures and ("reflection", "p") in report.failures


def test_catches_a_non_equivariant_layer(ethanol):
    torch.manual_seed(0)
    layer = nn.Linear(3, 3).double()

    def model(d):
        return {"v": layer(d.pos - d.pos.mean(0)), "energy": layer(d.pos).sum()[None]}

    report = check_equivariance(
        model, ethanol, outputs={"v": "vector", "energy": "invariant", "forces": "forces"}
    )
    assert ("rotation", "v") in report.failures
    assert ("translation", "energy") in report.failures
    assert ("permutation", "v") not in report.failures  # it is still permutation equivariant


def test_catches_permutation_and_cross_graph_bugs(molecule_batch):
    def index_weighted(d):
        centred = d.pos - d.pos.mean(0)
        w = torch.arange(d.num_nodes, dtype=d.pos.dtype)
        return {"energy": (w * (centred**2).sum(-1)).sum()[None]}

    report = check_equivariance(
        index_weighted, molecule_batch, outputs={"energy": {"kind": "invariant", "level": "graph"}}
    )
    assert ("permutation", "energy") in report.failures

    def leaks_between_graphs(d):
        centred = d.pos - d.pos.mean(0)  # centroid of the whole batch
        per_atom = (centred**2).sum(-1)
        return {"energy": torch.zeros(2, dtype=d.pos.dtype).index_add(0, d.batch, per_atom)}

    report = check_equivariance(
        leaks_between_graphs, molecule_batch, outputs={"energy": "invariant"}
    )
    # each graph gets its own rotation and translation, so the shared centroid is exposed
    assert ("rotation", "energy") in report.failures and (
        "translation",
        "energy",
    ) in report.failures


def test_pseudovector_and_spherical_outputs():
    pos = torch.randn(7, 3, dtype=torch.float64)

    def angular(p):
        c = p - p.mean(0)
        v = torch.roll(c, 1, 0)
        return {"L": torch.linalg.cross(c, v).sum(0), "Y": spherical_harmonics(3, c)[..., None]}

    # the cross product of positions with shifted positions is not permutation equivariant,
    # so test only the orthogonal group here
    report = assert_equivariant(
        angular,
        pos,
        outputs={"L": "pseudovector", "Y": 3},
        transformations=("rotation", "reflection"),
    )
    assert report.ok
    wrong = check_equivariance(
        angular, pos, outputs={"L": "vector"}, transformations=("reflection",)
    )
    assert ("reflection", "L") in wrong.failures


def test_cells_rotate_and_dict_inputs():
    def volume_and_first_vector(pos, cell):
        return {"volume": torch.linalg.det(cell).abs(), "a": cell[0]}

    data = {
        "pos": torch.randn(4, 3, dtype=torch.float64),
        "cell": torch.randn(3, 3, dtype=torch.float64),
    }
    assert_equivariant(
        volume_and_first_vector,
        data,
        inputs={"cell": "cell"},
        outputs={"volume": "invariant", "a": "vector"},
        transformations=("rotation", "reflection", "translation"),
    )


def test_model_is_copied_and_cast_not_modified(ethanol):
    model = ToyPotential()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert_equivariant(model, ethanol.to("cpu"), outputs=OUTPUTS, trials=1)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@settings(max_examples=10, deadline=None)
@given(batches(molecules(max_atoms=8), max_graphs=3))
def test_hypothesis_batches_of_molecules(batch):
    assert_equivariant(ToyPotential(), batch, outputs=OUTPUTS, trials=1)


@settings(max_examples=10, deadline=None)
@given(point_clouds(min_points=2, max_points=20))
def test_hypothesis_point_clouds(pos):
    def gram_eigenvalues(p):
        c = p - p.mean(0)
        return torch.linalg.eigvalsh(c.t() @ c)

    assert_equivariant(
        gram_eigenvalues, pos, outputs={"output": {"kind": "invariant", "level": "graph"}}
    )


def test_clear_errors(ethanol):
    with pytest.raises(ValueError, match="unknown kind"):
        assert_equivariant(ToyPotential(), ethanol, outputs={"energy": "scalar"})
    with pytest.raises(KeyError, match="did not return"):
        assert_equivariant(ToyPotential(), ethanol, outputs={"charge": "invariant"})
    with pytest.raises(ValueError, match="does not have"):
        assert_equivariant(ToyPotential(), ethanol, outputs=OUTPUTS, inputs={"vel": "vector"})
    with pytest.raises(TypeError, match="data must be"):
        assert_equivariant(ToyPotential(), [1, 2, 3])
    with pytest.raises(ValueError, match="unknown transformation"):
        assert_equivariant(ToyPotential(), ethanol, outputs=OUTPUTS, transformations=("shear",))


def test_pytest_plugin_fixtures(random_rotation64, random_reflection64, water, assert_equivariant):
    assert torch.allclose(
        random_rotation64 @ random_rotation64.t(), torch.eye(3, dtype=torch.float64)
    )
    assert torch.linalg.det(random_reflection64) < 0
    assert water.num_nodes == 3
    assert callable(assert_equivariant)


def test_e3nn_irreps_strings_are_output_kinds_and_parity_is_checked():
    """An e3nn model's flat output is declared with its irreps string; a wrong parity
    fails under reflections instead of passing silently."""
    from geobasis.o3 import to_e3nn
    from geobasis.testing import ToyPotential

    toy = ToyPotential(lmax=2, channels=4)

    def flat(data):
        return {"flat": to_e3nn(toy(data)["features"])}

    mol = Data(pos=torch.randn(7, 3), z=torch.randint(1, 9, (7,)))
    assert assert_equivariant(flat, mol, outputs={"flat": "4x0e+4x1o+4x2e"}).ok
    with pytest.raises(EquivarianceError):
        assert_equivariant(flat, mol, outputs={"flat": "4x0e+4x1e+4x2e"})


def test_edge_index_level_is_inferred_in_a_batch():
    """A PyG batch with ``edge_index`` needed ``{'kind': 'index', 'level': 'edge'}``."""
    from torch_geometric.data import Batch

    from geobasis.graph import radius_graph
    from geobasis.testing import ToyPotential

    graphs = [Data(pos=torch.randn(n, 3) * 1.5, z=torch.randint(1, 9, (n,))) for n in (6, 5)]
    for graph in graphs:
        graph.edge_index = radius_graph(graph.pos, 3.0)
    batch = Batch.from_data_list(graphs)
    assert assert_equivariant(ToyPotential(), batch, outputs={"energy": "invariant"}).ok


def test_a_plain_function_over_a_float32_module_runs_in_float64():
    """The toolkit casts a Module to float64; a function closing over one failed with a
    dtype error. Its modules are cast for the check and back afterwards, exactly."""
    from geobasis.testing import ToyPotential

    toy = ToyPotential(lmax=1, channels=3)
    before = [p.detach().clone() for p in toy.parameters()]
    mol = Data(pos=torch.randn(6, 3), z=torch.randint(1, 9, (6,)))
    assert assert_equivariant(lambda d: {"energy": toy(d)["energy"]}, mol,
                              outputs={"energy": "invariant"}).ok  # fmt: skip
    assert all(p.dtype == torch.float32 for p in toy.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, toy.parameters(), strict=True))
