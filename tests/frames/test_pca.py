import math

import pytest
import torch

from geobasis.frames import eigenvalue_blocks, pca_frames, symmetric_eigh
from geobasis.o3 import random_orthogonal, random_rotation


def _frame_clouds(pos, batch=None, **kwargs):
    frames = pca_frames(pos, batch, **kwargs)
    canonical, node = frames.canonicalize(pos, batch)
    return frames, canonical


def _same_sets(a, b, count):
    """Two sets of ``count`` canonical clouds (rows in node order) are equal as sets."""
    a, b = a.reshape(count, -1), b.reshape(count, -1)
    distance = (a[:, None] - b[None]).abs().amax(-1)  # exact (cdist's matmul form is not)
    return float(distance.min(1).values.max())


def regular_polygon(n: int, radius: float = 1.0) -> torch.Tensor:
    angle = torch.arange(n, dtype=torch.float64) * 2 * math.pi / n
    return radius * torch.stack([angle.cos(), angle.sin(), torch.zeros_like(angle)], -1)


def ideal_benzene() -> torch.Tensor:
    return torch.cat([regular_polygon(6, 1.39), regular_polygon(6, 1.39 + 1.09)])


@pytest.mark.parametrize("group, count, improper", [("O3", 8, True), ("SO3", 4, False)])
def test_generic_frames_are_orthogonal_and_move_with_the_points(group, count, improper):
    pos = torch.randn(9, 3, dtype=torch.float64)
    frames, canonical = _frame_clouds(pos, group=group)
    assert len(frames) == count and not frames.degenerate.any()
    eye = torch.eye(3, dtype=torch.float64)
    torch.testing.assert_close(
        frames.rotations.transpose(1, 2) @ frames.rotations, eye.expand(count, 3, 3)
    )
    if group == "SO3":
        torch.testing.assert_close(
            torch.linalg.det(frames.rotations), torch.ones(count, dtype=torch.float64)
        )
    for _ in range(3):
        Q = random_orthogonal(1, dtype=torch.float64, improper=improper)[0]
        moved = pos @ Q.T + torch.randn(3, dtype=torch.float64)
        frames2, canonical2 = _frame_clouds(moved, group=group)
        assert _same_sets(canonical, canonical2, count) < 1e-12
        # the frame set itself is rotated: Q F(X) = F(QX + t)
        assert _same_sets(Q @ frames.rotations, frames2.rotations, count) < 1e-12


def test_canonical_coordinates_are_centred_and_decorrelated():
    pos = torch.randn(20, 3, dtype=torch.float64) * torch.tensor([3.0, 1.0, 0.3]) + 5
    frames, canonical = _frame_clouds(pos)
    c = canonical.reshape(8, 20, 3)
    torch.testing.assert_close(c.mean(1), torch.zeros(8, 3, dtype=torch.float64))
    cov = c.transpose(1, 2) @ c / 20
    torch.testing.assert_close(cov, torch.diag_embed(frames.eigenvalues).expand(8, 3, 3))
    assert bool((frames.eigenvalues[0, :-1] >= frames.eigenvalues[0, 1:]).all())


def test_batched_frames_equal_per_graph_frames():
    sizes = [5, 1, 8, 3]
    pos = torch.randn(sum(sizes), 3, dtype=torch.float64)
    batch = torch.repeat_interleave(torch.arange(4), torch.tensor(sizes))
    frames = pca_frames(pos, batch)
    start = 0
    for g, n in enumerate(sizes):
        single = pca_frames(pos[start : start + n])
        torch.testing.assert_close(frames.rotations[frames.graph == g], single.rotations)
        torch.testing.assert_close(frames.center[g], single.center[0])
        start += n
    torch.testing.assert_close(frames.weight.sum(), torch.tensor(4.0, dtype=torch.float64))


@pytest.mark.parametrize(
    "name, make, expected",
    [
        ("hexagon", lambda: regular_polygon(6), 6 * 4),
        ("benzene", ideal_benzene, 6 * 4),  # the six hydrogens span the ring plane
        (
            "line",
            lambda: (
                torch.linspace(-1, 2, 5, dtype=torch.float64)[:, None]
                * torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)
            ),
            8,
        ),
        (
            "tetrahedron",
            lambda: torch.tensor(
                [[1.0, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=torch.float64
            ),
            4 * 3 * 4,
        ),
        ("single atom", lambda: torch.zeros(1, 3, dtype=torch.float64), 8),
    ],
)
def test_degenerate_spectra_give_equivariant_frame_sets(name, make, expected):
    pos = make()
    frames, canonical = _frame_clouds(pos)
    assert bool(frames.degenerate.all()), name
    assert len(frames) == expected, name
    for _ in range(3):
        Q = random_orthogonal(1, dtype=torch.float64, improper=bool(torch.rand(()) < 0.5))[0]
        moved = pos @ Q.T + torch.randn(3, dtype=torch.float64)
        frames2, canonical2 = _frame_clouds(moved)
        assert len(frames2) == expected
        assert _same_sets(canonical, canonical2, expected) < 1e-10, name


def test_sign_frames_of_an_arbitrary_degenerate_basis_would_break_equivariance():
    """The reason for the point-built frames: on a hexagon, the 8 sign frames of whatever
    basis ``eigh`` returns are not a rotated copy of each other."""
    pos = regular_polygon(6)
    _, vectors = torch.linalg.eigh(pos.T @ pos)
    Q = random_rotation(1, dtype=torch.float64, generator=torch.Generator().manual_seed(3))[0]
    _, vectors2 = torch.linalg.eigh((pos @ Q.T).T @ (pos @ Q.T))
    a, b = pos @ vectors, (pos @ Q.T) @ vectors2
    assert float((a.abs() - b.abs()).abs().max()) > 1e-3


def test_two_dimensional_frames():
    pos = torch.randn(7, 2, dtype=torch.float64)
    for group, count in [("O2", 4), ("SO2", 2)]:
        frames, canonical = _frame_clouds(pos, group=group)
        assert len(frames) == count
        angle = torch.tensor(0.7, dtype=torch.float64)
        R = torch.stack(
            [torch.stack([angle.cos(), -angle.sin()]), torch.stack([angle.sin(), angle.cos()])]
        )
        if group == "O2":
            R = R @ torch.diag(torch.tensor([1.0, -1.0], dtype=torch.float64))
        _, canonical2 = _frame_clouds(pos @ R.T + 1.0, group=group)
        assert _same_sets(canonical, canonical2, count) < 1e-12
    # the names of the 3-D groups select the same group of the plane with dim=2
    assert len(pca_frames(pos, group="SO3", dim=2)) == 2
    square = regular_polygon(4)[:, :2]
    frames, _ = _frame_clouds(square, group="O2")
    assert bool(frames.degenerate.all()) and len(frames) == 4 * 2


def test_weighted_frames_use_the_weighted_centre():
    pos = torch.randn(6, 3, dtype=torch.float64)
    mass = torch.rand(6, dtype=torch.float64) + 0.5
    frames = pca_frames(pos, weights=mass)
    torch.testing.assert_close(frames.center[0], (mass[:, None] * pos).sum(0) / mass.sum())


def test_symmetric_eigh_backward_matches_torch_and_is_finite_on_repeated_eigenvalues():
    A = torch.randn(4, 3, 3, dtype=torch.float64)
    A = A + A.transpose(1, 2)
    torch.autograd.gradcheck(
        lambda m: symmetric_eigh(0.5 * (m + m.transpose(1, 2)))[0], (A.requires_grad_(),)
    )
    vec_sq = lambda m: symmetric_eigh(0.5 * (m + m.transpose(1, 2)))[1] ** 2  # sign-free
    torch.autograd.gradcheck(vec_sq, (A,))
    torch.autograd.gradgradcheck(vec_sq, (A,))
    # a repeated pair: the projector onto the distinct eigenvector has a finite exact gradient
    B = torch.diag(torch.tensor([1.0, 1.0, 3.0], dtype=torch.float64))
    Q = random_rotation(1, dtype=torch.float64)[0]
    B = (Q @ B @ Q.T).requires_grad_()
    _, vectors = symmetric_eigh(B)
    projector = vectors[:, 2:] @ vectors[:, 2:].T
    weight = torch.randn(3, 3, dtype=torch.float64)
    (grad,) = torch.autograd.grad((projector * weight).sum(), B)
    assert bool(torch.isfinite(grad).all())

    def reference(matrix):  # the projector is well defined: central differences
        _, v = torch.linalg.eigh(matrix)
        return ((v[:, 2:] @ v[:, 2:].T) * weight).sum()

    for _ in range(3):
        E = torch.randn(3, 3, dtype=torch.float64)
        E = E + E.T
        h = 1e-6
        numeric = (reference(B.detach() + h * E) - reference(B.detach() - h * E)) / (2 * h)
        assert abs(float((grad * E).sum() - numeric)) < 1e-7
    assert eigenvalue_blocks(torch.tensor([1.0, 1.0 + 1e-9, 2.0]), 1e-6).tolist() == [0, 0, 1]


def test_errors():
    with pytest.raises(ValueError, match="pos must be"):
        pca_frames(torch.randn(4, 4))
    with pytest.raises(ValueError, match="group"):
        pca_frames(torch.randn(4, 3), group="E3")
    with pytest.raises(ValueError, match="acts in 2-D"):
        pca_frames(torch.randn(4, 3), group="SO2")
    with pytest.raises(ValueError, match="dim=2"):
        pca_frames(torch.randn(4, 3), dim=2)
    with pytest.raises(ValueError, match="weights"):
        pca_frames(torch.randn(4, 3), weights=-torch.ones(4))
    with pytest.raises(TypeError, match="floating"):
        pca_frames(torch.ones(4, 3, dtype=torch.long))


def test_non_finite_positions_are_named():
    pos = torch.randn(6, 3, dtype=torch.float64)
    pos[2, 0] = float("nan")
    with pytest.raises(ValueError, match="pos has non-finite values"):
        pca_frames(pos)
