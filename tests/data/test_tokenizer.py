"""Tokenizer: normalisation, determinism, JSON round trip, special ids."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dlexp.data import tokenizer as text
from dlexp.data.tokenizer import (
    PAD_ID,
    UNK_ID,
    encode,
    encode_texts,
    encode_truncated,
    from_json,
    to_json,
)

CORPUS = [
    "A great movie!! I loved it.<br /><br />The cast was great, the music wonderful.",
    "An awful film. Boring plot, terrible acting... A waste of time!",
    "The plot was great but the ending was awful.",
    "Loved the music; loved the cast. Great!",
] * 3


def _train(model: str = "word", **kwargs) -> text.Tokenizer:
    return text.train_tokenizer(CORPUS, model, **{"vocab_size": 200, "min_frequency": 1,
                                                  **kwargs})


def _tokens(tok: text.Tokenizer, s: str) -> list[str]:
    return tok.encode(s).tokens


def test_normalisation_lowercases_strips_br_and_splits_punctuation() -> None:
    tok = _train()
    assert _tokens(tok, "GREAT movie!!<br /><br />I LOVED it.") == \
        ["great", "movie", "!!", "i", "loved", "it", "."]
    assert _tokens(tok, "music,cast<br/>plot") == ["music", ",", "cast", "plot"]
    assert "<" not in tok.get_vocab() and "br" not in tok.get_vocab()


@pytest.mark.parametrize("model", ["word", "bpe"])
def test_special_ids_and_unknown_words(model: str) -> None:
    tok = _train(model)
    assert tok.token_to_id(text.PAD) == PAD_ID == 0 and tok.token_to_id(text.UNK) == UNK_ID == 1
    ids = encode(tok, ["great", "", "qqqq", "a [PAD] [UNK]"])
    assert ids.lengths[1] == 1 and ids.flat[ids.offsets[1]] == UNK_ID  # empty: one unk
    assert PAD_ID not in ids.flat.tolist()  # quoting "[PAD]" never yields the pad id


def test_word_vs_bpe_on_an_unseen_word() -> None:
    assert encode(_train("word"), ["greatest"]).flat.tolist() == [UNK_ID]
    pieces = _train("bpe").encode("greatest").tokens
    assert len(pieces) > 1 and "[UNK]" not in pieces  # subwords instead of unk


def test_vocab_size_and_min_frequency() -> None:
    assert _train(vocab_size=10).get_vocab_size() == 10
    rare = _train(min_frequency=4).get_vocab()  # each CORPUS line appears 3 times
    assert "great" in rare and "boring" not in rare


@pytest.mark.parametrize("model", ["word", "bpe"])
def test_deterministic_and_json_round_trip(model: str) -> None:
    tok = _train(model)
    blob = to_json(tok)
    assert isinstance(blob, str) and json.loads(blob)["model"]["type"] in ("WordLevel", "BPE")
    assert blob == to_json(_train(model))
    again = from_json(blob)
    assert to_json(again) == blob
    assert encode(again, CORPUS).flat.tolist() == encode(tok, CORPUS).flat.tolist()


def test_same_json_in_a_fresh_process() -> None:
    """Frequency ties must not be broken by per-process hash seeds."""
    code = ("import sys, json; from dlexp.data import tokenizer as text; c = json.load(sys.stdin); "
            "print(json.dumps([text.to_json(text.train_tokenizer(c, m, 200, 1)) "
            "for m in ('word', 'bpe')]))")
    out = subprocess.run([sys.executable, "-c", code], input=json.dumps(CORPUS), text=True,
                         capture_output=True, check=True).stdout
    assert json.loads(out) == [to_json(_train(m)) for m in ("word", "bpe")]


def test_bad_settings() -> None:
    with pytest.raises(ValueError, match="data.tokenizer.model"):
        text.train_tokenizer(CORPUS, "char")
    with pytest.raises(ValueError, match="data.tokenizer.vocab_size"):
        text.train_tokenizer(CORPUS, "word", vocab_size=2)


def test_encode_store_layout() -> None:
    tok = _train()
    store = encode(tok, CORPUS[:3])
    assert store.flat.dtype == torch.int32 and store.offsets.dtype == torch.int64
    for i, s in enumerate(CORPUS[:3]):
        assert store.flat[store.offsets[i]:store.offsets[i + 1]].tolist() == tok.encode(s).ids


def test_encode_texts_from_a_description() -> None:
    tok = _train()
    info = {"tokenizer": to_json(tok), "max_len": 4, "truncate": "head_tail"}
    ids, lengths = encode_texts(info, ["great", "the plot was great but the ending was awful", ""])
    assert ids.dtype == lengths.dtype == torch.int64 and lengths.tolist() == [1, 4, 1]
    assert ids.shape == (3, 4) and ids[0, 1:].eq(0).all()
    want = tok.encode("the plot was great but the ending was awful").ids
    assert ids[1].tolist() == want[:1] + want[-3:]  # head 4 // 4 = 1, tail 3
    assert ids[2].tolist() == [UNK_ID, 0, 0, 0]


# pieces that meet at a cut: "<br />" split across it, whitespace the tokenizer does not count
# as such (\x1c), long chunks, punctuation runs, characters whose lowercase is longer
PIECES = ["the", "great", "awful", "!!", "...", "<br />", "<BR/>", "<br", "/>", ">", "<", "br",
          " ", "  ", "\n", "\t", "\x1c", "\u3000", "\u2028", "İ", "ǅ", "x" * 40, "!<br", "/>!"]
TOKENIZERS = {model: from_json(to_json(_train(model, vocab_size=80))) for model in ("word", "bpe")}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.lists(st.sampled_from(PIECES), max_size=150).map("".join) | st.text(max_size=400),
       max_len=st.integers(1, 12), mode=st.sampled_from(["head", "head_tail"]),
       model=st.sampled_from(["word", "bpe"]))
def test_encoding_only_the_kept_ends_gives_the_ids_of_the_whole_text(
        text: str, max_len: int, mode: str, model: str) -> None:
    """A long text is tokenized from its start and end only; the ids must be those of the whole
    text truncated as training truncates, wherever the cuts fall."""
    tok = TOKENIZERS[model]
    whole = encode(tok, [text]).truncate(max_len, mode).flat.tolist()
    empty = not tok.encode(text, add_special_tokens=False).ids  # encode() gives [UNK] for it
    assert encode_truncated(tok, text, max_len, mode) == ([] if empty else whole)


def test_encode_truncated_tokenizes_a_bounded_part_of_a_long_text() -> None:
    tok, seen = _train(), []

    class Spy:
        def encode(self, s: str, **kwargs: object) -> object:
            seen.append(len(s))
            return tok.encode(s, **kwargs)

    review = "the plot was great but the ending was awful. " * 20_000
    ids = encode_truncated(Spy(), review, 100, "head")
    assert max(seen) <= 100 * text.CHARS_PER_TOKEN and len(ids) == 100
    assert ids == tok.encode(review[:2000]).ids[:100]
