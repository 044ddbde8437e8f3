"""Graph positional encodings: Laplacian eigenpairs, random walks, SignNet and SPE.

:func:`laplacian_eigenpairs` (batched dense, or sparse Lanczos for large graphs) and
the :class:`AddLaplacianEigenpairs` transform give the spectrum; :class:`LaplacianPE`,
:class:`SignNet` and :class:`SPE` turn it into node encodings with increasing
invariance (none / sign / sign and basis, and stability); :class:`RandomWalkPE` needs no
eigenvectors at all.
"""

from geobasis.pe.eigen import NORMALIZATIONS, Eigenpairs, dense_laplacian, laplacian_eigenpairs
from geobasis.pe.encodings import (
    SIGN_MODES,
    SPE,
    AddLaplacianEigenpairs,
    LaplacianPE,
    RandomWalkPE,
    SignNet,
    random_walk_pe,
)
from geobasis.pe.stability import perturbation_stability

__all__ = [
    "laplacian_eigenpairs",
    "Eigenpairs",
    "dense_laplacian",
    "NORMALIZATIONS",
    "AddLaplacianEigenpairs",
    "LaplacianPE",
    "RandomWalkPE",
    "random_walk_pe",
    "SignNet",
    "SPE",
    "SIGN_MODES",
    "perturbation_stability",
]
