"""The token-id cache: keys, atomic writes, safe loading."""

from __future__ import annotations

from pathlib import Path

import torch

from dlexp.data import token_cache as text


def test_cache_key_changes_with_any_setting() -> None:
    base = {"tokenizer": {"model": "word", "vocab_size": 100}, "seed": 0}
    key = text.cache_key(**base)
    assert key == text.cache_key(**dict(reversed(list(base.items()))))
    assert key != text.cache_key(**{**base, "seed": 1})
    assert key != text.cache_key(**{**base, "tokenizer": {"model": "word", "vocab_size": 101}})


def test_cache_round_trip_with_safe_loading(tmp_path: Path) -> None:
    payload = {"tokenizer": "{}", "train": {"flat": torch.arange(5).int(),
                                            "offsets": torch.tensor([0, 2, 5])}}
    path = tmp_path / "sub" / "tokens.pt"
    text.save_cache(path, payload)
    assert [p.name for p in path.parent.iterdir()] == ["tokens.pt"]  # no .part left
    loaded = text.load_cache(path)
    assert loaded["tokenizer"] == "{}" and torch.equal(loaded["train"]["flat"],
                                                      payload["train"]["flat"])
    assert text.load_cache(tmp_path / "absent.pt") is None
    path.write_bytes(b"not a checkpoint")
    assert text.load_cache(path) is None  # rebuilt, not fatal
