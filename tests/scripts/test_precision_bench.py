"""scripts/precision_bench.py times both precisions of a preset's network (the timings belong
to the script, never to a test)."""

from __future__ import annotations

import pytest
from conftest import script_module

from dlexp import hardware

bench = script_module("precision_bench")


def test_both_precisions_are_timed_and_auto_is_named(capsys: pytest.CaptureFixture) -> None:
    assert bench.main(["--presets", "mnist_cnn", "--steps", "1", "--repeats", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    auto, why = hardware.resolve_precision("cpu")
    assert out[0].endswith(f"auto: {auto} ({why})")
    row = out[-1].strip("| ").split(" | ")
    assert row[0] == "mnist_cnn" and all(float(v) > 0 for v in row[1:])
