"""Training steps in float32 against bf16 autocast on this CPU, for the tuned presets' networks:
the measurement behind ``trainer.precision=auto``.

    python scripts/precision_bench.py [--presets mnist_cnn imdb_lstm] [--steps 10] [--repeats 6]
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python scripts/precision_bench.py  # AVX2

Each preset's network (composed from ``conf/``, as ``python train.py experiment=...`` builds it)
trains on random batches of the preset's batch size (text: reviews of ``data.max_len`` tokens,
the longest a batch holds). Blocks of ``--steps`` steps alternate between the two precisions,
the order reversed every other block, so both see the same machine load; the table gives the
median ms per step and the ratio bf16 / float32 (above 1: bf16 is slower here).
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import torch
from hydra import compose, initialize_config_module

from dlexp import hardware
from dlexp.allocator import keep_freed_memory
from dlexp.bf16_probe import interleaved
from dlexp.builders import build_net


def preset_step(preset: str) -> Callable[[bool], None]:
    """One optimizer step of the preset's network on a random batch, bf16 autocast or not."""
    with initialize_config_module("dlexp.conf", version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={preset}"])
    batch = cfg.data.batch_size
    if cfg.model.get("cell"):  # a text model: token ids and lengths
        vocab = cfg.data.tokenizer.vocab_size
        net = build_net(cfg.model, {"net_kwargs": {"vocab_size": vocab, "num_classes": 2,
                                                   "pad_idx": 0}})
        inputs = (torch.randint(1, vocab, (batch, cfg.data.max_len)),
                  torch.full((batch,), cfg.data.max_len))
        labels = torch.randint(0, 2, (batch,))
    else:
        net = build_net(cfg.model, {"net_kwargs": {"in_shape": [1, 28, 28], "num_classes": 10}})
        inputs, labels = (torch.rand(batch, 1, 28, 28),), torch.randint(0, 10, (batch,))
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)

    def step(bf16: bool) -> None:
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(net(*inputs).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def measure(step: Callable[[bool], None], steps: int, repeats: int) -> dict[bool, float]:
    """Median ms per step in each precision (True: bf16)."""
    times = interleaved(step, repeats, steps, warmup=2)
    return {bf16: statistics.median(t) * 1000 for bf16, t in times.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", nargs="+", default=["mnist_cnn", "imdb_lstm"])
    p.add_argument("--steps", type=int, default=10, help="steps per timed block")
    p.add_argument("--repeats", type=int, default=6, help="timed blocks per precision")
    args = p.parse_args(argv)
    keep_freed_memory()  # as train.py runs
    info = hardware.cpu_info()
    auto, why = hardware.resolve_precision("cpu")
    print(f"CPU {info.cpu_class}, {torch.get_num_threads()} threads; auto: {auto} ({why})")
    print("| preset | float32 (ms/step) | bf16 autocast (ms/step) | bf16 / float32 |")
    print("| --- | --- | --- | --- |")
    for preset in args.presets:
        ms = measure(preset_step(preset), args.steps, args.repeats)
        print(f"| {preset} | {ms[False]:.1f} | {ms[True]:.1f} | {ms[True] / ms[False]:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
