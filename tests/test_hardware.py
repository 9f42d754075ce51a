"""dlexp.hardware: the CPU's class and the precision ``auto`` resolves to, on this CPU and on
one held to AVX2 (no native bf16, no bf16 LSTM in oneDNN), whatever CPU the tests run on."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import compose_train

from dlexp import config, hardware
from dlexp.errors import ConfigError
from dlexp.trainer import resolve_precision

AVX2 = hardware.AVX2_LIMITS
# what a fresh process on an AVX2 CPU decides and runs: resolution, a bf16 CNN step (emulated,
# runs), a bf16 LSTM step (oneDNN has none: fails), and the refusal that comes before it
PROBE = """
import json, torch
from omegaconf import OmegaConf
from dlexp import config, hardware
from dlexp.errors import ConfigError
out = {"describe": hardware.describe(), "auto": hardware.resolve_precision("cpu")[0]}
with torch.autocast("cpu", dtype=torch.bfloat16):
    out["cnn"] = str(torch.nn.Conv2d(1, 4, 3)(torch.randn(2, 1, 8, 8)).dtype)
try:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        torch.nn.LSTM(8, 8)(torch.randn(3, 2, 8))
    out["lstm"] = "ran"
except RuntimeError as e:
    out["lstm"] = str(e).splitlines()[0]
cfg = OmegaConf.create({"trainer": {"precision": "bf16-mixed", "accelerator": "cpu"},
                        "model": {"cell": "lstm"}})
try:
    config.check_precision(cfg)
    out["refused"] = None
except ConfigError as e:
    out["refused"] = str(e)
print(json.dumps(out))
"""


def probe(env: dict[str, str]) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_on_avx2_auto_is_float32_bf16_lstm_is_refused_before_it_would_crash() -> None:
    out = probe(AVX2)
    assert out["describe"]["cpu_class"] == "AVX2" and out["describe"]["native_bf16"] is False
    assert out["describe"]["isa_limits"] == AVX2
    assert out["auto"] == "32-true"
    assert out["cnn"] == "torch.bfloat16"  # emulated, but it runs
    assert out["lstm"] != "ran"  # the crash the refusal stands in front of
    assert out["refused"].startswith("trainer.precision=bf16-mixed: oneDNN has no bf16 LSTM")
    assert "trainer.precision=auto" in out["refused"]


def test_on_this_cpu_auto_follows_native_bf16() -> None:
    out = probe({})
    described = out["describe"]
    native = described["native_bf16"]
    # AVX512_BF16 without AMX: measured on this CPU (and recorded), bf16 where it is faster
    measured = native and not described["amx"]
    assert ("bf16_step_ratio" in described) == measured
    faster = described["amx"] or measured and described["bf16_step_ratio"] < hardware.BF16_FASTER
    assert out["auto"] == ("bf16-mixed" if native and faster else "32-true")
    assert out["describe"]["cpu_class"] in ({"AMX", "AVX512_BF16"} if native
                                            else {"AVX512", "AVX2", "DEFAULT"})
    if out["describe"]["onednn_bf16"]:  # where oneDNN has bf16, the LSTM runs and is allowed
        assert out["lstm"] == "ran" and out["refused"] is None


def fake_cpu(monkeypatch: pytest.MonkeyPatch, ratio: float | None = None, **kw: object) -> None:
    """A CPU of the given features; ``ratio`` is what the bf16 probe would measure on it
    (nan: the probe fails)."""
    info = dict(capability="AVX512", avx512_bf16=True, amx=False, onednn_bf16=True) | kw
    monkeypatch.setattr(hardware, "cpu_info", lambda: hardware.CpuInfo(**info))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    def probe() -> float | None:
        assert ratio is not None, "only AVX512_BF16 without AMX is measured"
        return None if math.isnan(ratio) else ratio

    monkeypatch.setattr(hardware, "bf16_step_ratio", probe)


@pytest.mark.parametrize(("kw", "ratio", "cls", "auto"), [
    ({}, 1.3, "AVX512_BF16", "32-true"),  # bf16 instructions without AMX, measured slower
    ({}, 0.95, "AVX512_BF16", "32-true"),  # faster, but not by enough to be worth it
    ({}, 0.72, "AVX512_BF16", "bf16-mixed"),  # measured faster
    ({"amx": True}, None, "AMX", "bf16-mixed"),
    ({"avx512_bf16": False}, None, "AVX512", "32-true"),  # AVX-512 without bf16: emulated
    ({"capability": "AVX2", "onednn_bf16": False}, None, "AVX2", "32-true"),
])
def test_cpu_class_and_auto(monkeypatch: pytest.MonkeyPatch, kw: dict, ratio: float | None,
                            cls: str, auto: str) -> None:
    fake_cpu(monkeypatch, ratio, **kw)
    assert hardware.cpu_info().cpu_class == cls
    precision, why = hardware.resolve_precision("auto")
    assert precision == auto
    if ratio is not None:  # the measurement is named in the log line
        assert f"a bf16 step takes {ratio:.2f}x the time" in why
        assert hardware.describe()["bf16_step_ratio"] == ratio
    else:
        assert "bf16_step_ratio" not in hardware.describe()


def test_gpu_auto_is_bf16_or_float16_with_its_scaler(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Some GPU")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda **kw: True)
    assert hardware.resolve_precision("gpu")[0] == "bf16-mixed"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda **kw: False)
    precision, why = hardware.resolve_precision("auto")
    assert precision == "16-mixed" and "Some GPU has no native bf16" in why


def test_auto_is_resolved_in_the_config_and_explicit_bf16_warns_on_emulation(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake_cpu(monkeypatch, avx512_bf16=False)
    cfg = compose_train(["experiment=mnist_cnn"], tmp_path)
    assert cfg.trainer.precision == "auto"
    assert "no native bf16" in resolve_precision(cfg.trainer)
    assert cfg.trainer.precision == "32-true" and resolve_precision(cfg.trainer) is None
    cfg.trainer.precision = "bf16-mixed"
    config.check_precision(cfg)
    assert "has no native bf16: bf16 would be emulated, slower than float32" in caplog.text
    caplog.clear()
    fake_cpu(monkeypatch, ratio=1.3)  # AVX512_BF16 without AMX, measured slower
    config.check_precision(cfg)
    assert "without AMX, measured no faster than float32 here (a bf16 step takes 1.30x" \
        in caplog.text
    caplog.clear()
    fake_cpu(monkeypatch, ratio=0.7)  # the same, measured faster: nothing to warn about
    config.check_precision(cfg)
    assert caplog.text == ""
    fake_cpu(monkeypatch, ratio=math.nan)  # the probe failed: float32, and bf16 is not promised
    assert hardware.resolve_precision("auto") == (
        "32-true", "the CPU (AVX512_BF16) has bf16 instructions without AMX, and the bf16 probe "
        "failed: float32")
    fake_cpu(monkeypatch, capability="AVX2", onednn_bf16=False)
    cfg = compose_train(["experiment=imdb_lstm", "trainer.precision=bf16-mixed"], tmp_path)
    with pytest.raises(ConfigError, match="oneDNN has no bf16 LSTM on this CPU"):
        config.check_precision(cfg)


def test_physical_cores_count_smt_siblings_once(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    for cpu, core in enumerate([0, 1, 0, 1]):  # cpus 2 and 3: the siblings of 0 and 1
        topo = tmp_path / f"cpu{cpu}" / "topology"
        topo.mkdir(parents=True)
        (topo / "physical_package_id").write_text("0\n")
        (topo / "core_id").write_text(f"{core}\n")
    assert hardware.physical_cores(tmp_path) == 2
    assert hardware.physical_cores(tmp_path / "missing") == 4


def test_the_module_prints_this_machines_class_and_auto() -> None:
    env = {**os.environ, **hardware.AVX2_LIMITS}
    done = subprocess.run([sys.executable, "-m", "dlexp.hardware"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("CPU class AVX2, ")
    assert done.stdout.strip().endswith("trainer.precision=auto: 32-true (the CPU (AVX2) has no "
                                        "native bf16: bf16 would be emulated, slower than "
                                        "float32)")
