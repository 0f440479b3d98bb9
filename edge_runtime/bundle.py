"""The model bundle: the contract between the offline side and the runtime.

A bundle is a folder with ONNX graphs and ``manifest.json``::

    front.onnx          image -> split tensor (+ fused attention map)
    back.onnx           split tensor -> logits (+ ABN attention logits and map)
    attention.onnx      split tensor -> ABN map M            (ABN bundles)
    back_map.onnx       split tensor, M -> logits            (ABN bundles: recognition with a corrected M)
    grad_<variant>.onnx image, reference -> influence map    (optional)
    manifest.json

A detection bundle (manifest ``task = "detect"``, ``docs/detection.md``) has ``back.onnx``:
split tensor -> logits (N x P x K), boxes (N x P x 4), a ``detection`` object (box format,
score threshold, NMS parameters) and gradient graphs whose reference is a list of boxes.

The manifest (format version 1) names the classes, the input spec, the split tensor, each graph with
its inputs and outputs, the importance maps the bundle can produce, and a sha256 per file. The
**model id** is the sha256 of the canonical manifest (sorted keys, no ``model_id`` field); its first
8 bytes travel in every message so that a receiver never runs the back half of one model on the
features of another.

The runtime side only reads bundles; :func:`write_manifest` is shared with the offline exporters so
that there is one definition of the format.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.atomic import recover_dir, write_text
from edge_runtime.errors import BundleError

__all__ = [
    "FORMAT_VERSION",
    "DEFAULT_BUNDLE",
    "DETECT_BUNDLE",
    "Bundle",
    "load_bundle",
    "write_manifest",
    "compute_model_id",
    "GRAD_VARIANTS",
    "TASKS",
]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
DEFAULT_BUNDLE = Path(__file__).parent / "bundles" / "default"
#: The shipped detection bundle (``edge-runtime demo --task detect``)
DETECT_BUNDLE = Path(__file__).parent / "bundles" / "detect"
GRAD_VARIANTS = ("plain", "guided", "selective", "extsel")
#: What a bundle's back half yields: class scores, or boxes (``task`` in the manifest; absent =
#: classify, so older bundles keep their model id)
TASKS = ("classify", "detect")
_REQUIRED_KEYS = ("format_version", "model_name", "model_id", "classes", "input", "split", "graphs", "files")
_DTYPES = {"float32": np.float32, "float16": np.float16}


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _canonical(manifest: dict) -> bytes:
    body = {k: v for k, v in manifest.items() if k != "model_id"}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def compute_model_id(manifest: dict) -> str:
    """sha256 (hex) of the canonical manifest without its ``model_id`` field."""
    return hashlib.sha256(_canonical(manifest)).hexdigest()


def write_manifest(folder: str | Path, manifest: dict) -> dict:
    """Fill in ``files`` (sha256 of every graph named in ``graphs``), ``format_version`` and
    ``model_id``, write ``manifest.json`` atomically, and return the completed manifest."""
    folder = Path(folder)
    manifest = dict(manifest)
    manifest["format_version"] = FORMAT_VERSION
    manifest["files"] = {g["file"]: _sha256_file(folder / g["file"]) for g in manifest["graphs"].values()}
    manifest["model_id"] = compute_model_id(manifest)
    # atomic: readers see the old or the new manifest
    write_text(folder / "manifest.json", json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


@dataclass(frozen=True)
class InputSpec:
    name: str
    size: tuple[int, int]  # (height, width)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    layout: str = "NCHW"
    color: str = "RGB"


class Bundle:
    """A loaded, verified bundle. ONNX Runtime sessions are created on first use.

    Use :func:`load_bundle` to get one. ``threads`` sets each session's intra-op thread count
    (0 = ONNX Runtime's default).
    """

    def __init__(self, path: Path, manifest: dict, *, threads: int = 0) -> None:
        self.path = path
        self.manifest = manifest
        self.threads = threads
        self.model_id: str = manifest["model_id"]
        self.model_id_bytes: bytes = bytes.fromhex(self.model_id)[:8]
        self.model_name: str = manifest["model_name"]
        self.classes: tuple[str, ...] = tuple(manifest["classes"])
        spec = manifest["input"]
        self.input = InputSpec(
            spec["name"],
            tuple(spec["size"]),
            tuple(spec["mean"]),
            tuple(spec["std"]),
            spec.get("layout", "NCHW"),
            spec.get("color", "RGB"),
        )
        split = manifest["split"]
        self.split_name: str = split["name"]
        self.split_shape: tuple[int, ...] = tuple(split["shape"])
        self.split_dtype = _DTYPES[split["dtype"]]
        self.graphs: dict[str, dict] = manifest["graphs"]
        self.importance: dict[str, dict] = manifest.get("importance", {})
        #: ``classify`` or ``detect``: what the back half yields (a bundle property; the edge,
        #: codec, transport and receiver are shared)
        self.task: str = manifest.get("task", "classify")
        self.detection = None
        if self.task == "detect":
            from edge_runtime.detection import params_of

            self.detection = params_of(manifest)
        self._sessions: dict[str, Any] = {}
        self._mean = np.asarray(self.input.mean, np.float32).reshape(1, 3, 1, 1) * 255.0
        self._inv_std = 1.0 / (np.asarray(self.input.std, np.float32).reshape(1, 3, 1, 1) * 255.0)

    def __repr__(self) -> str:
        return f"Bundle({self.model_name!r}, id={self.model_id[:16]}, path={str(self.path)!r})"

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def has_graph(self, name: str) -> bool:
        return name in self.graphs

    def session(self, name: str):
        """The ONNX Runtime session of graph ``name``; its inputs and outputs are checked against
        the manifest the first time it is created."""
        if name in self._sessions:
            return self._sessions[name]
        if name not in self.graphs:
            raise BundleError(f"bundle {self.path} has no graph {name!r}; it has {sorted(self.graphs)}")
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.threads:
            opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        # No spin-waiting of the intra-op threads after a run: between runs this process decodes,
        # captures or reduces in Python, and threads spinning on the cores it needs slow it down.
        # benchmarks/receiver.py at the receiver's default threads (2 on 2 cores), back to back:
        # batched 2525 against 3009 frames/s with spinning, but the decode's share of the back
        # half 0.39 against 0.58, batching 1.60 against 1.47 x, and the paced latency test's p99
        # 6.3 ms against 12.8 (30.5 in another run). One thread has no pool to spin.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        spec = self.graphs[name]
        file = self.path / spec["file"]
        try:
            sess = ort.InferenceSession(str(file), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise BundleError(f"cannot load graph {name!r} from {file}: {e}") from e
        got_in = [i.name for i in sess.get_inputs()]
        got_out = [o.name for o in sess.get_outputs()]
        if got_in != spec["inputs"] or got_out != spec["outputs"]:
            raise BundleError(
                f"graph {name!r} ({file.name}) has inputs {got_in} and outputs {got_out}, but the manifest "
                f"says {spec['inputs']} and {spec['outputs']}; re-export the bundle"
            )
        self._sessions[name] = sess
        return sess

    def run(self, name: str, feeds: dict[str, np.ndarray], outputs: list[str] | None = None) -> dict:
        """Run graph ``name``; returns ``{output name: array}`` for ``outputs`` (default: all)."""
        sess = self.session(name)
        names = outputs or self.graphs[name]["outputs"]
        return dict(zip(names, sess.run(names, feeds), strict=True))

    def preprocess(self, images: np.ndarray) -> np.ndarray:
        """uint8 RGB (H,W,3) or (N,H,W,3) at the model's input size -> normalised float32 NCHW."""
        if images.dtype != np.uint8:
            raise TypeError(f"images must be uint8 RGB, got dtype {images.dtype}")
        if images.ndim == 3:
            images = images[None]
        h, w = self.input.size
        if images.ndim != 4 or images.shape[1:] != (h, w, 3):
            raise ValueError(
                f"images must have shape (N, {h}, {w}, 3) or ({h}, {w}, 3), got {images.shape}; "
                "resize frames to the model's input size first"
            )
        x = images.transpose(0, 3, 1, 2).astype(np.float32)
        return (x - self._mean) * self._inv_std

    def front(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Front half on a preprocessed batch: all outputs of ``front.onnx``."""
        return self.run("front", {self.input.name: x})

    def detect(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Back half of a detection bundle: (logits N x P x K, boxes N x P x 4 in input pixels)."""
        if self.task != "detect":
            raise BundleError(f"bundle {self.path} is a {self.task} bundle; it yields no boxes")
        spec = self.graphs["back"]
        logits, boxes = self.session("back").run(spec["outputs"][:2], {spec["inputs"][0]: features})
        return logits, boxes

    def reference_shape(self, graph: str) -> tuple[int, ...]:
        """Shape of a gradient graph's ``reference`` input at batch 1."""
        spec = self.importance.get(graph, {})
        return (1, *spec.get("reference_shape", [self.num_classes]))

    def back(self, features: np.ndarray) -> np.ndarray:
        """Back half: logits (the back graph's first output) for a batch of split tensors."""
        spec = self.graphs["back"]
        return self.session("back").run(spec["outputs"][:1], {spec["inputs"][0]: features})[0]

    def warmup(self, graphs=None) -> None:
        """Create every session (or those of ``graphs``) and run it once, so the first frame pays
        no start-up cost."""
        h, w = self.input.size
        x = np.zeros((1, 3, h, w), np.float32)
        feats = self.front(x)[self.split_name]
        for name, spec in self.graphs.items():
            if name == "front" or (graphs is not None and name not in graphs):
                continue
            feeds = {}
            for inp in spec["inputs"]:
                if inp == self.input.name:
                    feeds[inp] = x
                elif inp == self.split_name:
                    feeds[inp] = feats
                elif inp == "reference":
                    feeds[inp] = np.zeros(self.reference_shape(name), np.float32)
                elif inp == "abn_map":
                    feeds[inp] = np.ones((1, 1, *self.split_shape[1:]), np.float32)
            if len(feeds) == len(spec["inputs"]):
                self.run(name, feeds)


def _check_manifest(path: Path, manifest: Any) -> None:
    if not isinstance(manifest, dict):
        raise BundleError(f"{path}/manifest.json must hold a JSON object")
    missing = [k for k in _REQUIRED_KEYS if k not in manifest]
    if missing:
        raise BundleError(f"{path}/manifest.json lacks required keys {missing}")
    if manifest["format_version"] != FORMAT_VERSION:
        raise BundleError(
            f"{path}: manifest format version {manifest['format_version']!r} is not supported "
            f"(this runtime reads version {FORMAT_VERSION})"
        )
    for g in ("front", "back"):
        if g not in manifest["graphs"]:
            raise BundleError(f"{path}: manifest has no {g!r} graph; a bundle needs front and back")
    split = manifest["split"]
    shape = split.get("shape")
    if not (isinstance(shape, list) and len(shape) == 3 and all(isinstance(d, int) and d > 0 for d in shape)):
        raise BundleError(f"{path}: split shape must be [C, H, W] of positive ints, got {shape!r}")
    if split.get("dtype") not in _DTYPES:
        raise BundleError(f"{path}: split dtype must be one of {sorted(_DTYPES)}, got {split.get('dtype')!r}")
    size = manifest["input"].get("size")
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(d, int) and d > 0 for d in size)):
        raise BundleError(f"{path}: input size must be [height, width] of positive ints, got {size!r}")
    if not manifest["classes"]:
        raise BundleError(f"{path}: manifest lists no classes")
    if manifest.get("task", "classify") not in TASKS:
        raise BundleError(f"{path}: manifest task must be one of {list(TASKS)}, got {manifest.get('task')!r}")
    expected = compute_model_id(manifest)
    if manifest["model_id"] != expected:
        raise BundleError(
            f"{path}: manifest model_id {manifest['model_id'][:16]}... does not match its content "
            f"({expected[:16]}...); the manifest was edited by hand; re-export the bundle"
        )


def load_bundle(path: str | Path | None = None, *, threads: int = 0, verify: bool = True) -> Bundle:
    """Load and verify the bundle in folder ``path`` (default: the bundle shipped with the package).

    Raises :class:`BundleError` naming the problem: a missing folder, manifest or graph file, a
    sha256 that does not match, or an inconsistent manifest.
    """
    folder = Path(path) if path is not None else DEFAULT_BUNDLE
    if not folder.is_dir() and recover_dir(folder):
        log.warning("bundle %s: restored the previous version after an interrupted replacement", folder)
    if not folder.is_dir():
        raise BundleError(f"bundle folder {folder} does not exist")
    mpath = folder / "manifest.json"
    if not mpath.is_file():
        raise BundleError(f"bundle folder {folder} has no manifest.json")
    try:
        manifest = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{mpath} is not valid JSON: {e}") from e
    _check_manifest(folder, manifest)
    for name, spec in manifest["graphs"].items():
        file = folder / spec["file"]
        if not file.is_file():
            raise BundleError(f"bundle {folder}: graph {name!r} file {spec['file']} is missing")
        if verify:
            digest = _sha256_file(file)
            if digest != manifest["files"].get(spec["file"]):
                raise BundleError(
                    f"bundle {folder}: {spec['file']} has sha256 {digest[:16]}..., the manifest says "
                    f"{str(manifest['files'].get(spec['file']))[:16]}...; the file is corrupt or replaced"
                )
    return Bundle(folder, manifest, threads=threads)
