"""The model registry: options from signatures, validated building, checkpoints of every
layout (version 1, written before the architecture change, is a committed fixture)."""

import json
from pathlib import Path

import pytest
import torch
from torch_geometric.data import Batch, Data

from geobasis.nn import MODELS, FAENet, Potential, build_model, load_model
from geobasis.serialization import load_checkpoint, save_checkpoint

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def test_every_option_is_typed_documented_and_recorded():
    for name, cls in MODELS.items():
        options = cls.options()
        for option in options.values():
            assert option.help, f"{name}.{option.name} has no Args: entry"
            assert option.type is not None
        model = build_model(name, channels=4, num_layers=1)
        assert set(model.config) == {"model", *options} and model.config["model"] == name


def test_build_model_names_what_is_wrong():
    with pytest.raises(ValueError, match="takes no option 'lmax'"):
        build_model("faenet", lmax=3)
    with pytest.raises(ValueError, match="unknown model 'schnet'"):
        build_model("schnet")
    with pytest.raises(ValueError, match="channels: expected int"):
        build_model("potential", channels="many")
    with pytest.raises(ValueError, match="nonlinearity: must be one of"):
        Potential(nonlinearity="relu")


@pytest.mark.parametrize("name", ["potential", "faenet"])
def test_version_1_checkpoints_load_and_predict_the_same(name):
    """Checkpoints written before the model computed edge geometry once (one radial basis
    per conv, ``best.pt`` without optimiser) load and give the energies they gave."""
    expected = json.loads((FIXTURES / "v1_expected.json").read_text())
    molecule = Data(pos=torch.tensor(expected["pos"]), z=torch.tensor(expected["z"]))
    model = load_model(FIXTURES / f"v1_{name}_best.pt")
    out = model(molecule)
    # energies are float64 (references added in float64) whatever the model's dtype
    assert out["energy"].dtype == torch.float64
    energy = torch.tensor(expected[name]["energy"], dtype=torch.float64)
    assert torch.allclose(out["energy"], energy, atol=1e-6)
    assert torch.allclose(out["forces"], torch.tensor(expected[name]["forces"]), atol=1e-5)


def test_a_newer_checkpoint_layout_is_refused_with_its_version(tmp_path):
    state = load_checkpoint(FIXTURES / "v1_potential_best.pt")
    save_checkpoint({**state, "format_version": 99}, tmp_path / "future.pt")
    with pytest.raises(ValueError, match="checkpoint format 99 is newer"):
        load_model(tmp_path / "future.pt")


@pytest.mark.parametrize("cls", [Potential, FAENet])
def test_a_trailing_empty_graph_keeps_its_energy_slot(cls):
    """``num_graphs`` counts a last graph without atoms (``batch.max() + 1`` would not)."""
    model = cls(channels=4, num_layers=1).double().eval()
    molecule = Data(pos=torch.randn(5, 3, dtype=torch.float64), z=torch.tensor([6, 1, 1, 8, 1]))
    empty = Data(pos=torch.zeros(0, 3, dtype=torch.float64), z=torch.zeros(0, dtype=torch.long))
    out = model(Batch.from_data_list([molecule, empty]))
    assert out["energy"].shape == (2,) and out["energy"][1] == 0
    assert torch.allclose(out["energy"][0], model(molecule)["energy"][0])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: setattr(d, "z", torch.tensor([6, 1, 200])), "z: atomic numbers must lie"),
        (lambda d: setattr(d, "z", torch.tensor([6, 1])), r"z must be \[N\] = \[3\]"),
        (lambda d: setattr(d, "z", torch.tensor([6.0, 1.0, 1.0])), "integer atomic numbers"),
        (lambda d: setattr(d, "pos", d.pos.double()), "pos must be .* like the model"),
        (lambda d: setattr(d, "edge_index", d.edge_index.int()), "edge_index must be"),
        (lambda d: setattr(d, "cell", torch.full((1, 3, 3), float("nan"))), "cell has non-finite"),
    ],
)
def test_bad_input_gets_a_one_line_error_naming_the_field(change, message):
    model = Potential(channels=4, lmax=1, num_layers=1)
    data = Data(pos=torch.randn(3, 3), z=torch.tensor([6, 1, 1]))
    data.edge_index = torch.tensor([[0, 1], [1, 0]])
    change(data)
    with pytest.raises(ValueError, match=message):
        model(data)
