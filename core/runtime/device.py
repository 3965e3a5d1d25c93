"""Pick the fastest device there is, describe it in words, and the precision each device trains in."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported in each function instead: all_cores_but_one serves callers that never load torch
    import torch


def pick_device() -> torch.device:
    """CUDA, then Apple MPS, then the CPU."""
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def describe_device(device: torch.device | None = None, threads: int | None = None) -> str:
    """A short badge: the GPU's name, Apple MPS, or the CPU with the threads training uses (`threads`, else
    this thread's torch setting)."""
    import torch

    device = device or pick_device()
    if device.type == "cuda":
        return f"GPU: {torch.cuda.get_device_name(device)}"
    if device.type == "mps":
        return "GPU: Apple MPS"
    threads = threads or torch.get_num_threads()
    return f"CPU: {threads} thread{'s' if threads != 1 else ''}"


def torch_loaded() -> bool:
    """Whether this process has imported torch, whole: not while a thread is still importing it (a second or
    more; another thread that imports it meanwhile waits for that)."""
    torch = sys.modules.get("torch")
    return torch is not None and not getattr(getattr(torch, "__spec__", None), "_initializing", False)


def describe_device_if_loaded(threads: int | None = None) -> str | None:
    """`describe_device()`, or None until this process has imported torch: a cold server's pages draw without
    waiting for it."""
    return describe_device(threads=threads) if torch_loaded() else None


def all_cores_but_one() -> int:
    """Threads for training beside a server and a browser on the same machine: every core but one, so
    that the page's redraws (which the browser schedules) do not starve. Measured on 2 cores: the demo
    comparison trains as fast on one thread."""
    return max(1, (os.cpu_count() or 1) - 1)


def autocast(device: torch.device):
    """bf16 autocast on CUDA; full precision elsewhere."""
    import torch

    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def memory_format(device: torch.device) -> torch.memory_format:
    """The layout a model and its input batches take on `device`: channels_last on CUDA, where cuDNN's
    convolutions (in bf16 above all) run fastest in it; the default elsewhere."""
    import torch

    return torch.channels_last if device.type == "cuda" else torch.contiguous_format


def module_device(module: torch.nn.Module) -> torch.device:
    """Where a module's tensors live (its first parameter or buffer; the CPU for an empty one)."""
    import torch

    for t in (*module.parameters(), *module.buffers()):
        return t.device
    return torch.device("cpu")
