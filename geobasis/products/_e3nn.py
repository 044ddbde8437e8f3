"""The e3nn ``o3.TensorProduct`` that computes the same thing as a ClebschGordanProduct.

For migrating models and for testing: e3nn is imported only when this is called.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from geobasis.o3.layout import degree_slice
from geobasis.products.clebsch_gordan import ClebschGordanProduct

__all__ = ["e3nn_equivalent"]


def e3nn_equivalent(
    product: ClebschGordanProduct, shared_x2: bool = True
) -> tuple[
    object, Callable[[Tensor], Tensor], Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]
]:
    """An e3nn ``o3.TensorProduct`` with the paths, normalisation and weights of ``product``.

    Returns ``(tp, input1, input2, output)``: ``input1``/``input2`` turn our ``x1``/``x2``
    into e3nn's flat layout and ``output`` turns e3nn's output back into
    ``[..., (L_out+1)**2, C]`` (both parities of a degree are summed, as ``paths="all"``
    does).  The weights map unchanged: ``tp(input1(x1), input2(x2), w.reshape(*lead, -1))``
    equals ``product(x1, x2, w)`` for external weights ``w [..., num_paths, C]``.

    ``shared_x2=True`` means ``x2`` has one channel (mode ``"uvu"``); ``False`` means ``x2``
    has ``C`` channels (mode ``"uuu"``).  e3nn's constructor takes seconds above ``L ~ 4``.
    """
    from e3nn import o3

    from geobasis.o3.conventions import to_e3nn

    channels = product.channels
    if channels is None:
        raise ValueError("e3nn_equivalent needs a product built with channels=C")
    irreps1 = o3.Irreps([(channels, (l, (-1) ** l)) for l in range(product.lmax1 + 1)])
    mul2 = 1 if shared_x2 else channels
    irreps2 = o3.Irreps([(mul2, (l, (-1) ** l)) for l in range(product.lmax2 + 1)])
    # one output irrep per (degree, parity class) that some path reaches, in degree order
    classes = sorted({(l, (l1 + l2 + l) % 2) for l1, l2, l in product.paths})
    irreps_out = o3.Irreps([(channels, (l, (-1) ** (l + odd))) for l, odd in classes])
    instructions = [
        (l1, l2, classes.index((l, (l1 + l2 + l) % 2)), "uvu" if shared_x2 else "uuu", True)
        for l1, l2, l in product.paths
    ]
    path_normalization = "element" if product.path_normalization == "element" else "none"
    tp = o3.TensorProduct(
        irreps1,
        irreps2,
        irreps_out,
        instructions,
        irrep_normalization="component",
        path_normalization=path_normalization,
        internal_weights=False,
        shared_weights=False,
    )

    def input1(x1: Tensor) -> Tensor:
        return to_e3nn(x1)

    def input2(x2: Tensor) -> Tensor:
        return to_e3nn(x2.unsqueeze(-1)) if shared_x2 else to_e3nn(x2)

    def output(y: Tensor) -> Tensor:
        lead = y.shape[:-1]
        out = y.new_zeros(*lead, product.dim_out, channels)
        start = 0
        for l, _ in classes:
            size = channels * (2 * l + 1)
            block = y[..., start : start + size].reshape(*lead, channels, 2 * l + 1)
            out[..., degree_slice(l), :] += block.transpose(-1, -2)
            start += size
        return out

    return tp, input1, input2, output
