"""The language model's tied adaptive softmax head (src/dlexp/models/language_model.py)."""

from __future__ import annotations

import torch
from torch import nn

from dlexp.models.language_model import TiedAdaptiveSoftmax


def test_the_head_runs_under_bf16_autocast_and_matches_float32() -> None:
    """trainer.precision=auto picks bf16-mixed on AMX CPUs and bf16 GPUs: the head must train
    there (AdaptiveLogSoftmaxWithLoss refuses bf16 cluster scores), and it computes in float32."""
    torch.manual_seed(0)
    embedding = nn.Embedding(50, 8)
    head = TiedAdaptiveSoftmax(embedding, hidden_size=12, cutoffs=[10, 30])
    hidden = torch.randn(40, 12)
    targets = torch.randint(0, 50, (40,))  # every cluster gets tokens
    plain = head(hidden, targets)
    with torch.autocast("cpu", torch.bfloat16):
        mixed = head(hidden, targets)
    mixed.backward()
    assert mixed.dtype == torch.float32 and torch.isfinite(mixed)
    assert embedding.weight.grad is not None and embedding.weight.grad.abs().sum() > 0
    # only the projection ran in bf16: the loss stays close to float32's
    assert abs(float(mixed) - float(plain)) < 0.05 * float(plain)
