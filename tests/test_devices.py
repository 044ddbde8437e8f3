"""The same code on CUDA (skipped without a GPU) and under torch.compile."""

import pytest
import torch

from geobasis.graph import edge_vectors, radius_graph
from geobasis.o3 import SphericalHarmonics, random_rotation, spherical_harmonics, wigner_D
from geobasis.radial import BesselBasis, PolynomialEnvelope, SphericalBesselBasis, log_iv, log_kv

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_matches_cpu(dtype):
    x = torch.randn(1000, 3, dtype=dtype)
    for lmax in (0, 3, 5, 8, 14):  # monomials and recurrence on each device
        assert torch.allclose(
            spherical_harmonics(lmax, x.cuda()).cpu(),
            spherical_harmonics(lmax, x),
            atol=1e-5 if dtype == torch.float32 else 1e-12,
        )
    xr = x.cuda().requires_grad_(True)
    (g,) = torch.autograd.grad(spherical_harmonics(6, xr).sum(), xr)
    xc = x.clone().requires_grad_(True)
    (gc,) = torch.autograd.grad(spherical_harmonics(6, xc).sum(), xc)
    assert torch.allclose(g.cpu(), gc, atol=1e-4 if dtype == torch.float32 else 1e-10)
    R = random_rotation(3, dtype=dtype)
    assert torch.allclose(wigner_D(4, R.cuda()).cpu(), wigner_D(4, R), atol=1e-5)
    r = torch.rand(500, dtype=dtype) * 5
    for module in (BesselBasis(6, 5.0), SphericalBesselBasis(4, 5, 5.0), PolynomialEnvelope(5.0)):
        assert torch.allclose(module.cuda()(r.cuda()).cpu(), module.cpu()(r), atol=1e-5)
    # gradients (the spherical Bessel table's written-out backward), also beyond the cutoff
    far = torch.rand(500, dtype=dtype) * 7
    for module in (BesselBasis(6, 5.0), SphericalBesselBasis(4, 5, 5.0)):
        grads = []
        for device in ("cuda", "cpu"):
            leaf = far.to(device).requires_grad_(True)
            out = module.to(device)(leaf)
            grads.append((out.detach().cpu(), torch.autograd.grad(out.sum(), leaf)[0].cpu()))
        tol = 1e-4 if dtype == torch.float32 else 1e-10
        assert torch.allclose(grads[0][0], grads[1][0], atol=tol)
        assert torch.allclose(grads[0][1], grads[1][1], atol=tol, rtol=tol)
    v, z = torch.rand(50, dtype=torch.float64) * 50, torch.rand(50, dtype=torch.float64) * 100
    assert torch.allclose(log_iv(v.cuda(), z.cuda()).cpu(), log_iv(v, z))
    assert torch.allclose(log_kv(v.cuda(), z.cuda()).cpu(), log_kv(v, z))
    pos = torch.randn(300, 3, dtype=dtype) * 3
    assert torch.equal(radius_graph(pos.cuda(), 2.0).cpu(), radius_graph(pos, 2.0))
    cell = torch.eye(3, dtype=dtype) * 4
    e1, s1 = radius_graph(pos.cuda(), 2.0, cell=cell.cuda())
    e0, s0 = radius_graph(pos, 2.0, cell=cell)
    assert torch.equal(e1.cpu(), e0) and torch.equal(s1.cpu(), s0)


def test_inference_path_compiles_without_graph_breaks():
    """torch.compile(fullgraph=True) on harmonics, radial basis and envelope (inference)."""
    sh = SphericalHarmonics(2)
    basis = BesselBasis(4, 5.0)
    envelope = PolynomialEnvelope(5.0)

    def features(vectors):
        length = vectors.norm(dim=-1)
        return sh(vectors)[:, :, None] * (basis(length) * envelope(length)[:, None])[:, None, :]

    compiled = torch.compile(features, fullgraph=True)
    vectors = torch.randn(64, 3)
    with torch.no_grad():
        assert torch.allclose(compiled(vectors), features(vectors), atol=1e-6)


def test_edge_features_from_radius_graph_are_device_generic():
    pos = torch.randn(40, 3)
    edge_index = radius_graph(pos, 2.0)
    vec, length = edge_vectors(pos, edge_index)
    assert vec.device == pos.device and length.shape == (edge_index.shape[1],)


@pytest.mark.parametrize("name", ["cg", "grid", "fourier", "so2", "bracket"])
def test_product_inference_compiles_without_graph_breaks(name):
    """torch.compile(fullgraph=True) on each product's inference path."""
    from geobasis.products import (
        ClebschGordanProduct,
        GauntBracketProduct,
        GauntFourierProduct,
        GauntGridProduct,
        SO2Product,
    )

    cls = {"cg": ClebschGordanProduct, "grid": GauntGridProduct, "fourier": GauntFourierProduct,
           "so2": SO2Product, "bracket": GauntBracketProduct}  # fmt: skip
    product = cls[name](2, 2, 2, 4, "external")
    x1, x2 = torch.randn(16, 9, 4), torch.randn(16, 9)
    w = torch.randn(16, *product.weight_shape)
    compiled = torch.compile(product, fullgraph=True)
    with torch.no_grad():
        assert torch.allclose(compiled(x1, x2, w), product(x1, x2, w), atol=1e-5)


@cuda
def test_frames_and_positional_encodings_on_cuda_match_cpu():
    from torch_geometric.data import Batch, Data

    from geobasis.frames import pca_frames
    from geobasis.nn import FAENet
    from geobasis.pe import SPE, laplacian_eigenpairs, random_walk_pe

    graphs = [
        Data(pos=torch.randn(n, 3, dtype=torch.float64), z=torch.randint(1, 9, (n,)))
        for n in (7, 4)
    ]
    batch = Batch.from_data_list(graphs)
    frames, frames_gpu = (
        pca_frames(batch.pos, batch.batch),
        pca_frames(batch.pos.cuda(), batch.batch.cuda()),
    )
    assert torch.allclose(frames_gpu.rotations.cpu().abs(), frames.rotations.abs(), atol=1e-10)
    model = FAENet(channels=8, num_layers=2).double().eval()
    out, out_gpu = model(batch), model.cuda()(batch.clone().cuda())  # PyG moves in place
    assert torch.allclose(out_gpu["energy"].cpu(), out["energy"], atol=1e-10)
    assert torch.allclose(out_gpu["forces"].cpu(), out["forces"], atol=1e-10)
    edge_index = radius_graph(batch.pos, 2.0, batch.batch)
    pairs = laplacian_eigenpairs(edge_index, batch.num_nodes, batch.batch, k=4)
    pairs_gpu = laplacian_eigenpairs(edge_index.cuda(), batch.num_nodes, batch.batch.cuda(), k=4)
    assert torch.allclose(pairs_gpu.values.cpu(), pairs.values, atol=1e-10)
    spe = SPE(4).double()
    a = spe(pairs.vectors, pairs.values, pairs.mask, edge_index, batch.batch)
    b = spe.cuda()(
        pairs_gpu.vectors, pairs_gpu.values, pairs_gpu.mask, edge_index.cuda(), batch.batch.cuda()
    )
    assert torch.allclose(b.cpu(), a, atol=1e-8)
    rw = random_walk_pe(edge_index, batch.num_nodes, 4, batch.batch)
    assert torch.allclose(
        random_walk_pe(edge_index.cuda(), batch.num_nodes, 4, batch.batch.cuda()).cpu(), rw
    )


def test_the_one_shot_gpu_script_runs_dry_on_the_cpu(tmp_path):
    """``benchmarks/gpu.sh --dry-run``: the script the device tool runs, on CPU with tiny
    sizes (no GPU, no network), writes its tables."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable}
    result = subprocess.run(
        ["bash", str(root / "benchmarks" / "gpu.sh"), "--dry-run"],
        capture_output=True, text=True, timeout=300, env=env, cwd=root,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    table = json.loads((tmp_path / "gpu.json").read_text())
    assert table["device"].startswith("cpu")
    assert all(table[k] for k in ("harmonics", "products", "training"))
    assert (tmp_path / "gpu.md").read_text().count("|") > 20


@cuda
@pytest.mark.parametrize(
    ("name", "lmax"),
    [("cg", 1), ("cg", 4), ("gaunt_grid", 4), ("gaunt_fourier", 4), ("so2", 4), ("bracket", 4)],
)
def test_every_product_on_cuda_matches_cpu_with_gradients(name, lmax):
    """Forward and the input gradients of each product (float64, per-edge weights; CG at
    L = 1 runs its hand-written degree-one backward) agree between CUDA and the CPU."""
    from geobasis.products import GauntBracketProduct, make

    torch.manual_seed(0)
    if name == "bracket":
        product = GauntBracketProduct(lmax, lmax, lmax, 8, "external", paths="all")
    else:
        product = make(name, lmax, lmax, lmax, 8)
    product = product.double()
    dim = (lmax + 1) ** 2
    x1 = torch.randn(3000, dim, 8, dtype=torch.float64)
    x2 = spherical_harmonics(lmax, torch.randn(3000, 3, dtype=torch.float64))
    w = torch.randn(3000, *product.weight_shape, dtype=torch.float64)

    def run(device):
        inputs = [t.to(device).requires_grad_(True) for t in (x1, x2, w)]
        y = product.to(device)(*inputs)
        grads = torch.autograd.grad(y.square().sum(), inputs)
        return [t.cpu() for t in (y, *grads)]

    for got, want in zip(run("cuda"), run("cpu")):
        assert torch.allclose(got, want, atol=1e-9, rtol=1e-9)


@cuda
@pytest.mark.parametrize(
    "options",
    [
        {"model": "potential", "product": "cg"},
        {"model": "potential", "product": "so2"},
        {"model": "manybody", "contraction": "gaunt_grid"},
        {"model": "manybody", "contraction": "cg"},
    ],
)
def test_models_on_cuda_match_cpu(options):
    """Energies and forces (a radius graph built on the device, a batch of two molecules)
    of the potentials agree between CUDA and the CPU in float64."""
    from torch_geometric.data import Batch, Data

    from geobasis.nn import ManyBodyPotential, Potential

    options = dict(options)
    cls = {"potential": Potential, "manybody": ManyBodyPotential}[options.pop("model")]
    torch.manual_seed(0)
    model = cls(channels=8, cutoff=3.0, radial_hidden=8, **options).double().eval()
    g = torch.Generator().manual_seed(1)
    graphs = [
        Data(pos=torch.randn(n, 3, generator=g, dtype=torch.float64) * 1.3,
             z=torch.tensor([1, 6, 7, 8, 9] * 4)[:n])
        for n in (12, 9)
    ]  # fmt: skip
    batch = Batch.from_data_list(graphs)
    want = model(batch)
    got = model.cuda()(batch.clone().cuda())  # PyG moves in place
    for key in ("energy", "forces"):
        assert torch.allclose(got[key].cpu(), want[key], atol=1e-9, rtol=1e-9), key
