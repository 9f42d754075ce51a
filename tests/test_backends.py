"""dlexp.backends: threads, float32 matmul precision, and compiling the network in place."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import FAST, TINY_DATA, compose_train

from dlexp import backends, checkpoint
from dlexp.errors import ConfigError
from dlexp.train import train

MLP = ["model=mlp", "model.hidden=[16]", "trainer.max_epochs=1", "logger=none"]


@pytest.mark.integration
def test_a_compiled_run_checkpoints_resumes_and_rebuilds_like_any(tmp_path: Path,
                                                                  tiny_mnist: Path) -> None:
    first = train(compose_train([*FAST, *TINY_DATA, *MLP, "compile=eager"], tmp_path / "a",
                                tiny_mnist))
    assert first["status"] == "ok", first.get("error")
    last = tmp_path / "a" / "checkpoints" / "last.ckpt"
    ckpt = checkpoint.load(last)
    assert not [k for k in ckpt["state_dict"] if "_orig_mod" in k]
    task = checkpoint.rebuild_task(ckpt, last)  # what eval and predict do
    assert task(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    resumed = train(compose_train([*FAST, *TINY_DATA, *MLP, "compile=eager",
                                   "trainer.max_epochs=2", f"ckpt_path={last}"],
                                  tmp_path / "b", tiny_mnist))
    assert resumed["status"] == "ok" and resumed["epoch"] == 2, resumed.get("error")


def test_compile_fails_in_one_line_where_the_compiler_cannot_run(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(fn, backend):
        def call(*args):
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\nmore")
        return call

    monkeypatch.setattr(backends.torch, "compile", broken)
    with pytest.raises(ConfigError, match=r"^compile=inductor: torch.compile cannot compile here "
                                          r"\(InvalidCxxCompiler: No working C\+\+ compiler "
                                          r"found\); run without compile$"):
        backends.check_compiler("inductor")


def test_matmul_precision_is_set_and_checked(tmp_path: Path) -> None:
    before = torch.get_float32_matmul_precision()
    try:
        backends.apply(compose_train(["matmul_precision=high"], tmp_path))
        assert torch.get_float32_matmul_precision() == "high"
    finally:
        torch.set_float32_matmul_precision(before)
    with pytest.raises(ConfigError, match="matmul_precision must be one of highest, high, medium"):
        backends.check(compose_train(["matmul_precision=tf32"], tmp_path))
    with pytest.raises(ConfigError, match="threads must be a whole number >= 1"):
        backends.check(compose_train(["threads=0"], tmp_path))


def test_keep_memory_is_asked_for_by_the_setting(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(backends, "keep_freed_memory", lambda: calls.append(1) or True)
    backends.apply(compose_train(["keep_memory=false"], tmp_path))
    assert calls == []
    backends.apply(compose_train([], tmp_path))
    assert calls == [1]
