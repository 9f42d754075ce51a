"""dlexp-demo's server: the page, and ``POST /predict`` giving the probabilities dlexp-predict
gives for the same input (the canvas PNG read by the same load_image). The browser itself is
driven in test_demo_browser.py."""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dlexp.demo import DemoServer, main, page, serve
from dlexp.inference import load
from dlexp.predict import predict_images, predict_texts


@contextmanager
def running(ckpt: str) -> Iterator[DemoServer]:
    server = serve(load(ckpt), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def request(server: DemoServer, method: str, path: str, body: bytes | None = None,
            headers: dict | None = None) -> tuple[int, bytes]:
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def post(server: DemoServer, payload: object) -> tuple[int, dict]:
    status, body = request(server, "POST", "/predict", json.dumps(payload).encode(),
                           {"Content-Type": "application/json"})
    return status, json.loads(body)


def canvas_png(path: Path) -> str:
    """A stroke drawn as the page's canvas draws: white on opaque black, RGBA, 280x280; saved
    to ``path`` too, and returned as the data URL the page posts."""
    rgba = np.zeros((280, 280, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[60:220, 130:150, :3] = 255
    rgba[60:80, 105:135, :3] = 255
    Image.fromarray(rgba, "RGBA").save(path)
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def in_class_order(ranked: list[tuple[str, float]], classes: list[str]) -> list[float]:
    return [dict(ranked)[c] for c in classes]


def test_a_drawing_gets_the_probabilities_predict_gives(untrained_image_ckpt: str,
                                                        tmp_path: Path) -> None:
    url = canvas_png(tmp_path / "canvas.png")
    with running(untrained_image_ckpt) as server:
        status, result = post(server, {"image": url})
    assert status == 200
    classes = [e["class"] for e in result["probabilities"]]
    assert classes == [str(d) for d in range(10)]  # every class, in class order
    shown = [e["probability"] for e in result["probabilities"]]
    (ranked,) = predict_images(untrained_image_ckpt, [str(tmp_path / "canvas.png")])
    assert shown == pytest.approx(in_class_order(ranked, classes), abs=1e-7)
    assert result["class"] == ranked[0][0] and sum(shown) == pytest.approx(1, abs=1e-5)
    assert result["labels"] == [result["class"]]


def test_a_review_gets_the_probabilities_predict_gives(untrained_text_ckpt: str) -> None:
    review = "A wonderful film,\nthe music was great! " * 40  # longer than max_len: truncated
    with running(untrained_text_ckpt) as server:
        status, result = post(server, {"text": review})
    assert status == 200
    classes = [e["class"] for e in result["probabilities"]]
    (ranked,) = predict_texts(untrained_text_ckpt, [review])
    assert [e["probability"] for e in result["probabilities"]] == pytest.approx(
        in_class_order(ranked, classes), abs=1e-7)
    assert result["class"] == ranked[0][0]


@pytest.mark.parametrize(("payload", "error"), [
    ({"image": "data:image/png;base64," + base64.b64encode(b"not a png").decode()},
     "cannot read image: "),
    ({"image": "data:image/png;base64,@@@"}, "image is not valid base64"),
    ({"image": 7}, "image must be a data URL string"),
    ({"text": "great"}, "classifies images, not texts"),
    ({"image": "x", "text": "y"}, 'send {"image": '),
    ([1, 2], 'send {"image": ')])
def test_bad_requests_get_a_one_line_error(untrained_image_ckpt: str, payload: object,
                                           error: str) -> None:
    with running(untrained_image_ckpt) as server:
        status, result = post(server, payload)
    assert status == 400 and error in result["error"] and "\n" not in result["error"]


def test_a_blank_canvas_and_a_blank_review_are_refused(untrained_image_ckpt: str,
                                                       untrained_text_ckpt: str,
                                                       tmp_path: Path) -> None:
    Image.new("RGBA", (280, 280), (0, 0, 0, 255)).save(tmp_path / "blank.png")
    blank = "data:image/png;base64," + base64.b64encode(
        (tmp_path / "blank.png").read_bytes()).decode()
    with running(untrained_image_ckpt) as server:
        assert post(server, {"image": blank}) == (
            400, {"error": "no digit found: the image is blank"})
    with running(untrained_text_ckpt) as server:
        assert post(server, {"text": "  \n "}) == (
            400, {"error": "empty review: no words to classify"})


def test_not_json_missing_pages_and_huge_bodies(untrained_image_ckpt: str) -> None:
    with running(untrained_image_ckpt) as server:
        status, body = request(server, "POST", "/predict", b"{not json")
        assert status == 400 and "error" in json.loads(body)
        assert request(server, "GET", "/nowhere")[0] == 404
        assert request(server, "POST", "/elsewhere", b"{}")[0] == 404
        status, _ = request(server, "POST", "/predict", b"{}",
                            {"Content-Length": str(64 * 1024 * 1024)})
        assert status == 413


def test_the_page_carries_the_model_and_escapes_it(untrained_image_ckpt: str) -> None:
    with running(untrained_image_ckpt) as server:
        status, body = request(server, "GET", "/")
    html = body.decode()
    assert status == 200 and '"modality": "image"' in html and '"classes": ["0", "1"' in html
    model = load(untrained_image_ckpt)
    model.class_names[0] = "</script><b>"  # a class name must not end the script element
    assert "</script><b>" not in page(model) and "\\u003c/script>\\u003cb>" in page(model)


def test_a_busy_port_is_one_error_line(untrained_image_ckpt: str,
                                       capsys: pytest.CaptureFixture) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as info:
            main([untrained_image_ckpt, "--port", str(port)])
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot listen on 127.0.0.1:{port}: ") and err.count("\n") == 1


def test_a_missing_checkpoint_is_one_error_line(tmp_path: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as info:
        main([str(tmp_path / "none.ckpt")])
    assert info.value.code == 1
    assert capsys.readouterr().err == f"error: checkpoint not found: {tmp_path / 'none.ckpt'}\n"


@pytest.mark.integration
def test_the_command_serves_until_ctrl_c(untrained_image_ckpt: str, tmp_path: Path) -> None:
    process = subprocess.Popen([sys.executable, "-m", "dlexp.demo", untrained_image_ckpt,
                                "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = process.stdout.readline()
        assert line.startswith("dlexp-demo: mlp.ckpt (MLP, image, 10 classes) at http://"), line
        url = line.split(" at ")[1].split()[0]
        host, port = url.removeprefix("http://").rstrip("/").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.request("POST", "/predict", json.dumps({"image": canvas_png(tmp_path / "c.png")}))
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    assert (process.returncode, err) == (0, "")  # no traceback, and no request log either
