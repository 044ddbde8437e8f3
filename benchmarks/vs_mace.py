"""geobasis' many-body potential against MACE (mace-torch 0.3.16) at equal CPU time.

Both train on the same structures for the same wall-clock budget, each pinned to its own
core (``taskset``, one thread), at the same time:

* rMD17 aspirin and ethanol (``../shared/data/rmd17``): 950 training / 50 validation
  configurations of ``train_01`` (one split, written once and given to both), tested on
  all 1,000 of ``test_01``;
* 3BPA (``../shared/data/3bpa``): 450 / 50 of ``train_300K.xyz``, tested on
  ``train_mixedT.xyz`` (higher temperatures: extrapolation), isolated-atom reference
  energies from ``iso_atoms.xyz`` for both.

MACE runs in its own virtual environment (it pins e3nn 0.4.4): ``--mace-venv`` (created
with ``torch==2.13.0`` first, then ``pip install mace-torch==0.3.16`` when absent; skipped
with a message where that is impossible).  MACE is configured as its documentation does
for rMD17-sized data (32 channels, ``max_L`` 1, correlation 3, ``max_ell`` 3, 2
interactions, float64, EMA, stage two / SWA over the last quarter); its number of epochs
comes from a 1-epoch pilot so that it ends within the budget (MACE has no time limit).
geobasis runs ``geobasis train --model manybody --max-minutes`` (its schedule follows
the time budget).  Test errors of both are computed here from their predictions the same
way; inference molecules/s are measured in each one's own environment (energy + forces,
one thread, batches of 16).

``--ablation`` instead trains geobasis variants on aspirin two at a time (many-body CG /
Gaunt grid, with and without stage two, the two-body ``Potential``).

Writes results/vs_mace.{json,md} (results/vs_mace_ablation.{json,md} for ``--ablation``).

    python benchmarks/vs_mace.py [--minutes 20] [--systems aspirin ethanol 3bpa]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from _common import RESULTS, environment

from geobasis.data import read, split

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
HELPER = Path(__file__).resolve().parent / "_mace_helper.py"

MACE_FLAGS = [
    "--model", "MACE", "--num_channels", "32", "--max_L", "1", "--correlation", "3",
    "--max_ell", "3", "--num_interactions", "2", "--r_max", "5.0", "--batch_size", "5",
    "--valid_batch_size", "10", "--lr", "0.01", "--ema", "--ema_decay", "0.99", "--amsgrad",
    "--default_dtype", "float64", "--device", "cpu", "--seed", "123", "--swa",
    "--scaling", "rms_forces_scaling", "--error_table", "TotalMAE", "--eval_interval", "1",
    "--energy_key", "REF_energy", "--forces_key", "REF_forces",
]  # fmt: skip

GEOBASIS_FLAGS = ["--model", "manybody", "--batch-size", "5", "--lr", "0.01", "--threads", "1",
                  "--stage-two", "0.75", "--epochs", "100000"]  # fmt: skip


def systems() -> dict[str, dict]:
    """Data of each system: training file, test file, reference energies."""
    rmd17 = DATA / "rmd17"
    out = {
        name: {
            "train": rmd17 / f"rmd17_{name}_train_01.npz",
            "test": rmd17 / f"rmd17_{name}_test_01.npz",
            "train_size": 950,
            "val_size": 50,
            "e0s": None,
        }  # fmt: skip
        for name in ("aspirin", "ethanol")
    }
    out["3bpa"] = {"train": DATA / "3bpa" / "train_300K.xyz",
                   "test": DATA / "3bpa" / "train_mixedT.xyz",
                   "train_size": 450, "val_size": 50,
                   "e0s": DATA / "3bpa" / "iso_atoms.xyz"}  # fmt: skip
    return out


# ---------------------------------------------------------------------------- data
def write_xyz(structures: list, path: Path) -> None:
    """Extended XYZ with ``REF_energy`` / ``REF_forces`` (what MACE reads)."""
    from ase import Atoms
    from ase.io import write

    frames = []
    for data in structures:
        atoms = Atoms(numbers=data.z.numpy(), positions=data.pos.double().numpy())
        atoms.info["REF_energy"] = float(data.energy)
        atoms.arrays["REF_forces"] = data.forces.double().numpy()
        frames.append(atoms)
    write(path, frames, format="extxyz")


def prepare_system(name: str, spec: dict, work: Path) -> dict:
    """One split for both codes: ``split.json`` (geobasis) and train/valid/test .xyz (MACE)."""
    work.mkdir(parents=True, exist_ok=True)
    structures, test = read(spec["train"]), read(spec["test"])
    splits = split(len(structures), spec["train_size"], spec["val_size"], 0, seed=0)
    (work / "split.json").write_text(json.dumps(splits.to_dict()))
    write_xyz([structures[i] for i in splits.train.tolist()], work / "train.xyz")
    write_xyz([structures[i] for i in splits.val.tolist()], work / "valid.xyz")
    write_xyz(test, work / "test.xyz")
    return {"test": test, "atoms": int(test[0].num_nodes)}


# ---------------------------------------------------------------------------- runs
def geobasis_command(spec: dict, work: Path, minutes: float, name: str, extra: list) -> list:
    command = [sys.executable, "-m", "geobasis.cli", "train", "--data", str(spec["train"]),
               "--split-file", str(work / "split.json"), "--test-data", str(spec["test"]),
               "--max-minutes", str(minutes), "--runs-dir", str(work / "runs"), "--name", name,
               "--quiet", *GEOBASIS_FLAGS, *extra]  # fmt: skip
    if spec["e0s"] is not None:
        command += ["--e0s", str(spec["e0s"])]
    return command


def mace_command(venv: Path, spec: dict, work: Path, name: str, epochs: int) -> list:
    e0s = "average"
    if spec["e0s"] is not None:
        values = {int(d.z[0]): float(d.energy) for d in read(spec["e0s"])}
        e0s = json.dumps(values).replace('"', "")
    return [str(venv / "bin" / "mace_run_train"), "--name", name,
            "--train_file", str(work / "train.xyz"), "--valid_file", str(work / "valid.xyz"),
            "--E0s", e0s, "--max_num_epochs", str(epochs),
            "--start_swa", str(max(1, int(0.75 * epochs))), *MACE_FLAGS,
            "--work_dir", str(work / name)]  # fmt: skip


def pinned(command: list, core: int) -> tuple[list, dict]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    prefix = ["taskset", "-c", str(core)] if shutil.which("taskset") else []
    return prefix + command, env


def epoch_times(log_dir: Path) -> list[float]:
    """Seconds between consecutive evaluations (``Initial:``, ``Epoch N:`` lines) of MACE's
    log: the time of one epoch, its validation included."""
    stamps = []
    for log in sorted(log_dir.glob("**/*_run-*[0-9].log")):
        for line in log.read_text().splitlines():
            match = re.match(
                r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) INFO: (Epoch \d+|Initial):", line
            )
            if match:
                stamps.append(datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S.%f"))
    return [(b - a).total_seconds() for a, b in zip(stamps, stamps[1:], strict=False)]


def mace_epochs_for(venv: Path, spec: dict, work: Path, minutes: float, core: int) -> tuple:
    """``(epochs, seconds per epoch)`` fitting ``minutes`` after a 1-epoch pilot."""
    command, env = pinned(mace_command(venv, spec, work, "pilot", 1), core)
    subprocess.run(command, env=env, cwd=work, check=True, capture_output=True)
    per_epoch = epoch_times(work / "pilot")[-1]
    return max(1, int(60 * minutes * 0.97 / per_epoch)), per_epoch


def ensure_mace(venv: Path) -> bool:
    """MACE's virtual environment (created when absent); False with a message if impossible."""
    if (venv / "bin" / "mace_run_train").exists():
        return True
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "pip"), "install", "-q"]
        subprocess.run([*pip, "torch==2.13.0"], check=True)
        subprocess.run([*pip, "mace-torch==0.3.16"], check=True)
    except (subprocess.CalledProcessError, OSError) as error:
        print(f"skipping MACE: cannot create its environment in {venv} ({error})")
        return False
    return True


# ---------------------------------------------------------------------------- metrics
def errors(energy, forces, test: list) -> dict:
    """Energy (meV per structure) and force (meV/Å per component) MAE / RMSE."""
    e_ref = torch.stack([d.energy.double().reshape(()) for d in test])
    f_ref = torch.cat([d.forces.double() for d in test])
    de = torch.as_tensor(energy, dtype=torch.float64).reshape(-1) - e_ref
    df = torch.as_tensor(forces, dtype=torch.float64).reshape(-1, 3) - f_ref
    return {"energy_mae_meV": 1e3 * float(de.abs().mean()),
            "energy_rmse_meV": 1e3 * float(de.square().mean().sqrt()),
            "force_mae_meV_per_A": 1e3 * float(df.abs().mean()),
            "force_rmse_meV_per_A": 1e3 * float(df.square().mean().sqrt())}  # fmt: skip


def geobasis_result(run_dir: Path, test: list, batch: int = 16) -> dict:
    """Test errors of ``best.pt`` on all of ``test`` and its inference molecules/s."""
    from torch_geometric.loader import DataLoader

    from geobasis.data import prepare
    from geobasis.nn import load_model

    torch.set_num_threads(1)
    model = load_model(run_dir / "best.pt")
    dtype = next(model.parameters()).dtype
    loader = DataLoader(prepare(test, model.cutoff, dtype), batch_size=batch)

    def predict():
        outs = [model(b) for b in loader]
        return torch.cat([o["energy"] for o in outs]), torch.cat([o["forces"] for o in outs])

    energy, forces = predict()
    times = []
    for _ in range(3):
        start = time.perf_counter()
        predict()
        times.append(time.perf_counter() - start)
    history = (run_dir / "metrics.csv").read_text().splitlines()
    last = dict(zip(history[0].split(","), history[-1].split(","), strict=True))
    steps, seconds = int(last["step"]), float(last["seconds"])
    return {**errors(energy, forces, test), "epochs": int(last["epoch"]),
            "step_ms": 1e3 * seconds / max(steps, 1),
            "molecules_per_s": len(test) / sorted(times)[1],
            "parameters": sum(p.numel() for p in model.parameters())}  # fmt: skip


def mace_result(venv: Path, work: Path, name: str, test: list, epochs: int) -> dict:
    # with --swa MACE writes the stage-two model beside the stage-one one: it is the result
    found = [*(work / name).glob(f"{name}_stagetwo.model"), *(work / name).glob(f"{name}.model")]
    model = found[0] if found else None
    if model is None:
        return {"error": "MACE wrote no model"}
    out = work / f"{name}_predictions.json"
    subprocess.run(pinned([str(venv / "bin" / "python"), str(HELPER), str(model),
                           str(work / "test.xyz"), str(out)], 0)[0], check=True)  # fmt: skip
    predictions = json.loads(out.read_text())
    per_epoch = epoch_times(work / name)
    steps_per_epoch = math.ceil(len(json.loads((work / "split.json").read_text())["train"]) / 5)
    return {**errors(predictions["energy"], predictions["forces"], test), "epochs": epochs,
            "step_ms": 1e3 * float(np.median(per_epoch)) / steps_per_epoch if per_epoch else None,
            "molecules_per_s": predictions["molecules_per_s"],
            "parameters": predictions["parameters"]}  # fmt: skip


# ---------------------------------------------------------------------------- drivers
def side_by_side(
    name: str, spec: dict, minutes: float, venv: Path | None, work: Path, extra: list
) -> dict:
    """geobasis on core 1 and MACE on core 0, at the same time, ``minutes`` each."""
    prepared = prepare_system(name, spec, work)
    command, env = pinned(geobasis_command(spec, work, minutes, "geobasis", extra), 1)
    ours = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    row: dict = {"system": name, "minutes": minutes}
    if venv is not None:
        epochs, pilot = mace_epochs_for(venv, spec, work, minutes, 0)
        command, env = pinned(mace_command(venv, spec, work, "mace", epochs), 0)
        subprocess.run(command, env=env, cwd=work, check=True, capture_output=True)
        row["mace"] = {**mace_result(venv, work, "mace", prepared["test"], epochs),
                       "pilot_s_per_epoch": pilot}  # fmt: skip
    if ours.wait() != 0:
        raise RuntimeError(f"geobasis train failed for {name}")
    row["geobasis"] = geobasis_result(work / "runs" / "geobasis", prepared["test"])
    print(json.dumps(row, indent=1), flush=True)
    return row


ABLATIONS = {
    "manybody cg, stage two": [],
    "manybody cg, no stage two": ["--stage-two", "0"],
    "manybody gaunt_grid, stage two": ["--contraction", "gaunt_grid"],
    "two-body Potential, stage two": ["--model", "potential"],
    "manybody cg L=2, stage two": ["--lmax", "2"],
    "manybody gaunt_grid L=2, stage two": ["--lmax", "2", "--contraction", "gaunt_grid"],
}


def ablation(minutes: float, work: Path, names: list[str]) -> list[dict]:
    """geobasis variants on aspirin, two at a time on cores 0 and 1."""
    spec = systems()["aspirin"]
    prepared = prepare_system("aspirin", spec, work)
    rows = []
    for pair in (names[i : i + 2] for i in range(0, len(names), 2)):
        procs = []
        for core, label in enumerate(pair):
            run = re.sub(r"\W+", "-", label)
            command, env = pinned(
                geobasis_command(spec, work, minutes, run, ABLATIONS[label]), core
            )
            procs.append((label, run, subprocess.Popen(command, env=env, cwd=ROOT)))
        for label, run, proc in procs:
            if proc.wait() != 0:
                raise RuntimeError(f"geobasis train failed for {label}")
            rows.append({"variant": label, "minutes": minutes,
                         **geobasis_result(work / "runs" / run, prepared["test"])})  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    return rows


# ---------------------------------------------------------------------------- report
def _fmt(value, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def markdown(rows: list[dict], minutes: float, extra: list) -> str:
    lines = [
        "## geobasis many-body potential vs MACE at equal CPU time",
        "",
        f"{minutes:g} minutes of training each, one core each (taskset, 1 thread), at the same "
        "time; test errors on the whole test file (energy meV per structure, force meV/Å per "
        "component); step ms = training wall time / optimiser steps (validation included); "
        "inference = energy + forces, batches of 16, one thread.",
        "",
        "| system | code | params | epochs | step ms | E MAE | E RMSE | F MAE | F RMSE "
        "| inference mol/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        for code in ("geobasis", "mace"):
            r = row.get(code)
            if r is None or "error" in r:
                continue
            lines.append(
                f"| {row['system']} | {code} | {r['parameters']} | {r['epochs']} | "
                f"{_fmt(r['step_ms'], 0)} | {_fmt(r['energy_mae_meV'], 2)} | "
                f"{_fmt(r['energy_rmse_meV'], 2)} | {_fmt(r['force_mae_meV_per_A'], 2)} | "
                f"{_fmt(r['force_rmse_meV_per_A'], 2)} | {_fmt(r['molecules_per_s'], 0)} |"
            )
        if "mace" in row and "error" not in row["mace"]:
            g, m = row["geobasis"], row["mace"]
            lines.append(
                f"| {row['system']} | **ratio geobasis / MACE** | | | "
                f"{_fmt(g['step_ms'] / m['step_ms'], 2)} | "
                f"{_fmt(g['energy_mae_meV'] / m['energy_mae_meV'], 2)} | | "
                f"{_fmt(g['force_mae_meV_per_A'] / m['force_mae_meV_per_A'], 2)} | | "
                f"{_fmt(g['molecules_per_s'] / m['molecules_per_s'], 2)} |"
            )
    lines += [
        "",
        "MACE flags: `" + " ".join(MACE_FLAGS) + "` (+ `--E0s`, "
        "`--max_num_epochs` from a 1-epoch pilot, `--start_swa` at 3/4 of them).",
        "geobasis flags: `" + " ".join(GEOBASIS_FLAGS + extra) + "`, `--max-minutes` as above.",
    ]
    return "\n".join(lines) + "\n"


def ablation_markdown(rows: list[dict], minutes: float) -> str:
    lines = [
        "## geobasis variants on rMD17 aspirin at equal CPU time",
        "",
        f"{minutes:g} minutes each, one core each, two at a time; all 1,000 test configurations.",
        "",
        "| variant | params | epochs | step ms | E MAE | F MAE |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['parameters']} | {r['epochs']} | {_fmt(r['step_ms'], 0)} | "
            f"{_fmt(r['energy_mae_meV'], 2)} | {_fmt(r['force_mae_meV_per_A'], 2)} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--systems", nargs="+", default=["aspirin", "ethanol", "3bpa"])
    parser.add_argument("--mace-venv", type=Path, default=ROOT.parent / "mace-venv")
    parser.add_argument("--no-mace", action="store_true", help="geobasis only")
    parser.add_argument("--ablation", action="store_true", help="geobasis variants on aspirin")
    parser.add_argument("--variants", nargs="+", choices=list(ABLATIONS), default=list(ABLATIONS)[:4],
                        help="the --ablation variants (rows of an earlier run are kept)")  # fmt: skip
    parser.add_argument("--geobasis-flags", default="", help="extra geobasis train flags")
    parser.add_argument("--work", type=Path, default=Path("/tmp/geobasis-vs-mace"))
    parser.add_argument("--output", default="vs_mace")
    args = parser.parse_args()
    if not DATA.exists():
        print(f"skipping: no data in {DATA} (see ../shared/data/README.md)")
        return
    if args.ablation:
        rows = ablation(args.minutes, args.work / "ablation", args.variants)
        saved = RESULTS / f"{args.output}_ablation.json"
        if saved.exists():  # keep the other variants' rows
            earlier = json.loads(saved.read_text())["rows"]
            rows = [r for r in earlier if r["variant"] not in args.variants] + rows
        payload = {"rows": rows, "environment": environment()}
        (RESULTS / f"{args.output}_ablation.json").write_text(json.dumps(payload, indent=2))
        (RESULTS / f"{args.output}_ablation.md").write_text(ablation_markdown(rows, args.minutes))
        return
    extra = args.geobasis_flags.split()
    venv = None if args.no_mace or not ensure_mace(args.mace_venv) else args.mace_venv
    rows = [
        side_by_side(name, systems()[name], args.minutes, venv, args.work / name, extra)
        for name in args.systems
    ]
    payload = {"rows": rows, "mace_flags": MACE_FLAGS, "geobasis_flags": GEOBASIS_FLAGS + extra,
               "environment": environment()}  # fmt: skip
    (RESULTS / f"{args.output}.json").write_text(json.dumps(payload, indent=2))
    (RESULTS / f"{args.output}.md").write_text(markdown(rows, args.minutes, extra))


if __name__ == "__main__":
    main()
