"""The input pipeline that predict, dlexp.load and the demo share: any image as an MNIST digit
(16-bit and float images scaled, huge ones refused before decoding), a review as the tokens
training kept (blank and undecodable ones refused). Property tests fuzz both: a result or a
one-line ValueError, never another exception."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import paper_digit, png_header
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from dlexp.data.tokenizer import encode, from_json, to_json, train_tokenizer
from dlexp.inputs import MAX_UNTRUNCATED_CHARS, TOO_LARGE, load_image, review_ids

FUZZ = settings(max_examples=80, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture
def paper8(tmp_path: Path) -> Path:
    path = tmp_path / "paper8.png"
    Image.fromarray(paper_digit()).save(path)
    return path


@pytest.mark.parametrize("kind", ["I;16 png", "I tiff", "F unit tiff", "F 0-255 tiff",
                                  "I;16B array", "float array"])
def test_wide_images_read_as_their_8_bit_version(tmp_path: Path, paper8: Path,
                                                 kind: str) -> None:
    """Pillow's convert("L") clips 16-bit values at 255: the paper and the ink of a 16-bit
    scan would both read white. They are scaled by their nominal range instead."""
    p = paper_digit()
    source = {
        "I;16 png": (p.astype(np.uint16) * 257, "png"),
        "I tiff": (p.astype(np.int32) * 257, "tiff"),
        "F unit tiff": (p.astype(np.float32) / 255, "tiff"),
        "F 0-255 tiff": (p.astype(np.float32), "tiff"),
        "I;16B array": (p.astype(">u2") * 257, None),
        "float array": (p / 255.0, None),
    }[kind]
    array, fmt = source
    if fmt is None:
        image = array
    else:
        image = tmp_path / f"wide.{fmt}"
        Image.fromarray(array).save(image)
        assert Image.open(image).mode == kind.split()[0]
    assert np.array_equal(load_image(image), load_image(paper8))


def test_16_bit_transparency_is_flattened_like_8_bit(tmp_path: Path) -> None:
    """A 16-bit PNG whose black is transparent (tRNS) holds dark ink on nothing: as on white."""
    ink = np.zeros((40, 30), np.uint16)
    ink[8:32, 12:18] = 30 * 257
    Image.fromarray(ink).save(tmp_path / "clear16.png", transparency=0)
    on_white = np.where(ink > 0, 30, 255).astype(np.uint8)
    Image.fromarray(on_white).save(tmp_path / "white8.png")
    assert np.array_equal(load_image(tmp_path / "clear16.png"), load_image(tmp_path / "white8.png"))


def test_pil_images_arrays_and_open_files_read_as_the_file(paper8: Path) -> None:
    want = load_image(paper8)
    with Image.open(paper8) as im:
        assert np.array_equal(load_image(im), want)
    assert np.array_equal(load_image(paper_digit()), want)
    assert np.array_equal(load_image(paper_digit()[None]), want)  # (1, H, W), as torch keeps it
    assert np.array_equal(load_image(io.BytesIO(paper8.read_bytes())), want)


@pytest.mark.parametrize("side", [8_000, 10_000, 14_000])  # ours; Pillow's warning; its error
def test_huge_images_are_refused_in_one_line_without_warnings(tmp_path: Path,
                                                              side: int) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header(side, side))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's DecompressionBombWarning must not escape
        with pytest.raises(ValueError) as info:
            load_image(path)
    assert str(info.value) == TOO_LARGE


@pytest.mark.parametrize(("data", "message"), [
    (b"", "cannot read image: "), (b"\x89PNG\r\n\x1a\n" + b"x" * 40, "cannot read image: "),
    (None, "no such file")])
def test_unreadable_files_are_one_line(tmp_path: Path, data: bytes | None,
                                       message: str) -> None:
    path = tmp_path / "bad.png"
    if data is not None:
        path.write_bytes(data)
    with pytest.raises(ValueError) as info:
        load_image(path)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_truncated_png_is_one_line(paper8: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.png"
    cut.write_bytes(paper8.read_bytes()[:-30])  # header fine, pixels cut short
    with pytest.raises(ValueError, match=r"^cannot read image: .*"):
        load_image(cut)


@pytest.mark.parametrize("array", [np.zeros((0, 5), np.uint8), np.zeros((4, 4, 2)),
                                   np.zeros(5), np.array([["a"]])])
def test_unusable_arrays_are_refused(array: np.ndarray) -> None:
    with pytest.raises(ValueError):
        load_image(array)


# ------------------------------------------------------------------ image fuzzing
MODES = ["1", "L", "LA", "P", "RGB", "RGBA", "I;16", "I", "F"]


@st.composite
def images(draw: st.DrawFn) -> object:
    """An image of any mode, size and content, as a file in any format (cut short or
    corrupted sometimes), a PIL image or an array."""
    mode = draw(st.sampled_from(MODES))
    w, h = draw(st.integers(1, 80)), draw(st.integers(1, 80))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    content = draw(st.sampled_from(["noise", "stroke", "flat"]))
    array = _content(rng, content, mode, h, w)
    image = Image.fromarray(array) if mode not in ("P", "I;16") else (
        Image.fromarray(array.astype(np.uint16)) if mode == "I;16"
        else Image.fromarray(array).convert("P"))
    form = draw(st.sampled_from(["png", "tiff", "bmp", "gif", "jpeg", "webp", "pil", "array"]))
    if form == "pil":
        return image
    if form == "array":
        return np.asarray(image)
    buffer = io.BytesIO()
    try:
        extra = {"transparency": 0} if mode in ("L", "P", "I;16") and draw(st.booleans()) else {}
        image.save(buffer, form, **extra)
    except (OSError, ValueError, KeyError, TypeError):  # the format cannot hold this mode
        return image
    data = buffer.getvalue()
    damage = draw(st.sampled_from(["none", "cut", "flip"]))
    if damage == "cut":
        data = data[: draw(st.integers(0, len(data)))]
    elif damage == "flip":
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]
    return io.BytesIO(data)


def _content(rng: np.random.Generator, content: str, mode: str, h: int, w: int) -> np.ndarray:
    channels = {"LA": 2, "RGB": 3, "RGBA": 4}.get(mode)
    shape = (h, w, channels) if channels else (h, w)
    top = {"1": 1, "I;16": 65535, "I": 2**31 - 1}.get(mode, 255)
    if content == "noise":
        values = rng.integers(0, top, size=shape, endpoint=True)
    else:
        values = np.full(shape, rng.integers(0, top, endpoint=True))
        if content == "stroke":
            values[h // 4: 3 * h // 4 + 1, w // 3: w // 3 + max(1, w // 6)] = top - values.flat[0]
    if mode == "F":
        return (values / 255 * rng.choice([1 / 255, 1, 300, np.nan])).astype(np.float32)
    dtype = {"1": bool, "I": np.int32, "I;16": np.uint16}.get(mode, np.uint8)
    return values.astype(dtype)


@FUZZ
@given(images())
def test_any_image_gives_a_digit_or_a_one_line_error(source: object) -> None:
    try:
        x = load_image(source)
    except ValueError as e:
        assert str(e) and "\n" not in str(e)
    else:
        assert x.shape == (1, 28, 28) and str(x.dtype) == "torch.uint8"


# ------------------------------------------------------------------ reviews
CORPUS = ["the movie was great, really great", "an awful and boring film", "I loved it",
          "the worst plot ever", "superb acting <br /> and music"] * 4


@pytest.fixture(scope="module")
def tok() -> object:
    return from_json(to_json(train_tokenizer(CORPUS, vocab_size=50, min_frequency=1)))


def _data(max_len: int | None, truncate: str = "head_tail") -> dict:
    return {"max_len": max_len, "truncate": truncate}


@pytest.mark.parametrize("text", ["", "   ", "\n\t", "\u3000\u2028", "<br /><br />"])
def test_blank_reviews_are_refused(tok: object, text: str) -> None:
    with pytest.raises(ValueError, match="^empty review: no words to classify$"):
        review_ids(tok, text, _data(400))


def test_undecodable_text_is_refused(tok: object) -> None:
    # what Python makes of non-UTF-8 bytes in argv (surrogateescape)
    text = b"great \xff film".decode("utf-8", "surrogateescape")
    with pytest.raises(ValueError, match=r"^not valid Unicode \(undecodable bytes\)$"):
        review_ids(tok, text, _data(400))


def test_a_2_mb_review_is_truncated_as_training_did(tok: object) -> None:
    """Only the start and end that truncation keeps are tokenized (the whole review took
    ~1 GB in the LSTM); the ids are those of the whole review truncated by training's code."""
    review = "the worst plot ever, " * 50_000 + "but I loved it, really great"
    assert len(review) > 1_000_000
    seen = []

    class Spy:  # the tokenizer, recording how much text it is given
        def encode(self, text: str, **kwargs: object) -> object:
            seen.append(len(text))
            return tok.encode(text, **kwargs)

    ids = review_ids(Spy(), review, _data(400))
    assert sum(seen) < 20_000
    assert ids == encode(tok, [review]).truncate(400, "head_tail").flat.tolist()
    assert len(ids) == 400 and ids[-2:] == tok.encode("really great").ids  # the end is kept


def test_too_long_review_for_an_untruncated_model_is_refused(tok: object) -> None:
    with pytest.raises(ValueError, match="^review too long: .* without data.max_len"):
        review_ids(tok, "great " * (MAX_UNTRUNCATED_CHARS // 5), _data(None))
    assert review_ids(tok, "great film", _data(None)) == tok.encode("great film").ids


@FUZZ
@given(text=st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=300),  # surrogates too
    st.text(" \t\n\r\u3000\u2028\x0b\x0c", max_size=50),  # blank
    st.builds(lambda w, n: w * n, st.sampled_from(["great ", "<br />", "x", "!! "]),
              st.integers(0, 30_000))),
       max_len=st.sampled_from([None, 1, 3, 12, 400]),
       truncate=st.sampled_from(["head", "head_tail"]))
def test_any_review_gives_truncated_ids_or_a_one_line_error(tok: object, text: str,
                                                            max_len: int | None,
                                                            truncate: str) -> None:
    try:
        ids = review_ids(tok, text, _data(max_len, truncate))
    except ValueError as e:
        assert str(e) and "\n" not in str(e)
    else:
        assert 1 <= len(ids) <= (max_len or len(text)) and all(isinstance(i, int) for i in ids)
