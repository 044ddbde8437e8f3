"""Shared helpers for the benchmarks: timing, environment, result files."""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def median_time(
    fn: Callable[[], object], repeats: int = 15, warmup: int = 3, budget: float = 20.0
) -> float:
    """Median wall time of ``fn`` in seconds after ``warmup`` calls (fewer repeats past ``budget``)."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - start > budget and len(times) >= 3:
            break
    return statistics.median(times)


def _alternating(fn_a, fn_b, rounds: int, untimed: int, timed: int, budget: float):
    """Median times of ``fn_a`` and ``fn_b`` over ``rounds`` in which each runs ``untimed``
    then ``timed`` calls back to back, ``fn_a`` first (fewer rounds past ``budget`` s)."""
    times: tuple[list[float], list[float]] = ([], [])
    start = time.perf_counter()
    for _ in range(rounds):
        for fn, record in zip((fn_a, fn_b), times, strict=True):
            for _ in range(untimed):
                fn()
            for _ in range(timed):
                t0 = time.perf_counter()
                fn()
                record.append(time.perf_counter() - t0)
        if time.perf_counter() - start > budget and len(times[0]) >= 3:
            break
    return statistics.median(times[0]), statistics.median(times[1])


def paired_median_times(
    fn_a: Callable[[], object],
    fn_b: Callable[[], object],
    repeats: int = 15,
    warmup: int = 3,
    budget: float = 40.0,
) -> tuple[float, float]:
    """Median times of two functions measured alternately, so machine noise hits both alike."""
    for _ in range(warmup):
        fn_a()
        fn_b()
    return _alternating(fn_a, fn_b, repeats, 0, 1, budget)


def block_median_times(
    fn_a: Callable[[], object],
    fn_b: Callable[[], object],
    blocks: int = 5,
    per_block: int = 3,
    budget: float = 120.0,
) -> tuple[float, float]:
    """Median times of two functions measured in alternating blocks of ``per_block``
    back-to-back calls, the first call of each block not timed: each in the steady state
    it has inside a training loop.  (On this VM, memory one function freed seconds ago is
    returned to the host; the other function's first call after a long call then pays to
    get it back, 2 MiB pages most of all.)"""
    return _alternating(fn_a, fn_b, blocks, 1, per_block - 1, budget)


def product_step(product, x1: torch.Tensor, x2: torch.Tensor, weight: torch.Tensor):
    """A forward + backward of ``product(x1, x2, weight)`` (loss: sum of squares), with
    fresh leaves for ``x1`` and ``weight`` each call."""

    def run() -> None:
        x = x1.detach().requires_grad_()
        w = weight.detach().requires_grad_()
        product(x, x2, w).square().sum().backward()

    return run


def product_step_given(product, x1: torch.Tensor, x2: torch.Tensor, weight: torch.Tensor):
    """A forward + backward of ``product(x1, x2, weight)`` with the output gradient given
    (a fixed random tensor): the product's own cost, no loss computed around it."""
    grad = torch.randn(product(x1[:1], x2[:1], weight[:1]).shape[1:], dtype=x1.dtype)
    grad = grad.expand(x1.shape[0], *grad.shape).contiguous()

    def run() -> None:
        x = x1.detach().requires_grad_()
        w = weight.detach().requires_grad_()
        product(x, x2, w).backward(grad)

    return run


def environment() -> dict[str, object]:
    import e3nn

    info: dict[str, object] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "e3nn": e3nn.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "processor": platform.processor() or "unknown",
    }
    try:
        import torch_geometric

        info["torch_geometric"] = torch_geometric.__version__
    except ImportError:
        pass
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name()
    return info


def write_results(
    name: str, rows: list[dict], columns: list[str], title: str, notes: str = ""
) -> Path:
    """Write ``results/<name>.json`` and ``results/<name>.md`` (a Markdown table)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "environment": environment(), "rows": rows}
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2))
    lines = [
        f"## {title}",
        "",
        notes,
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]
    for row in rows:
        cells = []
        for c in columns:
            v = row.get(c, "")
            cells.append(f"{v:.3g}" if isinstance(v, float) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    env = payload["environment"]
    lines += [
        "",
        f"torch {env['torch']}, e3nn {env['e3nn']}, {env['threads']} thread(s), {env['machine']}.",
    ]
    path = RESULTS / f"{name}.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def interleaved_median_times(
    fns: dict[str, Callable[[], object]],
    repeats: int = 5,
    warmup: int = 1,
    budget: float = 60.0,
) -> dict[str, float]:
    """Median times of several functions run round-robin (machine noise hits all alike)."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    start = time.perf_counter()
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
        if time.perf_counter() - start > budget:
            break
    return {name: statistics.median(t) for name, t in times.items()}


def peak_memory(fn: Callable[[], object], device: torch.device) -> int:
    """Peak bytes allocated by tensors while ``fn`` runs (profiler on CPU, allocator on CUDA)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted(prof.events(), key=lambda e: e.time_range.start)
    current = peak = 0
    for event in events:
        current += event.self_cpu_memory_usage
        peak = max(peak, current)
    return peak
