r"""Export a trained model as a self-contained artifact for MD engines and other processes.

The artifact computes, for one structure,

.. math::

    E = \sum_i E_i, \qquad \mathbf F_i = -\frac{\partial E}{\partial \vec x_i}, \qquad
    W = -\frac{\partial E}{\partial \epsilon}\Big|_{\epsilon = 0}

(:math:`\epsilon` a symmetric strain applied to positions and cell; the stress is
:math:`\sigma = -W / V`, ASE's sign convention).  The forces and the virial are traced
into the graph (``make_fx`` through autograd), so the artifact needs neither geobasis
nor Python autograd at run time.

Call signature of the artifact (``torch.export`` / AOTInductor conventions)::

    energy [], atomic_energies [N], forces [N, 3], virial [3, 3] = artifact(
        positions [N, 3], atomic_numbers [N] int64, edge_index [2, E] int64,
        shifts [E, 3], cell [3, 3])

with the edge ``j -> i`` as ``edge_index[:, e] = (j, i)`` and edge vector
``positions[j] + shifts[e] @ cell - positions[i]`` (ASE's ``neighbor_list("ijS")`` gives
``i, j, S``); every pair within the cutoff, both directions, no self-pairs of an atom
with itself in the same image.  Molecules pass zero ``shifts`` and a zero ``cell``.
``positions``, ``shifts`` and ``cell`` have the dtype the model was exported in.

Two formats, both a single ``.pt2`` file:

* ``"aoti"``: an AOTInductor package (compiled C++ kernels; needs a C++ compiler to
  export). Python: ``torch._inductor.aoti_load_package(path)``; C++:
  ``torch::inductor::AOTIModelPackageLoader``. The fastest to run.
* ``"program"``: a ``torch.export`` program. Python: ``torch.export.load(path).module()``.
  Quick to export, no compiler needed.

The metadata (cutoff, dtype, trained elements, model name) travels inside the file;
:func:`read_metadata` reads it without geobasis' models.

Reference: the deployment path of NequIP (``nequip-compile``, TorchScript and
AOTInductor), Tan et al., "High-performance training and inference for deep equivariant
interatomic potentials" (2025).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import torch
from torch import Tensor

from geobasis._tracing import plain_operations
from geobasis.nn import AtomisticModel
from geobasis.nn.models.atomistic import AtomicGraph

__all__ = ["EXPORT_FORMATS", "export_model", "load_exported", "read_metadata", "is_exported"]

#: artifact formats of :func:`export_model`
EXPORT_FORMATS = ("aoti", "program")

_METADATA = "geobasis.json"


def _energy_forces_virial(model: AtomisticModel):
    """The traced function: one structure in, ``(E, E_i, F, W)`` out."""

    def compute(positions: Tensor, numbers: Tensor, edge_index: Tensor, shifts: Tensor,
                cell: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:  # fmt: skip
        positions = positions.detach().requires_grad_()
        strain = torch.zeros(3, 3, dtype=positions.dtype, requires_grad=True)
        symmetric = 0.5 * (strain + strain.t())
        strained = positions + positions @ symmetric
        strained_cell = (cell + cell @ symmetric)[None]
        batch = torch.zeros_like(numbers)
        graph = AtomicGraph(numbers, strained, batch, edge_index, shifts, strained_cell)
        atomic = model.atomic_energies(graph)
        energy = atomic.sum()
        d_positions, d_strain = torch.autograd.grad(energy, [positions, strain])
        return energy.detach(), atomic.detach(), -d_positions, -d_strain

    return compute


def _example(model: AtomisticModel, dtype: torch.dtype) -> tuple[Tensor, ...]:
    """A small molecule-like structure of the trained elements: the tracing example."""
    elements = torch.nonzero(model.trained_elements).flatten()
    if elements.numel() == 0:
        elements = torch.tensor([1, 6, 8])
    generator = torch.Generator().manual_seed(0)
    positions = torch.rand(6, 3, generator=generator, dtype=dtype) * min(model.cutoff, 3.0)
    numbers = elements[torch.arange(6) % elements.numel()]
    source, target = torch.nonzero(~torch.eye(6, dtype=torch.bool), as_tuple=True)
    edge_index = torch.stack([source, target])  # all pairs: shorter than the cutoff
    shifts = torch.zeros(edge_index.shape[1], 3, dtype=dtype)
    return positions, numbers, edge_index, shifts, torch.zeros(3, 3, dtype=dtype)


def _exported_program(model: AtomisticModel, dtype: torch.dtype) -> torch.export.ExportedProgram:
    from torch.fx.experimental.proxy_tensor import make_fx

    model = model.to(dtype=dtype, device="cpu").eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    example = _example(model, dtype)
    with plain_operations(), torch.enable_grad():
        graph = make_fx(
            _energy_forces_virial(model), tracing_mode="symbolic", _allow_non_fake_inputs=True
        )(*example)
    atoms, edges = torch.export.Dim("atoms", min=1), torch.export.Dim("edges", min=0)
    shapes = ({0: atoms}, {0: atoms}, {1: edges}, {0: edges}, None)
    return torch.export.export(graph, example, dynamic_shapes=shapes, strict=False)


def export_model(
    model: AtomisticModel,
    path: str | Path,
    format: str = "aoti",
    dtype: torch.dtype = torch.float64,
) -> Path:
    """Write ``model`` as a self-contained ``.pt2`` artifact (see the module docstring).

    Args:
        model: a trained :class:`~geobasis.nn.AtomisticModel` (not modified: a copy is
            traced).
        path: the output file.
        format: ``"aoti"`` (AOTInductor package, compiled; about a minute or two on a CPU)
            or ``"program"`` (``torch.export`` program).
        dtype: the precision the artifact computes in (``torch.float64`` or ``float32``).
    """
    import copy

    if format not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {EXPORT_FORMATS}, got {format!r}")
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    if not model.supports_compile:
        raise ValueError(f"model {model.name!r} cannot be exported (its forward is not traceable)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {
        "format": format,
        "model": model.name,
        "cutoff": float(model.cutoff),
        "dtype": str(dtype).removeprefix("torch."),
        "trained_elements": torch.nonzero(model.trained_elements).flatten().tolist(),
        "outputs": ["energy", "atomic_energies", "forces", "virial"],
    }
    program = _exported_program(copy.deepcopy(model), dtype)
    if format == "program":
        torch.export.save(program, path, extra_files={_METADATA: json.dumps(metadata)})
        return path
    from geobasis.typing import WITH_CPU_COMPILER

    if not WITH_CPU_COMPILER:
        raise ValueError(
            "format: 'aoti' needs a C++ compiler and the Python headers "
            "(e.g. apt install g++ python3-dev); or export with format='program'"
        )
    configs = {"aot_inductor.metadata": {"geobasis": json.dumps(metadata)}}
    torch._inductor.aoti_compile_and_package(
        program, package_path=str(path), inductor_configs=configs
    )
    return path


def is_exported(path: str | Path) -> bool:
    """Is ``path`` an artifact of :func:`export_model` (rather than a training checkpoint)?"""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False
    return any("/aotinductor/" in n or n.endswith("/" + _METADATA) for n in names)


def read_metadata(path: str | Path) -> dict:
    """The metadata :func:`export_model` stored in the artifact (cutoff, dtype, elements)."""
    path = Path(path)
    if not is_exported(path):
        raise ValueError(f"{path}: not an exported geobasis model (see `geobasis export`)")
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            if name.endswith("/" + _METADATA):
                return json.loads(archive.read(name))
    package = torch._inductor.aoti_load_package(str(path))
    return json.loads(package.get_metadata()["geobasis"])


def load_exported(path: str | Path):
    """``(callable, metadata)`` of an artifact, in either format."""
    metadata = read_metadata(path)
    if metadata["format"] == "aoti":
        return torch._inductor.aoti_load_package(str(path)), metadata
    return torch.export.load(str(path)).module(), metadata
