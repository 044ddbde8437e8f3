r"""What every equivariant product shares: shapes, weights and input checks.

A product maps two spherical-channel tensors

.. math::

    x_1 \in \mathbb R^{\dots \times (L_1+1)^2 \times C}, \qquad
    x_2 \in \mathbb R^{\dots \times (L_2+1)^2 \,[\times C]}

to :math:`y \in \mathbb R^{\dots \times (L_{out}+1)^2 \times C}`, bilinearly and
channel by channel.  ``x2`` either has its own channels (same rank as ``x1``) or a single
one (one rank less, e.g. edge spherical harmonics) that is broadcast over the channels of
``x1``.  Leading dimensions broadcast.

Weights come in three modes:

* ``"internal"``: a parameter of shape :attr:`weight_shape`, shared by every batch element;
* ``"external"``: passed to ``forward`` with shape ``[..., *weight_shape]`` (per edge, from
  a radial network), leading dimensions broadcast with the inputs;
* ``"none"``: no weights (every path / degree weighted by one).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from geobasis._chunked import block_rows, chunked_rows
from geobasis._tracing import traced
from geobasis.o3.layout import check_lmax

__all__ = ["EquivariantProduct", "WEIGHT_MODES"]

WEIGHT_MODES = ("internal", "external", "none")


class EquivariantProduct(nn.Module):
    """Base class: constructor arguments, weight handling and input checks.

    Subclasses set :attr:`weight_shape` (without the channel dimension) through
    :meth:`_init_weights` and implement :meth:`_product` on flattened inputs
    ``x1 [B, D1, C]``, ``x2 [B, D2]`` or ``[B, D2, C]`` and ``weight [B or 1, *weight_shape]``
    (or ``None``).
    """

    def __init__(
        self,
        lmax1: int,
        lmax2: int,
        lmax_out: int,
        channels: int | None = None,
        weights: str = "internal",
    ) -> None:
        super().__init__()
        check_lmax(lmax1, "lmax1")
        check_lmax(lmax2, "lmax2")
        check_lmax(lmax_out, "lmax_out")
        if weights not in WEIGHT_MODES:
            raise ValueError(f"weights must be one of {WEIGHT_MODES}, got {weights!r}")
        if channels is not None and (
            not isinstance(channels, int) or isinstance(channels, bool) or channels < 1
        ):
            raise ValueError(f"channels must be a positive int or None, got {channels!r}")
        if weights != "none" and channels is None:
            raise ValueError(
                f"weights={weights!r} needs the number of channels: pass channels=C "
                "(or weights='none' for an unweighted product)"
            )
        self.lmax1 = lmax1
        self.lmax2 = lmax2
        self.lmax_out = lmax_out
        self.channels = channels
        self.weight_mode = weights
        self.dim1 = (lmax1 + 1) ** 2
        self.dim2 = (lmax2 + 1) ** 2
        self.dim_out = (lmax_out + 1) ** 2
        self.weight_shape: tuple[int, ...] = ()

    _table_cache: dict = {}

    def build_tables(self, key: tuple, builder, metadata: tuple[str, ...] = ()) -> None:
        """Run ``builder()`` (which registers tables and sets ``metadata`` attributes) once
        per ``key`` and class; later modules with the same key reuse its float64 tables."""
        cache = EquivariantProduct._table_cache
        key = (type(self).__name__, *key)
        if key not in cache:
            before = set(dict(self.named_buffers(recurse=False)))
            builder()
            buffers = {
                name: buffer
                for name, buffer in self.named_buffers(recurse=False)
                if name not in before
            }
            tables = {name: self._tables64[name] for name in buffers if name in self._tables64}
            others = {name: b for name, b in buffers.items() if name not in tables}
            cache[key] = (tables, others, {name: getattr(self, name) for name in metadata})
            return
        tables, others, attributes = cache[key]
        for name, table in tables.items():
            self.register_table(name, table)
        for name, buffer in others.items():
            self.register_buffer(name, buffer.clone(), persistent=False)
        for name, value in attributes.items():
            setattr(self, name, value)

    def register_table(self, name: str, table: Tensor) -> None:
        """Register a constant float64 table as a buffer in the default dtype.

        The float64 original is kept, so moving the module to another dtype converts from
        it (no precision lost on ``.double()`` after construction in float32).
        """
        if not hasattr(self, "_tables64"):
            self._tables64: dict[str, Tensor] = {}
        if table.is_floating_point():
            self._tables64[name] = table.detach().to("cpu", torch.float64)
            table = table.to(torch.get_default_dtype())
        self.register_buffer(name, table, persistent=False)

    def _apply(self, fn, recurse=True):  # type: ignore[override]
        module = super()._apply(fn, recurse)
        for name, table in getattr(self, "_tables64", {}).items():
            current = getattr(self, name)
            if current.dtype != torch.float64 or current.device != table.device:
                setattr(self, name, table.to(device=current.device, dtype=current.dtype))
            else:
                setattr(self, name, table)
        return module

    def _init_weights(self, num_weights: int) -> None:
        """Declare ``num_weights`` weights per channel (and create them if internal)."""
        self.num_weights = num_weights
        if self.weight_mode == "none":
            self.weight_shape = ()
            self.weight = None
            return
        self.weight_shape = (num_weights, self.channels)
        if self.weight_mode == "internal":
            self.weight = nn.Parameter(torch.empty(num_weights, self.channels))
            self.reset_parameters()
        else:
            self.weight = None

    def reset_parameters(self) -> None:
        """Internal weights standard normal (no-op for other weight modes)."""
        if self.weight is not None:
            nn.init.normal_(self.weight)

    @property
    def weight_numel(self) -> int:
        """Number of weights per batch element (``prod(weight_shape)``; 0 without weights)."""
        return math.prod(self.weight_shape) if self.weight_shape else 0

    # ------------------------------------------------------------------ checks
    def _reference(self) -> Tensor | None:
        """A constant table of the module, to compare dtype and device with the input."""
        for buffer in self.buffers():
            if buffer.is_floating_point():
                return buffer
        return None

    def _flatten_inputs(
        self, x1: Tensor, x2: Tensor, weight: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor | None, torch.Size]:
        """Checked inputs flattened to one batch dimension, and the broadcast batch shape."""
        name = type(self).__name__
        x2_channels = self._check_inputs(x1, x2)
        channels = x1.shape[-1]
        lead1, lead2 = x1.shape[:-2], x2.shape[: -2 if x2_channels else -1]
        shapes = [lead1, lead2]
        weight = self._checked_weight(x1, weight)
        if self.weight_mode == "external":
            shapes.append(weight.shape[:-2])
        try:
            batch = torch.broadcast_shapes(*shapes)
        except RuntimeError as error:
            raise ValueError(
                f"{name}: leading dimensions do not broadcast: x1 {tuple(lead1)}, "
                f"x2 {tuple(lead2)}"
                + (f", weight {tuple(weight.shape[:-2])}" if len(shapes) == 3 else "")
            ) from error

        x1 = x1.expand(*batch, self.dim1, channels).reshape(-1, self.dim1, channels)
        if x2_channels:
            x2 = x2.expand(*batch, self.dim2, channels).reshape(-1, self.dim2, channels)
        else:
            x2 = x2.expand(*batch, self.dim2).reshape(-1, self.dim2)
        if weight is not None:
            if self.weight_mode == "external" and weight.shape[:-2] != batch:
                weight = weight.expand(*batch, *self.weight_shape)
            weight = weight.reshape(-1, *self.weight_shape)
        return x1, x2, weight, batch

    def _check_inputs(self, x1: Tensor, x2: Tensor) -> bool:
        """Raise a clear error for bad ``x1`` / ``x2``; returns whether ``x2`` has channels."""
        name = type(self).__name__
        if not isinstance(x1, Tensor) or not isinstance(x2, Tensor):
            raise TypeError(f"{name}: x1 and x2 must be tensors")
        if x1.dim() < 2 or x1.shape[-2] != self.dim1:
            raise ValueError(
                f"{name}: x1 must have shape [..., {self.dim1}, C] for lmax1={self.lmax1}, "
                f"got {tuple(x1.shape)}"
            )
        channels = x1.shape[-1]
        if self.channels is not None and channels != self.channels:
            raise ValueError(
                f"{name}: x1 has {channels} channels but the product was built for "
                f"channels={self.channels}"
            )
        if x2.dim() == x1.dim() and x2.shape[-2] == self.dim2:
            if x2.shape[-1] != channels:
                raise ValueError(
                    f"{name}: x2 [..., {self.dim2}, C] must have the channels of x1 "
                    f"({channels}), got {tuple(x2.shape)}; for one shared channel pass "
                    f"x2 of shape [..., {self.dim2}]"
                )
            x2_channels = True
        elif x2.dim() == x1.dim() - 1 and x2.shape[-1] == self.dim2:
            x2_channels = False
        else:
            raise ValueError(
                f"{name}: x2 must have shape [..., {self.dim2}, C] (same rank as x1) or "
                f"[..., {self.dim2}] (one shared channel) for lmax2={self.lmax2}, "
                f"got {tuple(x2.shape)} with x1 {tuple(x1.shape)}"
            )
        if x1.dtype in (torch.float16, torch.bfloat16):
            raise TypeError(
                f"{name}: {x1.dtype} inputs are not supported (FFT and coupling tables need "
                "float32 or float64); convert with .float()"
            )
        if x1.dtype != x2.dtype or not x1.is_floating_point():
            raise TypeError(
                f"{name}: x1 and x2 must have the same floating dtype, got {x1.dtype} and "
                f"{x2.dtype}"
            )
        if x1.device != x2.device:
            raise ValueError(f"{name}: x1 is on {x1.device} but x2 is on {x2.device}")
        reference = self._reference()
        if reference is not None and (reference.dtype != x1.dtype or reference.device != x1.device):
            raise TypeError(
                f"{name}: the inputs are {x1.dtype} on {x1.device} but the module's tables are "
                f"{reference.dtype} on {reference.device}; move the module with "
                f".to(dtype=..., device=...)"
            )

        return x2_channels

    def _checked_weight(self, x1: Tensor, weight: Tensor | None) -> Tensor | None:
        """The weight to use (given or internal), checked against the weight mode and ``x1``."""
        name = type(self).__name__
        if self.weight_mode == "external":
            if weight is None:
                raise ValueError(
                    f"{name} was built with weights='external': pass weight of shape "
                    f"[..., {', '.join(map(str, self.weight_shape))}] to forward"
                )
            if not isinstance(weight, Tensor) or weight.shape[-2:] != self.weight_shape:
                got = tuple(weight.shape) if isinstance(weight, Tensor) else type(weight)
                raise ValueError(
                    f"{name}: weight must have shape [..., "
                    f"{', '.join(map(str, self.weight_shape))}], got {got}"
                )
            if weight.dtype != x1.dtype or weight.device != x1.device:
                raise TypeError(
                    f"{name}: weight is {weight.dtype} on {weight.device}, inputs are "
                    f"{x1.dtype} on {x1.device}"
                )
        elif weight is not None:
            raise ValueError(
                f"{name} was built with weights={self.weight_mode!r}; build it with "
                "weights='external' to pass weights to forward"
            )
        else:
            weight = self.weight
            if weight is not None and weight.dtype != x1.dtype:
                raise TypeError(
                    f"{name}: internal weights are {weight.dtype}, inputs {x1.dtype}; "
                    "convert the module with .to(dtype)"
                )
        return weight

    def forward(self, x1: Tensor, x2: Tensor, weight: Tensor | None = None) -> Tensor:
        """Product of ``x1 [..., (L1+1)**2, C]`` and ``x2 [..., (L2+1)**2(, C)]``.

        Returns ``[..., (L_out+1)**2, C]``.  ``weight [..., *weight_shape]`` only when the
        module was built with ``weights="external"``.
        """
        x1f, x2f, w, batch = self._flatten_inputs(x1, x2, weight)
        if x1f.shape[0] == 0:
            out = x1f.new_zeros(0, self.dim_out, x1f.shape[-1])
        elif traced():  # torch.compile / torch.func: plain operations only
            out = self._plain_product(x1f, x2f, w)
        else:
            out = self._product(x1f, x2f, w)
        return out.reshape(*batch, self.dim_out, x1f.shape[-1])

    def plain(self, x1: Tensor, x2: Tensor, weight: Tensor | None = None) -> Tensor:
        """The same product in plain autograd operations, without the chunked custom
        backward: faster when a second derivative will be taken anyway (force training
        differentiates the product twice), slower and heavier otherwise.  Same arguments
        and result as ``forward``."""
        x1f, x2f, w, batch = self._flatten_inputs(x1, x2, weight)
        out = self._plain_product(x1f, x2f, w)
        return out.reshape(*batch, self.dim_out, x1f.shape[-1])

    def _plain_product(self, x1: Tensor, x2: Tensor, weight: Tensor | None) -> Tensor:
        raise NotImplementedError

    def _product(self, x1: Tensor, x2: Tensor, weight: Tensor | None) -> Tensor:
        raise NotImplementedError

    chunk_size: int | None = None

    def cpu_batch_chunk(self, x1: Tensor) -> int:
        """Batch elements per chunk on CPU for ``x1 [B, D1, C]``: :attr:`chunk_size`
        (subclasses choose a cache-sized one from the tensor sizes when it is ``None``)."""
        return self.chunk_size or 128

    def batch_chunk(self, x1: Tensor) -> int:
        """Batch elements per chunk: :meth:`cpu_batch_chunk` on CPU; on a GPU the whole
        batch unless memory requires blocks (:func:`geobasis._chunked.block_rows`)."""
        cpu = self.cpu_batch_chunk(x1)
        if x1.device.type == "cpu" or self.chunk_size is not None:
            return cpu
        return block_rows(x1.shape[0], x1[:1].numel() * x1.element_size(), x1.device, cpu)

    def _chunked_plain_product(self, x1: Tensor, x2: Tensor, weight: Tensor | None) -> Tensor:
        """``_plain_product`` in blocks of ``chunk_size`` rows: only the inputs are saved,
        each block is recomputed and differentiated at once in backward, and double
        backward differentiates the plain form (:func:`geobasis._chunked.chunked_rows`)."""
        size = self.batch_chunk(x1)
        if weight is None:
            return chunked_rows(lambda a, b: self._plain_product(a, b, None), (x1, x2), (), size)
        if weight.shape[0] == 1 and x1.shape[0] > 1:  # internal weights, shared by all rows
            return chunked_rows(self._plain_product, (x1, x2), (weight,), size)
        return chunked_rows(self._plain_product, (x1, x2, weight), (), size)

    def extra_repr(self) -> str:
        return (
            f"lmax1={self.lmax1}, lmax2={self.lmax2}, lmax_out={self.lmax_out}, "
            f"channels={self.channels}, weights={self.weight_mode!r}, "
            f"weight_shape={self.weight_shape}"
        )
