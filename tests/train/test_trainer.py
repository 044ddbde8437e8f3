"""Training: a run end to end, atomic checkpoints, resume after kill -9, two processes."""

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from geobasis.train import TrainConfig, load_checkpoint, load_model, train
from geobasis.typing import WITH_CPU_COMPILER

pytest.importorskip("tblite")

TINY = {
    "num_frames": 48,
    "train_size": 32,
    "val_size": 8,
    "test_size": 8,
    "channels": 4,
    "lmax": 1,
    "num_layers": 1,
    "radial_hidden": 8,
    "batch_size": 4,
    "epochs": 3,
    "threads": 1,
}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GEOBASIS_CACHE", str(tmp_path / "cache"))


def _config(**values):
    """A config from flat values (model options at the top level, as in YAML)."""
    return TrainConfig.from_dict(values)


def _flags(options):
    """``geobasis train`` flags for a dict of config values."""
    flags = []
    for key, value in options.items():
        flags += [f"--{key.replace('_', '-')}", str(value)]
    return flags


def _metrics(run):
    with open(run / "metrics.csv", newline="") as file:
        return list(csv.DictReader(file))


def test_run_writes_everything_and_learns(tmp_path):
    config = _config(**{**TINY, "epochs": 6}, runs_dir=str(tmp_path / "runs"), name="a")
    report = train(config, progress=False)
    run = tmp_path / "runs" / "a"
    for name in (
        "config.yaml",
        "splits.json",
        "metrics.csv",
        "best.pt",
        "last.pt",
        "test_metrics.json",
        "learning_curve.png",
        "parity.png",
    ):
        assert (run / name).exists(), name
    rows = _metrics(run)
    assert len(rows) == 6 and float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    splits = json.loads((run / "splits.json").read_text())
    assert len(set(splits["train"]) | set(splits["val"]) | set(splits["test"])) == 48
    state = torch.load(run / "last.pt", weights_only=True)  # plain tensors only
    assert state["epoch"] == 6 and "optimizer" in state and "ema" in state
    model = load_model(run / "best.pt")
    assert report["force_mae_meV_per_A"] > 0 and model.cutoff == 5.0
    assert TrainConfig.from_yaml(run / "config.yaml").model_options["channels"] == 4
    with pytest.raises(FileExistsError):
        train(config, progress=False)
    from geobasis.cli import main

    assert main(["evaluate", str(run / "best.pt")]) == 0
    report_path = tmp_path / "md.json"
    assert (
        main(
            ["md", str(run / "best.pt"), "--time", "0.01", "--quiet", "--report", str(report_path)]
        )
        == 0
    )
    assert "drift_meV_per_atom_per_ps" in json.loads(report_path.read_text())


def test_resume_after_kill_ends_where_an_uninterrupted_run_ends(tmp_path):
    runs = tmp_path / "runs"
    options = {**TINY, "epochs": 4, "checkpoint_every": 2}
    reference = _config(**options, runs_dir=str(runs), name="whole")
    train(reference, progress=False)
    # the same run in a child process, killed with SIGKILL after a mid-epoch checkpoint
    flags = _flags(options)
    command = [
        sys.executable,
        "-m",
        "geobasis.cli",
        "train",
        *flags,
        "--runs-dir",
        str(runs),
        "--name",
        "killed",
        "--quiet",
    ]
    child = subprocess.Popen(command, env=os.environ.copy())
    last = runs / "killed" / "last.pt"
    deadline = time.time() + 240
    while time.time() < deadline:
        if last.exists():
            state = load_checkpoint(last)
            if state["epoch"] >= 1 and state["step_in_epoch"] > 0:  # inside epoch 2
                break
        if child.poll() is not None:
            pytest.fail("the child finished before it could be killed")
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    load_checkpoint(last)  # complete: written whole, then renamed
    resumed = TrainConfig(runs_dir=str(runs), name="killed")
    train(resumed, resume=True, progress=False)
    assert not list((runs / "killed").glob("*.tmp"))  # a cut-short write is cleaned up
    a = load_checkpoint(runs / "whole" / "last.pt")["model"]
    b = load_checkpoint(runs / "killed" / "last.pt")["model"]
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6), key
    whole, killed = _metrics(runs / "whole"), _metrics(runs / "killed")
    assert len(killed) == 4
    for a, b in zip(whole, killed, strict=True):  # the losses of resumed epochs are whole too
        assert float(b["train_loss"]) == pytest.approx(float(a["train_loss"]), rel=1e-5)
    assert all(float(b["seconds"]) > 0 for b in killed)
    assert float(killed[-1]["seconds"]) >= float(killed[0]["seconds"])


def test_two_processes_hold_identical_parameters(tmp_path):
    runs = tmp_path / "runs"
    options = {**TINY, "num_frames": 80, "train_size": 64, "batch_size": 2, "epochs": 6}
    # a time budget, stage two and mid-epoch checkpoints take the paths where ranks must
    # agree (rank 0's clock decides progress and stopping; only rank 0 saves)
    timing = {"max_minutes": 10, "stage_two": 0.5, "checkpoint_every": 3}
    flags = _flags({**options, **timing, "lr": 0.01})
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29517",
        "-m",
        "geobasis.cli",
        "train",
        *flags,
        "--runs-dir",
        str(runs),
        "--name",
        "ddp",
        "--quiet",
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=400, env=os.environ.copy()
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((runs / "ddp" / "test_metrics.json").read_text())
    assert report["world_size"] == 2
    first, second = report["parameter_checksums"]
    assert first == second
    losses = [float(r["train_loss"]) for r in _metrics(runs / "ddp")]
    assert len(losses) == 6 and sum(losses[-2:]) / 2 < 0.8 * losses[0]


def test_config_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown config keys"):
        TrainConfig.from_dict({"chanels": 3})
    bad = tmp_path / "c.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="mapping"):
        TrainConfig.from_yaml(bad)
    with pytest.raises(FileNotFoundError, match="no such file"):
        train(
            TrainConfig(data=str(tmp_path / "missing.npz"), runs_dir=str(tmp_path)), progress=False
        )
    with pytest.raises(FileNotFoundError, match="--resume"):
        train(TrainConfig(runs_dir=str(tmp_path), name="none"), resume=True, progress=False)


def test_cli_reads_a_yaml_config_and_flags_override_it(tmp_path):
    import yaml

    from geobasis.cli import main

    config = tmp_path / "run.yaml"
    values = {**TINY, "epochs": 2, "runs_dir": str(tmp_path / "runs"), "name": "yaml"}
    # PyYAML reads `2e-3` (no dot) as a string: the config reads it as the float it means
    config.write_text(yaml.safe_dump(values) + "lr: 2e-3\n")
    assert main(["train", "--config", str(config), "--epochs", "1", "--quiet"]) == 0
    saved = TrainConfig.from_yaml(tmp_path / "runs" / "yaml" / "config.yaml")
    assert saved.model_options["channels"] == 4 and saved.epochs == 1 and saved.lr == 0.002


def test_faenet_model_switch_trains_and_reloads(tmp_path):
    from geobasis.cli import main
    from geobasis.nn import FAENet

    runs = tmp_path / "runs"
    faenet = {k: v for k, v in TINY.items() if k not in ("lmax", "radial_hidden")}
    flags = _flags({**faenet, "epochs": 4, "channels": 8})
    assert (
        main(
            [
                "train",
                *flags,
                "--model",
                "faenet",
                "--runs-dir",
                str(runs),
                "--name",
                "fa",
                "--quiet",
            ]
        )
        == 0
    )
    rows = _metrics(runs / "fa")
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    model = load_model(runs / "fa" / "best.pt")
    assert isinstance(model, FAENet) and model.config["frames"] == "stochastic"
    assert TrainConfig.from_yaml(runs / "fa" / "config.yaml").model == "faenet"
    with pytest.raises(ValueError, match="model: must be one of"):
        TrainConfig(model="schnet")


@pytest.mark.skipif(not WITH_CPU_COMPILER, reason="torch.compile on CPU needs a C++ compiler")
def test_compiled_training_step_learns_like_the_eager_one(tmp_path):
    runs = tmp_path / "runs"
    options = {**TINY, "epochs": 2}
    eager = train(_config(**options, runs_dir=str(runs), name="eager"), progress=False)
    compiled = train(
        _config(**options, compile=True, runs_dir=str(runs), name="compiled"), progress=False
    )
    # same data, seed and order: the compiled graph computes the same losses (float32)
    a, b = _metrics(runs / "eager"), _metrics(runs / "compiled")
    for row_a, row_b in zip(a, b):
        assert float(row_b["train_loss"]) == pytest.approx(float(row_a["train_loss"]), rel=1e-3)
    assert compiled["force_mae_meV_per_A"] == pytest.approx(eager["force_mae_meV_per_A"], rel=1e-2)
    with pytest.raises(ValueError, match="compile: model 'faenet' cannot be compiled"):
        TrainConfig(model="faenet", compile=True)


def test_config_is_typed_and_validated_against_the_model():
    """Every value is type-checked when read; a model option the chosen model does not take
    is an error naming it; top-level YAML model options move into the model section."""
    assert TrainConfig.from_dict({"lr": "2e-3", "epochs": "3"}).lr == 0.002
    with pytest.raises(ValueError, match="lr: expected float"):
        TrainConfig.from_dict({"lr": "fast"})
    with pytest.raises(ValueError, match="epochs: expected int"):
        TrainConfig.from_dict({"epochs": 2.5})
    with pytest.raises(ValueError, match="takes no option 'lmax'"):
        TrainConfig.from_dict({"model": "faenet", "lmax": 3})
    with pytest.raises(ValueError, match="product: must be one of"):
        TrainConfig.from_dict({"product": "tensor"})
    config = TrainConfig.from_dict({"lmax": 3, "model_options": {"channels": 8}})
    assert config.model_options == {"lmax": 3, "channels": 8}
    assert config.model_option("cutoff") == 5.0  # the model's own default


def test_config_written_before_the_model_section_still_reads():
    """Version-1 configs (flat keys for every model, ``extra``) upgrade: the chosen model's
    options are kept, the other model's dropped, ``frame_group`` renamed to ``group``."""
    old = {"model": "faenet", "channels": 16, "lmax": 2, "radial_hidden": 32, "product": "cg",
           "frames": "full", "frame_group": "SO3", "cutoff": 4.0, "extra": {}}  # fmt: skip
    config = TrainConfig.from_dict(old)
    assert config.model_options == {"channels": 16, "frames": "full", "group": "SO3", "cutoff": 4.0}


def test_cli_explains_itself_and_errors_in_one_line(capsys):
    from geobasis.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    choices_shown = (
        "{potential,faenet,manybody}",
        "{cg,gaunt_grid,gaunt_fourier,so2}",
        "{gate,s2}",
    )
    for choices in choices_shown:
        assert choices in text
    assert "default: X" not in text and "initial learning rate" in text
    from geobasis.cli import build_parser

    parser = build_parser()
    train_parser = parser._subparsers._group_actions[0].choices["train"]
    for action in train_parser._actions:
        assert action.help and len(action.help) > 10, action.option_strings
    assert main(["train", "--model", "faenet", "--lmax", "3"]) == 2
    error = capsys.readouterr().err
    assert "lmax" in error and "Traceback" not in error and len(error.strip().splitlines()) == 1


def test_a_second_writer_of_a_run_folder_is_refused(tmp_path):
    """Two ``train`` calls with one ``--name`` used to both run and mix their files."""
    from geobasis.train.run import run_lock

    runs = tmp_path / "runs"
    with run_lock(runs / "same"):
        with pytest.raises(FileExistsError, match="being written by another process"):
            train(_config(**TINY, runs_dir=str(runs), name="same"), progress=False)
        with pytest.raises(FileExistsError, match="being written by another process"):
            train(_config(**TINY, runs_dir=str(runs), name="same"), resume=True, progress=False)
    with run_lock(runs / "same"):  # released with the first holder
        pass


def test_without_a_validation_set_the_last_model_is_the_best(tmp_path):
    """``--val-size 0`` kept the epoch-1 model with a validation MAE of 0.0."""
    runs = tmp_path / "runs"
    config = _config(**{**TINY, "val_size": 0, "epochs": 3}, runs_dir=str(runs), name="noval")
    train(config, progress=False)
    rows = _metrics(runs / "noval")
    assert all(r["val_loss"] == "nan" for r in rows)
    best, last = (load_checkpoint(runs / "noval" / n) for n in ("best.pt", "last.pt"))
    assert best["epoch"] == last["epoch"] == 3


@pytest.mark.parametrize("key", ["epochs", "batch_size", "train_size", "lr"])
def test_sizes_and_rates_must_be_positive(key):
    with pytest.raises(ValueError, match=f"{key}: must be positive"):
        TrainConfig.from_dict({key: 0})


def test_metrics_file_is_rebuilt_from_the_checkpoint_after_any_kill(tmp_path):
    """A kill between ``last.pt`` and ``metrics.csv`` (or a torn row) leaves a file that the
    next start rewrites from the checkpoint's history: no duplicate, no missing row."""
    runs = tmp_path / "runs"
    train(_config(**{**TINY, "epochs": 2}, runs_dir=str(runs), name="m"), progress=False)
    path = runs / "m" / "metrics.csv"
    good = path.read_text()
    path.write_text(good + good.splitlines()[-1] + "\n2,17,0.001,0.5")  # duplicate + torn
    train(TrainConfig(runs_dir=str(runs), name="m"), resume=True, progress=False)
    assert path.read_text() == good
    history = load_checkpoint(runs / "m" / "last.pt")["history"]
    assert [int(r["epoch"]) for r in _metrics(runs / "m")] == [r["epoch"] for r in history]


def test_a_non_finite_loss_stops_the_run_naming_the_structures(tmp_path, monkeypatch):
    """A NaN loss used to train on with NaN parameters and end with no best.pt."""
    from geobasis.train import trainer as trainer_module

    real = trainer_module.energy_force_loss
    calls = {"n": 0}

    def poisoned(out, batch, *args):
        calls["n"] += 1
        loss = real(out, batch, *args)
        return loss * float("nan") if calls["n"] == 3 else loss

    monkeypatch.setattr(trainer_module, "energy_force_loss", poisoned)
    runs = tmp_path / "runs"
    with pytest.raises(FloatingPointError, match=r"epoch 1, step 3: structures \[\d+(, \d+)*\]"):
        train(_config(**TINY, runs_dir=str(runs), name="nan"), progress=False)
    calls["n"] = 0
    with pytest.warns(UserWarning, match="skipped"):
        report = train(
            _config(**TINY, skip_non_finite=True, runs_dir=str(runs), name="skip"), progress=False
        )
    assert math.isfinite(report["force_mae_meV_per_A"])


def test_log_file_per_element_errors_and_annotated_plots(tmp_path, capsys):
    """Epoch lines go to the console and ``train.log`` (no progress-bar noise in either);
    the report has the force MAE per element."""
    runs = tmp_path / "runs"
    report = train(_config(**{**TINY, "epochs": 2}, runs_dir=str(runs), name="log"), progress=True)
    log = (runs / "log" / "train.log").read_text()
    assert log.count("epoch ") >= 2 and "test split: energy MAE" in log and "\r" not in log
    assert "epoch   1" in capsys.readouterr().out
    by_element = report["force_mae_meV_per_A_by_element"]
    assert set(by_element) == {"1", "6", "8"}  # ethanol
    assert min(by_element.values()) > 0
    saved = json.loads((runs / "log" / "test_metrics.json").read_text())
    assert saved["force_mae_meV_per_A_by_element"] == by_element


def test_train_takes_structures_from_python(tmp_path):
    """A user's own list of PyG ``Data`` (or a ``Dataset``) trains without a file."""
    from torch_geometric.data import Data

    g = torch.Generator().manual_seed(0)
    structures = [
        Data(pos=torch.randn(3, 3, generator=g, dtype=torch.float64) + torch.eye(3) * 1.2,
             z=torch.tensor([8, 1, 1]), energy=torch.randn(1, dtype=torch.float64),
             forces=torch.randn(3, 3, generator=g, dtype=torch.float64))
        for _ in range(20)
    ]  # fmt: skip
    config = _config(**{**TINY, "train_size": 12, "val_size": 4, "test_size": 4},
                     runs_dir=str(tmp_path), name="py")  # fmt: skip
    report = train(config, progress=False, dataset=structures)
    assert report["test_structures"] == 4 and math.isfinite(report["energy_mae_meV"])
    assert TrainConfig.from_yaml(tmp_path / "py" / "config.yaml").data == "<python>"


def test_tensorboard_event_files_hold_the_epoch_metrics(tmp_path):
    pytest.importorskip("tensorboard", reason="the test extra installs tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runs = tmp_path / "runs"
    train(_config(**{**TINY, "epochs": 2}, tensorboard=True, runs_dir=str(runs), name="tb"),
          progress=False)  # fmt: skip
    events = EventAccumulator(str(runs / "tb" / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train_loss", "val_loss", "lr", "val_force_mae_meV_per_A"} <= tags
    assert [e.step for e in events.Scalars("train_loss")] == [1, 2]
