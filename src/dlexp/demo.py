"""``dlexp-demo CKPT [--port N] [--host 127.0.0.1]``: the Keras course's ``interact`` widget as a
local web page. For an image model, draw a digit with the mouse; for a text model, type a
review. The predicted class and every class probability (as bars) update when a stroke ends or
typing pauses.

The page is one small HTML file of our own (``demo.html``) served by the standard library's
``http.server``, with a JSON endpoint ``POST /predict`` (``{"image": "data:image/png;base64,..."}``
or ``{"text": "..."}``). Gradio would do this too, but pulls a large dependency tree and loads
its assets from the network, which course machines and CI often lack. Inputs go through the same
:class:`~dlexp.inference.Predictor` as ``dlexp-predict`` (the canvas PNG through the same
``load_image`` as an image file), so page and command agree on the same input.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import io
import json
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

from dlexp.errors import user_message
from dlexp.inference import Predictor, load

MAX_BODY = 8 * 1024 * 1024  # bytes of a POST: a 280x280 canvas PNG is ~10 kB, a review less


class DemoServer(ThreadingHTTPServer):
    """Serves the page and ``/predict`` for one model."""

    # on Ctrl+C, server_close() waits for requests in flight (each is one short prediction;
    # HTTP/1.0 closes every connection) rather than exiting with threads inside torch
    daemon_threads = False

    def __init__(self, address: tuple[str, int], model: Predictor) -> None:
        super().__init__(address, DemoHandler)
        self.model = model
        self.lock = threading.Lock()  # one prediction at a time: the model is not re-entrant
        self.page = page(model).encode()

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):  # the page went away mid-answer
            return
        super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"


class DemoHandler(BaseHTTPRequestHandler):
    server: DemoServer

    def do_GET(self) -> None:
        if self.path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, self.server.page, "text/html; charset=utf-8")
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no such page: {self.path}"})

    def do_POST(self) -> None:
        if self.path != "/predict":
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint: {self.path}"})
            return
        length = self.headers.get("Content-Length", "")
        length = int(length) if length.isdigit() else 0
        if not 0 < length <= MAX_BODY:
            self._json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE if length else HTTPStatus.BAD_REQUEST,
                       {"error": f"a request body of 1 to {MAX_BODY} bytes is needed"})
            return
        try:
            payload = json.loads(self.rfile.read(length))
            with self.server.lock:
                result = predict_payload(self.server.model, payload)
        except ValueError as e:  # bad JSON, bad base64, unreadable image, blank review
            self._json(HTTPStatus.BAD_REQUEST, {"error": str(e)})
            return
        self._json(HTTPStatus.OK, result)

    def _json(self, status: HTTPStatus, body: dict) -> None:
        self._send(status, json.dumps(body).encode(), "application/json")

    def _send(self, status: HTTPStatus, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: one line per stroke or keystroke would bury the URL."""


def predict_payload(model: Predictor, payload: Any) -> dict:
    """``{"class", "labels", "probabilities": [{"class", "probability"}, ...]}`` in class order,
    for ``{"image": <PNG data URL or base64>}`` or ``{"text": <review>}``; ValueError otherwise.
    ``labels``: the predicted class, or a multi-label model's labels over its threshold
    (``class`` names them; ``threshold`` is given too)."""
    if not isinstance(payload, dict) or len(payload.keys() & {"image", "text"}) != 1:
        raise ValueError('send {"image": "data:image/png;base64,..."} or {"text": "..."}')
    if "image" in payload:
        probs = model.classify_images([model.prepare_image(_png_bytes(payload["image"]))])
    else:
        probs = model.classify_texts([model.prepare_text(payload["text"])])
    p = probs[0].tolist()
    body = {"probabilities": [{"class": c, "probability": v}
                              for c, v in zip(model.class_names, p, strict=True)]}
    if model.multilabel:
        labels = [c for c, _ in model.over_threshold(model.rank(probs)[0])]
        shown = ", ".join(labels) or f"no label over {model.threshold:g}"
        return {"class": shown, "labels": labels, "threshold": model.threshold, **body}
    best = model.class_names[max(range(len(p)), key=p.__getitem__)]
    return {"class": best, "labels": [best], **body}


def _png_bytes(data: Any) -> io.BytesIO:
    if not isinstance(data, str):
        raise ValueError("image must be a data URL string")
    try:
        return io.BytesIO(base64.b64decode(data.split(",", 1)[-1], validate=True))
    except (binascii.Error, ValueError):
        raise ValueError("image is not valid base64") from None


def page(model: Predictor) -> str:
    """The page, with the model's modality, classes and name filled in."""
    config = {"modality": model.modality, "classes": model.class_names,
              "name": Path(model.path).name, "model": type(model.net).__name__}
    # "<" escaped: a class name cannot close the <script> element
    text = json.dumps(config).replace("<", "\\u003c")
    return resources.files("dlexp").joinpath("demo.html").read_text("utf-8").replace(
        "__CONFIG__", text)


def serve(model: Predictor, host: str = "127.0.0.1", port: int = 8000) -> DemoServer:
    """A bound server (``port=0``: any free one); call ``serve_forever()`` on it."""
    return DemoServer((host, port), model)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="dlexp-demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a .ckpt written by train.py")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: this machine only)")
    args = parser.parse_args(argv)
    try:
        server = serve(load(args.checkpoint), args.host, args.port)
    except Exception as exc:
        message = user_message(exc) or (f"cannot listen on {args.host}:{args.port}: "
                                         f"{exc.strerror or exc}" if isinstance(exc, OSError)
                                         else None)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        sys.exit(1)
    model = server.model
    print(f"dlexp-demo: {Path(args.checkpoint).name} ({type(model.net).__name__}, "
          f"{model.modality}, {len(model.class_names)} classes) at {server.url}  "
          "(Ctrl+C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
