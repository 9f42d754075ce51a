"""torch's process-wide settings a run asks for: CPU threads, the precision of float32
matrix products (TF32 on GPUs), keeping freed memory for reuse, and compiling the network."""

from __future__ import annotations

import os

import torch
from omegaconf import DictConfig
from torch import nn

from dlexp import hardware
from dlexp.allocator import keep_freed_memory
from dlexp.errors import ConfigError

MATMUL_PRECISIONS = ("highest", "high", "medium")


def check(cfg: DictConfig) -> None:
    threads = cfg.get("threads")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ConfigError(f"threads must be a whole number >= 1 (or null), got {threads}")
    precision = cfg.get("matmul_precision")
    if precision is not None and precision not in MATMUL_PRECISIONS:
        raise ConfigError(f"matmul_precision must be one of {', '.join(MATMUL_PRECISIONS)} "
                          f"(or null), got {precision!r}")
    if cfg.get("compile"):
        check_compiler(backend(cfg))


def apply(cfg: DictConfig) -> None:
    torch.set_num_threads(cfg.get("threads") or default_threads())
    if cfg.get("keep_memory"):
        keep_freed_memory()
    if cfg.get("matmul_precision") is not None:  # "high": TF32 matrix products on GPUs
        torch.set_float32_matmul_precision(cfg.matmul_precision)


def default_threads() -> int:
    """``threads: null``: one per physical core (torch may count SMT siblings), unless
    OMP_NUM_THREADS says otherwise, as Lightning's multi-process strategies set it."""
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return max(int(os.environ["OMP_NUM_THREADS"]), 1)
    return hardware.physical_cores()


def threads() -> int:
    return torch.get_num_threads()


def backend(cfg: DictConfig) -> str:
    """``compile=true`` is torch's default (inductor); a string names another backend."""
    return "inductor" if cfg.compile is True else str(cfg.compile)


def check_compiler(name: str) -> None:
    """Compile a small function now: a missing compiler fails here in one line, not in the
    middle of the first training step."""
    try:
        torch.compile(lambda x: x * 2 + 1, backend=name)(torch.ones(4))
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"compile={name}: torch.compile cannot compile here ({first}); run "
                          "without compile") from None


def compile_net(net: nn.Module, name: str) -> None:
    """In place (``Module.compile``): the state dict keeps its keys (no ``_orig_mod.``), so
    checkpoints of a compiled run resume, evaluate and predict like any other."""
    net.compile(backend=name)
