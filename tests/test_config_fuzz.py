"""Property test: any value of any numeric setting ends in a run or in one user-facing error
line, never in a traceback (a bug). Runs are one batch of everything (fast_dev_run) on the tiny
generated data."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import pytest
from conftest import FAST, TINY_DATA, compose_train
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import DictConfig, ListConfig

from dlexp.train import train

pytestmark = pytest.mark.integration

# the base configs whose numeric settings are drawn from (every group option appears once)
BASES = {
    "cnn": [],
    "mlp_sgd_step": ["model=mlp", "optimizer=momentum", "scheduler=step", "regularization=l2"],
    "lstm": ["data=imdb", "model=lstm", "scheduler=onecycle", "loss=label_smoothing",
             "data.val_size=40", "data.tokenizer.min_frequency=1"],
    "fixmatch": ["method=fixmatch", "data.num_labeled=50", "scheduler=cosine"],
    "pseudo_label": ["method=pseudo_label", "data.num_labeled=50", "model=mlp",
                     "regularization=elastic", "scheduler=exponential"],
}
# settings that start processes or machines, not values to fuzz
SKIP = {"trainer.devices", "trainer.num_nodes"}
# one batch of everything, no callbacks, no logger
QUICK = [*(o for o in FAST if not o.startswith("~callbacks")), *TINY_DATA, "debug=fdr",
         "callbacks=none"]


def numeric_keys(cfg: DictConfig) -> list[str]:
    found: list[str] = []

    def walk(node: object, path: str) -> None:
        if isinstance(node, DictConfig):
            for key in node:
                walk(node._get_node(key), f"{path}{key}.")
        elif not isinstance(node, ListConfig):
            value = node._value()
            if isinstance(value, int | float) and not isinstance(value, bool):
                found.append(path.rstrip("."))

    walk(cfg, "")
    return sorted(k for k in found if not k.startswith("hydra.") and k not in SKIP)


def hydra_literal(value: object) -> str:
    """``value`` as Hydra's override grammar reads it back."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # nan, inf, -inf
    if isinstance(value, str):
        return "'" + value + "'"
    return repr(value)


def test_every_base_runs(tmp_path: Path, tiny_data: Path) -> None:
    """Without this, a base that cannot compose would make every fuzzed case a refusal."""
    for base, extra in BASES.items():
        metrics = train(compose_train([*QUICK, *extra], tmp_path / base, tiny_data))
        assert metrics["status"] == "ok", (base, metrics.get("error"))


def _cases(tmp: Path) -> list[tuple[str, str]]:
    return [(base, key) for base, extra in BASES.items()
            for key in numeric_keys(compose_train(extra, tmp))]


CASES = _cases(Path("/tmp"))
VALUES = st.one_of(
    st.integers(-1000, 1000), st.sampled_from([0, -1, 1, 2**31, -(2**31)]),
    st.floats(-1e3, 1e3), st.sampled_from([math.nan, math.inf, -math.inf, 1e-12, 0.5, 1.0]),
    st.text(alphabet="abc1.-", max_size=4))


@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", 120)), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=st.sampled_from(CASES), value=VALUES)
def test_any_numeric_value_runs_or_fails_in_one_line(case: tuple[str, str], value: object,
                                                     tmp_path_factory: pytest.TempPathFactory,
                                                     tiny_data: Path, caplog) -> None:
    base, key = case
    out = tmp_path_factory.mktemp("fuzz")
    literal = hydra_literal(value)
    try:
        cfg = compose_train([*QUICK, *BASES[base], f"{key}={literal}"], out, tiny_data)
    except Exception as e:  # Hydra refuses the value: its own one-line message
        assert type(e).__module__.startswith(("hydra", "omegaconf")), repr(e)
        assert key in str(e) or literal in str(e), str(e)
        return
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="dlexp.train"):
        metrics = train(cfg)
    bugs = [r for r in caplog.records if r.getMessage() == "training failed"]
    assert not bugs, f"{key}={literal} ({base}): {metrics.get('error')}"
    if metrics["status"] != "ok":
        assert metrics["status"] in ("failed", "diverged") and "\n" not in metrics["error"]
