import numpy as np
import pytest
import torch
from torch import nn
from torch_geometric.data import Batch, Data
from torch_geometric.utils import scatter

from geobasis.frames import FrameAveraging, pca_frames
from geobasis.graph import radius_graph
from geobasis.testing import assert_equivariant, check_equivariance

from .test_pca import ideal_benzene, regular_polygon

OUTPUTS = {
    "energy": "invariant",
    "forces": "forces",
    "dipole": "vector",
    "node_vectors": "vector",
    "node_scalars": "invariant",
}


class CartesianToy(nn.Module):
    """Deliberately not invariant: reads raw coordinates and raw edge vectors."""

    def __init__(self, dim: int = 3, hidden: int = 16) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, hidden)
        self.node = nn.Linear(dim, hidden)
        self.edge = nn.Linear(dim, hidden)
        self.energy = nn.Linear(hidden, 1)
        self.vector = nn.Linear(hidden, dim)

    def forward(self, data):
        h = torch.tanh(self.node(data.pos) + self.embed(data.z))
        if data.edge_index is not None and data.edge_index.numel():
            src, dst = data.edge_index
            message = torch.tanh(self.edge(data.pos[src] - data.pos[dst])) * h[src]
            h = h + scatter(message, dst, 0, dim_size=h.shape[0])
        num = data.num_graphs
        return {
            "energy": scatter(self.energy(h)[:, 0], data.batch, 0, dim_size=num),
            "dipole": scatter(self.vector(h), data.batch, 0, dim_size=num),
            "node_vectors": self.vector(h),
            "node_scalars": self.energy(h)[:, 0] ** 2,
        }


def _graph(pos, z=None, cutoff=None):
    z = torch.randint(0, 10, (pos.shape[0],)) if z is None else z
    data = Data(pos=pos, z=z)
    if cutoff is not None:
        data.edge_index = radius_graph(pos, cutoff)
    return data


def _batch(*graphs):
    return Batch.from_data_list(list(graphs))


def test_raw_model_is_not_invariant_but_its_frame_average_is_exactly():
    data = _batch(
        _graph(torch.randn(7, 3) * 1.5, cutoff=2.5), _graph(torch.randn(4, 3), cutoff=2.5)
    )
    raw = check_equivariance(CartesianToy(), data, outputs={"energy": "invariant"})
    assert not raw.ok
    model = FrameAveraging(CartesianToy(), outputs=OUTPUTS)
    report = assert_equivariant(model, data, outputs=OUTPUTS, atol=1e-10, rtol=0)
    assert max(report.errors.values()) < 1e-10


def test_so3_averaging_is_rotation_but_not_reflection_equivariant():
    data = _graph(torch.randn(8, 3), cutoff=2.0)
    model = FrameAveraging(CartesianToy(), group="SO3", outputs=OUTPUTS)
    assert_equivariant(
        model,
        data,
        outputs=OUTPUTS,
        transformations=("rotation", "translation", "permutation"),
        atol=1e-10,
        rtol=0,
    )
    report = check_equivariance(
        model, data, outputs={"energy": "invariant"}, transformations=("reflection",)
    )
    assert not report.ok


def _rmd17_benzene(shared_data):
    path = shared_data / "rmd17" / "rmd17_benzene_train_01.npz"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    arrays = np.load(path)
    return torch.tensor(arrays["coords"][0], dtype=torch.float64), torch.tensor(
        arrays["nuclear_charges"]
    ).long()


@pytest.mark.parametrize(
    "shape", ["benzene", "hexagon", "line", "tetrahedron", "single atom", "two atoms"]
)
def test_averaging_stays_exact_on_degenerate_inputs(shape):
    pos = {
        "benzene": ideal_benzene,
        "hexagon": lambda: regular_polygon(6, 1.4),
        "line": lambda: (
            torch.linspace(-2, 2, 5, dtype=torch.float64)[:, None] * torch.tensor([0.6, 0.0, 0.8])
        ),
        "tetrahedron": lambda: torch.tensor([[1.0, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]),
        "single atom": lambda: torch.zeros(1, 3),
        "two atoms": lambda: torch.tensor([[0.0, 0.0, 0.0], [0.3, -0.5, 1.0]]),
    }[shape]().double()
    assert bool(pca_frames(pos).degenerate.all())
    z = torch.tensor([6] * 6 + [1] * 6) if shape == "benzene" else None
    data = _batch(
        _graph(pos, z, cutoff=3.0), _graph(torch.randn(5, 3, dtype=torch.float64), cutoff=3.0)
    )
    model = FrameAveraging(CartesianToy(), outputs=OUTPUTS)
    assert_equivariant(model, data, outputs=OUTPUTS, atol=1e-10, rtol=0, trials=3)


def test_averaging_on_rmd17_benzene(shared_data):
    pos, z = _rmd17_benzene(shared_data)
    data = _graph(pos, z % 10, cutoff=3.0)
    model = FrameAveraging(CartesianToy(), outputs=OUTPUTS)
    assert_equivariant(model, data, outputs=OUTPUTS, atol=1e-10, rtol=0)


def test_forces_are_the_gradient_of_the_averaged_energy():
    data = _graph(torch.randn(6, 3, dtype=torch.float64), cutoff=2.5)
    model = FrameAveraging(
        CartesianToy().double(), outputs={"energy": "invariant", "forces": "forces"}
    )

    def energy(pos):
        moved = data.clone()
        moved.pos = pos
        return model(moved)["energy"]

    pos = data.pos.clone().requires_grad_()
    torch.autograd.gradcheck(energy, (pos,))
    forces = model(data)["forces"]
    (grad,) = torch.autograd.grad(energy(pos).sum(), pos)
    torch.testing.assert_close(forces, -grad)
    # forces are trained: the second derivative through the frames is exact too
    model.train()

    def force_fn(pos):
        moved = data.clone()
        moved.pos = pos
        return model(moved)["forces"]

    torch.autograd.gradcheck(force_fn, (pos,))


def test_stochastic_averaging_is_equivariant_in_expectation():
    data = _graph(torch.randn(6, 3, dtype=torch.float64), cutoff=2.5)
    toy = CartesianToy().double()
    full = FrameAveraging(toy, outputs={"energy": "invariant"})(data)["energy"]
    generator = torch.Generator().manual_seed(0)
    stochastic = FrameAveraging(
        toy, mode="stochastic", outputs={"energy": "invariant"}, generator=generator
    )
    copies = Batch.from_data_list([data] * 4000)  # 4000 independent draws in one call
    with torch.no_grad():
        samples = stochastic(copies)["energy"]
    # one sample is far from invariant, the mean converges to the exact frame average
    spread = float(samples.std())
    assert spread > 1e-3
    assert abs(float(samples.mean() - full)) < 4 * spread / 4000**0.5
    # and the frames drawn are uniform over the 8
    frames = pca_frames(data.pos)
    drawn = pca_frames(copies.pos, copies.batch).sample(generator).rotations
    draws = (drawn[:, None] - frames.rotations[None]).abs().amax((2, 3)).argmin(1)
    counts = torch.bincount(draws, minlength=8).double()
    assert float(((counts - 500) ** 2 / 500).sum()) < 30  # chi^2, 7 dof: p ~ 1e-4


def test_edges_and_attributes_are_copied_per_frame():
    data = _batch(_graph(torch.randn(5, 3), cutoff=3.0), _graph(torch.randn(3, 3), cutoff=3.0))
    data.node_feature = torch.arange(8.0)[:, None]
    data.edge_feature = torch.arange(float(data.edge_index.shape[1]))
    data.target = torch.tensor([1.0, 2.0])
    seen = {}

    def spy(batch):
        seen["batch"] = batch
        return scatter(batch.pos[:, 0] * 0 + 1, batch.batch, 0, dim_size=batch.num_graphs)

    out = FrameAveraging(spy)(data)
    b = seen["batch"]
    assert b.num_graphs == 16 and b.pos.shape == (8 * 8, 3)
    assert b.edge_index.shape[1] == 8 * data.edge_index.shape[1]
    assert bool((b.batch[b.edge_index[0]] == b.batch[b.edge_index[1]]).all())
    torch.testing.assert_close(torch.sort(b.target).values, torch.tensor([1.0] * 8 + [2.0] * 8))
    assert sorted(b.node_feature[:, 0].tolist()) == sorted(list(range(8)) * 8)
    # the renumbered edges join the same atoms as the originals
    src_feature = b.node_feature[b.edge_index[0], 0]
    original = data.node_feature[data.edge_index[0], 0]
    torch.testing.assert_close(src_feature, original[b.edge_feature.long()])
    torch.testing.assert_close(out, torch.tensor([5.0, 3.0]))


def test_errors():
    with pytest.raises(ValueError, match="mode"):
        FrameAveraging(CartesianToy(), mode="random")
    with pytest.raises(ValueError, match="kind"):
        FrameAveraging(CartesianToy(), outputs={"energy": "scalar"})
    with pytest.raises(ValueError, match="declare the energy"):
        FrameAveraging(CartesianToy(), outputs={"forces": "forces"})
    data = _graph(torch.randn(4, 3))
    data.cell = torch.eye(3)[None]
    with pytest.raises(ValueError, match="periodic"):
        FrameAveraging(CartesianToy(), outputs={"energy": "invariant"})(data)
    with pytest.raises(KeyError, match="not 'charge'"):
        FrameAveraging(CartesianToy(), outputs={"charge": "invariant"})(_graph(torch.randn(4, 3)))


class _MonteCarlo(nn.Module):
    """Mean of ``draws`` stochastic frame averages (one batched call)."""

    def __init__(self, model: FrameAveraging, draws: int) -> None:
        super().__init__()
        self.model, self.draws = model, draws

    def forward(self, data):
        copies = Batch.from_data_list([data] * self.draws)
        return self.model(copies)["energy"].mean()[None]


def test_stochastic_mean_passes_assert_equivariant_within_sampling_error():
    data = _graph(torch.randn(6, 3, dtype=torch.float64), cutoff=2.5)
    toy = CartesianToy().double()
    stochastic = FrameAveraging(
        toy,
        mode="stochastic",
        outputs={"energy": "invariant"},
        generator=torch.Generator().manual_seed(1),
    )
    with torch.no_grad():
        spread = float(stochastic(Batch.from_data_list([data] * 2000))["energy"].std())
    draws = 4000
    tolerance = 5 * spread * (2 / draws) ** 0.5  # difference of two independent means
    report = assert_equivariant(
        _MonteCarlo(stochastic, draws),
        data,
        outputs={"output": "invariant"},
        atol=tolerance,
        rtol=0,
    )
    assert max(report.errors.values()) < tolerance
    # while a single draw is not invariant at that tolerance
    single = check_equivariance(_MonteCarlo(stochastic, 1), data, atol=tolerance, rtol=0, trials=4)
    assert not single.ok
