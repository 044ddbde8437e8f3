"""Scratch buffers: reused per name, thread and inference mode; never the caller's data."""

import threading

import torch

from geobasis import _workspace
from geobasis._workspace import release, scratch


def test_reuses_one_buffer_per_name_and_grows_it():
    like = torch.empty(0)
    first = scratch("test a", (4, 5), like)
    again = scratch("test a", (2, 3), like)
    assert again.data_ptr() == first.data_ptr() and again.shape == (2, 3)
    other = scratch("test b", (4, 5), like)
    assert other.data_ptr() != first.data_ptr()
    bigger = scratch("test a", (100, 100), like)
    assert bigger.shape == (100, 100) and bigger.is_contiguous()
    assert scratch("test a", (4, 5), like).data_ptr() == bigger.data_ptr()
    assert scratch("test c", (3,), torch.empty(0, dtype=torch.float64)).dtype == torch.float64


def test_large_requests_are_plain_allocations(monkeypatch):
    monkeypatch.setattr(_workspace, "MAX_BYTES", 64)
    like = torch.empty(0)
    a, b = scratch("test large", (100,), like), scratch("test large", (100,), like)
    assert a.data_ptr() != b.data_ptr()  # both alive: two allocations, nothing kept


def test_inference_mode_and_threads_get_their_own_buffers():
    like = torch.empty(0)
    with torch.inference_mode():
        inside = scratch("test mode", (8,), like).fill_(1.0)
    outside = scratch("test mode", (8,), like)
    outside.fill_(2.0)  # writing an inference tensor here would raise
    assert outside.data_ptr() != inside.data_ptr()
    pointers = []
    thread = threading.Thread(
        target=lambda: pointers.append(scratch("test mode", (8,), like).data_ptr())
    )
    thread.start()
    thread.join()
    assert pointers[0] != outside.data_ptr()


def test_release_frees_this_threads_buffers():
    like = torch.empty(0)
    scratch("test release", (1000,), like)
    assert ("test release", like.dtype, False) in _workspace._local.buffers
    release()
    assert not _workspace._local.__dict__.get("buffers")
    assert scratch("test release", (10,), like).shape == (10,)  # made again on request
    assert ("test release", like.dtype, False) in _workspace._local.buffers


def test_large_empty_advises_only_whole_huge_pages_inside_the_tensor(monkeypatch):
    calls = []
    monkeypatch.setattr(_workspace, "_ADVISE", lambda start, length, advice: calls.append(
        (start, length, advice)))  # fmt: skip
    monkeypatch.setattr(_workspace, "HUGE_BYTES", 1 << 20)
    like = torch.empty(0, dtype=torch.float64)
    small = _workspace.large_empty((1000,), like)
    assert small.shape == (1000,) and small.dtype == torch.float64 and not calls
    big = _workspace.large_empty((3, 1 << 20), like)  # 24 MiB
    assert big.shape == (3, 1 << 20) and big.is_contiguous()
    ((start, length, advice),) = calls
    page = 2 << 20
    first, end = big.data_ptr(), big.data_ptr() + big.numel() * 8
    assert start % page == 0 and length % page == 0 and advice == 14
    assert first <= start < first + page and end - page < start + length <= end
    big.fill_(1.5)  # the memory is the tensor's and writable
    assert big.sum().item() == 1.5 * big.numel()
