"""Three equivariant products on one message-passing step, and what each can express.

Builds edge messages ``x_j ⊗ Y(r_ij)`` for a random molecule with the Clebsch–Gordan,
Gaunt-grid and Gaunt-Fourier products, checks that they are equivariant under a random
rotation and reflection, that the two Gaunt products agree with the Gaunt-weighted
Clebsch–Gordan product, and that only the Clebsch–Gordan product can form the cross
product of two vectors (an odd path).  Runs in a few seconds on a CPU.

    python examples/equivariant_products.py
"""

import torch

from geobasis import graph, o3
from geobasis.products import ClebschGordanProduct, GauntFourierProduct, GauntGridProduct

torch.manual_seed(0)
L, C = 3, 8
pos = torch.randn(20, 3, dtype=torch.float64) * 2
features = torch.randn(20, (L + 1) ** 2, C, dtype=torch.float64)
edge_index = graph.radius_graph(pos, r=3.0)
src, dst = edge_index


def messages(product, pos, features, weight):
    vec = pos[src] - pos[dst]
    harmonics = o3.spherical_harmonics(L, vec)  # [E, (L+1)**2], one channel
    return product(features[src], harmonics, weight)


products = {
    "ClebschGordanProduct (even paths)": ClebschGordanProduct(L, L, L, C, "external", paths="even"),
    "GauntGridProduct": GauntGridProduct(L, L, L, C, "external"),
    "GauntFourierProduct": GauntFourierProduct(L, L, L, C, "external"),
}
R = o3.random_orthogonal(dtype=torch.float64)  # rotation or reflection
D = o3.wigner_D(L, R)
print(f"{edge_index.shape[1]} edges, L = {L}, C = {C}, det R = {torch.det(R):+.0f}")
for name, product in products.items():
    product = product.double()
    w = torch.randn(edge_index.shape[1], *product.weight_shape, dtype=torch.float64)
    out = messages(product, pos, features, w)
    moved = messages(product, pos @ R.T, D @ features, w)
    print(f"  {name:36s} equivariance error {(moved - D @ out).abs().max():.1e}")

grid = products["GauntGridProduct"].double()
w = torch.randn(edge_index.shape[1], *grid.weight_shape, dtype=torch.float64)
cg = ClebschGordanProduct(L, L, L, C, "external", paths="even", path_normalization="none")
gaunt_as_cg = cg.double()(
    features[src], o3.spherical_harmonics(L, pos[src] - pos[dst]), grid.clebsch_gordan_weights(w)
)
print(
    f"Gaunt grid vs Gaunt-weighted CG: {(messages(grid, pos, features, w) - gaunt_as_cg).abs().max():.1e}"
)

# the cross product a x b is the odd path 1 x 1 -> 1: CG has it, Gaunt does not
a, b = torch.randn(3, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
x1 = torch.zeros(1, 4, 1, dtype=torch.float64)
x2 = torch.zeros(1, 4, dtype=torch.float64)
x1[0, 1:, 0], x2[0, 1:] = a[[1, 2, 0]], b[[1, 2, 0]]  # e3nn's l=1 order is (y, z, x)
odd = ClebschGordanProduct(1, 1, 1, 1, "none", paths="odd").double()(x1, x2)[0, 1:, 0]
gaunt = GauntGridProduct(1, 1, 1, weights="none").double()(x1, x2)[0, 1:, 0]
cross = torch.linalg.cross(a, b)[[1, 2, 0]]
print(f"CG odd path / cross product: {(odd / cross).tolist()}  (constant: 1/sqrt 2)")
print(f"Gaunt product, l = 1 part:   {gaunt.tolist()}  (zero: no odd paths)")
