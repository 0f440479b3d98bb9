"""The attention-map editor: a small local web app (Flask) over an ImageFolder data set and a bundle.

The server runs the bundle with onnxruntime only (``front.onnx`` once per image at start-up, then
``back_map.onnx`` per edit, a few milliseconds), so it needs no torch at request time. The page is
plain HTML / JS / CSS in ``static/`` (no build step). Edits travel as a *base* map plus a list of
brush strokes in image pixel coordinates; the server applies them with :mod:`models.correct`, so
the browser and the retraining see the same arithmetic.

Routes (JSON unless stated)::

    GET  /                    the page
    GET  /api/items           classes, map shape, image size, model id, the queue (misrecognized first)
    GET  /api/image/<i>       image i as PNG, at the model's input size
    GET  /api/item/<i>        image i's model map, prediction, and saved teacher map (if any)
    POST /api/predict         {item, base, strokes} -> edited map and its prediction
    POST /api/mask            {item, png (base64)} -> map from a mask image
    POST /api/save            {item, base, strokes} -> teacher map saved (atomic) to <data>/teacher_maps/

``base`` is ``"model"`` (the network's M), ``"zeros"``, ``"ones"``, ``"teacher"`` or a map (h x w
list of lists).
"""

from __future__ import annotations

import base64
import logging
import threading
from pathlib import Path

import cv2
import numpy as np

from edge_runtime.models.correct import (
    BundleRecognizer,
    Stroke,
    TeacherStore,
    apply_strokes,
    list_image_folder,
    new_map,
)

__all__ = ["EditorState", "EditorError", "create_app", "EditorServer", "STATIC"]

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
MAX_STROKES = 10_000
MAX_POINTS = 100_000


class EditorError(ValueError):
    """A bad request to the editor (answered with HTTP 400 and the message)."""


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class EditorState:
    """Images of an ImageFolder tree, their features / maps / predictions, and the teacher store."""

    def __init__(self, data_dir: str | Path, bundle) -> None:
        self.root = Path(data_dir)
        self.rec = BundleRecognizer(bundle)
        self.bundle = bundle
        self.store = TeacherStore(self.root)
        folder_classes, items = list_image_folder(self.root)
        if not items:
            raise ValueError(f"{self.root} holds no images (expected {self.root}/<class>/<image>)")
        unknown = sorted(set(folder_classes) - set(bundle.classes))
        if unknown:
            raise ValueError(
                f"class folders {unknown} in {self.root} are not classes of the bundle "
                f"({list(bundle.classes)}); name the folders after the bundle's classes"
            )
        h, w = self.rec.image_size
        self.keys = [k for k, _ in items]
        self.labels = np.array([bundle.classes.index(folder_classes[c]) for _, c in items], np.int64)
        images = []
        for key in self.keys:
            bgr = cv2.imread(str(self.root / key), cv2.IMREAD_COLOR)
            if bgr is None:
                raise ValueError(f"cannot read image {self.root / key}")
            images.append(
                cv2.cvtColor(cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
            )
        self.images = np.stack(images)
        a = self.rec.analyse(self.images)
        self.features, self.maps, self.logits = a["features"], a["map"], a["logits"]
        probs = _softmax(self.logits)
        pred = self.logits.argmax(1)
        wrong = pred != self.labels
        # The queue: misrecognized images first, the least confident on the true class first.
        self.order = np.lexsort((probs[np.arange(len(pred)), self.labels], ~wrong))
        self.pred, self.probs = pred, probs
        self.lock = threading.Lock()  # onnxruntime sessions are thread-safe; the cache below is not
        self._png: dict[int, bytes] = {}

    def item(self, i: int) -> int:
        if not isinstance(i, int) or not 0 <= i < len(self.keys):
            raise EditorError(f"item must be an image number in 0..{len(self.keys) - 1}, got {i!r}")
        return i

    def summary(self, i: int, logits: np.ndarray) -> dict:
        p = _softmax(logits)
        top = np.argsort(-p)[:3]
        return {
            "pred": int(top[0]),
            "pred_name": self.bundle.classes[int(top[0])],
            "correct": bool(top[0] == self.labels[i]),
            "top": [{"class": self.bundle.classes[int(k)], "p": round(float(p[k]), 4)} for k in top],
        }

    def base_map(self, i: int, base) -> np.ndarray:
        shape = self.rec.map_shape
        if isinstance(base, str):
            if base == "model":
                return self.maps[i]
            if base == "zeros":
                return new_map(shape, 0.0)
            if base == "ones":
                return new_map(shape, 1.0)
            if base == "teacher":
                if self.keys[i] not in self.store:
                    raise EditorError(f"image {self.keys[i]} has no saved teacher map")
                return self.store.load(self.keys[i])
            raise EditorError(f"base must be model, zeros, ones, teacher or a map, got {base!r}")
        m = np.asarray(base, dtype=np.float32) if isinstance(base, list) else None
        if m is None or m.shape != shape or not np.all(np.isfinite(m)):
            raise EditorError(f"a base map must be a {shape[0]} x {shape[1]} list of lists of numbers")
        return np.clip(m, 0.0, 1.0)

    def edited(self, i: int, base, strokes) -> tuple[np.ndarray, list[Stroke]]:
        if not isinstance(strokes, list) or len(strokes) > MAX_STROKES:
            raise EditorError(f"strokes must be a list of at most {MAX_STROKES} strokes")
        try:
            parsed = [Stroke.from_dict(s) for s in strokes]
        except (ValueError, AttributeError) as e:
            raise EditorError(str(e)) from None
        if sum(len(s.points) for s in parsed) > MAX_POINTS:
            raise EditorError(f"at most {MAX_POINTS} stroke points per request")
        return apply_strokes(self.base_map(i, base), parsed, self.rec.image_size), parsed

    def predict(self, i: int, m: np.ndarray) -> np.ndarray:
        return self.rec.recognize(self.features[i : i + 1], m[None])[0]

    def png(self, i: int) -> bytes:
        with self.lock:
            if i not in self._png:
                ok, buf = cv2.imencode(".png", cv2.cvtColor(self.images[i], cv2.COLOR_RGB2BGR))
                if not ok:
                    raise RuntimeError(f"cannot encode image {self.keys[i]} as PNG")
                self._png[i] = buf.tobytes()
            return self._png[i]


def create_app(state: EditorState):
    """The Flask app of the editor over ``state``."""
    from flask import Flask, jsonify, request, send_from_directory

    app = Flask(__name__, static_folder=None)

    def body() -> dict:
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            raise EditorError("the request body must be a JSON object")
        return data

    @app.errorhandler(EditorError)
    def _bad(e):
        return jsonify({"error": str(e)}), 400

    @app.get("/")
    def index():
        return send_from_directory(STATIC, "index.html")

    @app.get("/static/<path:name>")
    def static_file(name):
        return send_from_directory(STATIC, name)

    @app.get("/api/items")
    def items():
        entries = state.store.index()["entries"]
        return jsonify(
            {
                "classes": list(state.bundle.classes),
                "map_shape": list(state.rec.map_shape),
                "image_size": list(state.rec.image_size),
                "model_id": state.bundle.model_id,
                "model_name": state.bundle.model_name,
                "items": [
                    {
                        "item": int(i),
                        "key": state.keys[i],
                        "label": int(state.labels[i]),
                        "label_name": state.bundle.classes[int(state.labels[i])],
                        "pred": int(state.pred[i]),
                        "correct": bool(state.pred[i] == state.labels[i]),
                        "teacher": state.keys[i] in entries,
                    }
                    for i in state.order
                ],
            }
        )

    @app.get("/api/image/<int:i>")
    def image(i):
        return state.png(state.item(i)), 200, {"Content-Type": "image/png", "Cache-Control": "max-age=3600"}

    @app.get("/api/item/<int:i>")
    def item(i):
        i = state.item(i)
        teacher = state.store.load(state.keys[i]).tolist() if state.keys[i] in state.store else None
        return jsonify(
            {
                "item": i,
                "key": state.keys[i],
                "map": state.maps[i].tolist(),
                "teacher": teacher,
                "before": state.summary(i, state.logits[i]),
            }
        )

    @app.post("/api/predict")
    def predict():
        d = body()
        i = state.item(d.get("item"))
        m, _ = state.edited(i, d.get("base", "model"), d.get("strokes", []))
        return jsonify({"map": m.tolist(), "after": state.summary(i, state.predict(i, m))})

    @app.post("/api/mask")
    def mask():
        from edge_runtime.models.correct import map_from_mask

        d = body()
        state.item(d.get("item"))
        try:
            raw = base64.b64decode(str(d.get("png", "")).split(",")[-1], validate=True)
        except ValueError:
            raise EditorError("png must be a base64-encoded image") from None
        img = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise EditorError("cannot decode the mask image")
        if img.ndim == 3 and img.shape[2] == 4:
            alpha = img[..., 3]
            img = alpha if alpha.min() < 255 else img[..., :3]
        return jsonify({"map": map_from_mask(img, state.rec.map_shape).tolist()})

    @app.post("/api/save")
    def save():
        d = body()
        i = state.item(d.get("item"))
        base = d.get("base", "model")
        m, strokes = state.edited(i, base, d.get("strokes", []))
        path = state.store.save(
            state.keys[i],
            m,
            label=int(state.labels[i]),
            label_name=state.bundle.classes[int(state.labels[i])],
            model_id=state.bundle.model_id,
            base=base if isinstance(base, str) else "map",
            strokes=[s.to_dict() for s in strokes],
        )
        log.info("saved teacher map of %s to %s", state.keys[i], path)
        return jsonify({"saved": str(path.relative_to(state.root)), "count": len(state.store)})

    return app


class EditorServer:
    """The editor served on ``host:port`` (0: a free port) from a background thread.

    A context manager: ``with EditorServer(state) as srv: ... srv.url``; closing stops the server.
    """

    def __init__(self, state: EditorState, host: str = "127.0.0.1", port: int = 0) -> None:
        from werkzeug.serving import make_server

        self.state = state
        self._server = make_server(host, port, create_app(state), threaded=True)
        self.host, self.port = host, self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name="abn-editor", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def start(self) -> EditorServer:
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (the CLI); call :meth:`close` after."""
        self._server.serve_forever()

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()

    def __enter__(self) -> EditorServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
