"""Frame averaging: PCA frames for O(3)/SO(3)/2-D, exact and stochastic averaging.

:func:`pca_frames` builds, per graph, the finite set of frames that moves with the
points (degenerate spectra included); :class:`FrameAveraging` wraps any model of
positions and averages it over those frames, which makes it exactly invariant or
equivariant (or, in stochastic mode, equivariant in expectation).
"""

from geobasis.frames.averaging import OUTPUT_KINDS, FrameAveraging
from geobasis.frames.eigh import eigenvalue_blocks, symmetric_eigh
from geobasis.frames.pca import GROUPS, Frames, default_tolerances, pca_frames

__all__ = [
    "pca_frames",
    "Frames",
    "FrameAveraging",
    "GROUPS",
    "OUTPUT_KINDS",
    "default_tolerances",
    "symmetric_eigh",
    "eigenvalue_blocks",
]
