"""Frame sources: the built-in scene stream, cameras, files, network streams, image folders.

Two layers:

- a :class:`Source` opens one thing and reads frames from it (``read()`` returns a
  :class:`Captured` RGB frame, or None when the source ended); :func:`open_source` builds one from
  a :class:`~edge_runtime.config.SourceConfig`. Opening a camera, file or URL that OpenCV cannot
  read raises :class:`~edge_runtime.errors.SourceError` naming it.
- a :class:`FrameFeed` keeps a source alive: it reopens a source that fails or ends with
  exponential back-off (a file or folder with ``loop`` starts again at once; without ``loop`` it
  ends: :attr:`FrameFeed.ended`), and in ``latest`` mode a grabber thread keeps only the newest
  frame, so the loop never falls behind; every frame it overwrote is counted as ``stale``. A video
  file in ``latest`` mode is paced at its own frame rate (like a camera). In ``sequential`` mode
  the caller reads every frame itself, none dropped, as fast as the pipeline goes (offline files,
  tests, benchmarks).

Every :class:`Captured` frame carries its index in the source (for a video file: its frame number
in the file) and, where the source knows it, the source's own timestamp (``source_time_us``: the
video position), which travel in the message and the receiver's result.

Accounting: ``feed.captured == frames handed out + feed.stale + feed.discarded`` (``discarded``:
the frame still waiting when the feed closed).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_runtime.config import SourceConfig
from edge_runtime.errors import SourceError
from edge_runtime.photos import PhotoStream

__all__ = [
    "Captured",
    "Source",
    "SceneSource",
    "OpenCVSource",
    "FolderSource",
    "FrameFeed",
    "open_source",
    "DetectionSceneSource",
    "IMAGE_SUFFIXES",
]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
#: The scene stream is virtual: unpaced, in latest mode it would spin a core; it runs like a camera.
SCENE_DEFAULT_FPS = 30.0


@dataclass(frozen=True)
class Captured:
    """One frame: ``image`` RGB uint8 H x W x 3 at the source's resolution."""

    image: np.ndarray
    index: int  # frame number within this source (counts on across reopens)
    time_ns: int  # capture time, ns since the Unix epoch
    label: int | None = None  # ground truth, where the source knows it (scene stream)
    source_time_us: int | None = None  # the source's own timestamp (video position), if known
    truth: tuple | None = None  # detection scene stream: (boxes (n,4) frame pixels, classes (n,))


class Source:
    """Base class: ``open()``, ``read()``, ``close()``; a context manager."""

    name = "source"
    loops = False  # reopening after the end starts again without waiting
    finite = False  # a file or folder: its end is the end (unless it loops), not an outage

    def __init__(self) -> None:
        self._index = 0

    def open(self) -> None:
        """Open (or reopen); raises :class:`SourceError`."""

    def read(self) -> Captured | None:
        raise NotImplementedError

    def close(self) -> None:
        """Release the device / file."""

    def _next(
        self,
        image: np.ndarray,
        label: int | None = None,
        index: int | None = None,
        source_time_us: int | None = None,
    ) -> Captured:
        c = Captured(image, self._index if index is None else index, time.time_ns(), label, source_time_us)
        self._index += 1
        return c

    def __enter__(self) -> Source:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class SceneSource(Source):
    """The built-in camera stream: Fashion-MNIST items moving over real background photographs
    with camera motion (:class:`~edge_runtime.photos.PhotoStream`, made of the shipped assets)."""

    name = "scene"

    def __init__(self, size: int = 128, seed: int = 0, segment: int = 60) -> None:
        super().__init__()
        self.stream = PhotoStream(size=size, seed=seed, segment=segment)

    def read(self) -> Captured:
        scene = self.stream.frame(self._index)
        return self._next(scene.image, scene.label)


class DetectionSceneSource(Source):
    """The built-in detection stream: several tracks of Fashion-MNIST items moving over real
    background photographs (:class:`~edge_runtime.detect_scenes.DetectionStream`, made of the
    shipped assets), 4:3 frames of ``frame_hw``; each frame carries its boxes (``truth``)."""

    name = "scene"

    def __init__(self, seed: int = 0, segment: int = 90, frame_hw: tuple[int, int] = (144, 192)) -> None:
        super().__init__()
        from edge_runtime.detect_scenes import DetectionStream

        self.stream = DetectionStream(frame_hw, seed, segment=segment)

    def read(self) -> Captured:
        scene = self.stream.frame(self._index)
        c = self._next(scene.image, scene.label)
        return dataclasses.replace(c, truth=(scene.boxes, scene.labels))


class OpenCVSource(Source):
    """A camera (index or device path), a video file, or an RTSP / HTTP stream through OpenCV."""

    def __init__(self, kind: str, uri: str, *, loop: bool = True, width: int = 0, height: int = 0) -> None:
        super().__init__()
        if kind not in ("camera", "file", "url"):
            raise ValueError(f"kind must be camera, file or url, got {kind!r}")
        self.kind, self.uri = kind, uri
        self.name = f"{kind} {uri}"
        self.loops = kind == "file" and loop
        self.finite = kind == "file"
        self.width, self.height = width, height
        self._cap: cv2.VideoCapture | None = None

    def open(self) -> None:
        self.close()
        target: int | str = int(self.uri) if self.kind == "camera" and self.uri.isdigit() else self.uri
        if self.kind == "file" and not Path(self.uri).is_file():
            raise SourceError(f"video file {self.uri} does not exist")
        cap = cv2.VideoCapture(target)
        if not cap.isOpened():
            cap.release()
            hint = {
                "camera": "check the index / device path, that the device exists and that this user is in the 'video' group",
                "file": "check that OpenCV can decode this container and codec",
                "url": "check the URL, the network and the stream's credentials",
            }[self.kind]
            raise SourceError(f"{self.kind} {self.uri!r} cannot be opened: {hint}")
        if self.kind == "camera":
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the driver's queue is old frames; we want the newest
            if self.width and self.height:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        self._cap = cap

    def read(self) -> Captured | None:
        if self._cap is None:
            raise SourceError(f"{self.name} is not open")
        ok, bgr = self._cap.read()
        if not ok or bgr is None:
            return None
        if bgr.ndim == 2:
            rgb = cv2.cvtColor(bgr, cv2.COLOR_GRAY2RGB)
        else:
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        if self.kind != "file":
            return self._next(rgb)
        pos = self._cap.get(cv2.CAP_PROP_POS_FRAMES)
        msec = self._cap.get(cv2.CAP_PROP_POS_MSEC)
        index = int(pos) - 1 if pos and pos > 0 else None
        t_us = int(round(msec * 1000)) if msec is not None and msec >= 0 and np.isfinite(msec) else None
        return self._next(rgb, index=index, source_time_us=t_us)

    def frame_rate(self) -> float:
        """The file's own frame rate (0 when the container does not say)."""
        cap = cv2.VideoCapture(self.uri)
        try:
            fps = cap.get(cv2.CAP_PROP_FPS) if cap.isOpened() else 0.0
        finally:
            cap.release()
        return float(fps) if fps and np.isfinite(fps) and 0 < fps < 1000 else 0.0

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class FolderSource(Source):
    """The images in a folder, in name order (subfolders too); one pass per ``open()``."""

    def __init__(self, folder: str | Path, *, loop: bool = True) -> None:
        super().__init__()
        self.folder = Path(folder)
        self.name = f"folder {self.folder}"
        self.loops = loop
        self.finite = True
        self._files: list[Path] = []
        self._pos = 0

    def open(self) -> None:
        if not self.folder.is_dir():
            raise SourceError(f"image folder {self.folder} does not exist")
        self._files = sorted(p for p in self.folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self._files:
            raise SourceError(f"image folder {self.folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        self._pos = 0

    def read(self) -> Captured | None:
        while self._pos < len(self._files):
            path = self._files[self._pos]
            self._pos += 1
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                log.warning("skipping %s: not a readable image", path)
                continue
            return self._next(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        return None


def open_source(cfg: SourceConfig, *, size: int = 128, task: str = "classify") -> Source:
    """The (unopened) source a config names; ``size``: the scene stream's frame side; ``task``: the
    bundle's (a detection bundle's scene stream has several objects per frame, with boxes)."""
    if cfg.kind == "scene" and task == "detect":
        return DetectionSceneSource(seed=cfg.seed, segment=cfg.segment)
    if cfg.kind == "scene":
        return SceneSource(size=size, seed=cfg.seed, segment=cfg.segment)
    if cfg.kind == "folder":
        return FolderSource(cfg.uri, loop=cfg.loop)
    return OpenCVSource(cfg.kind, cfg.uri, loop=cfg.loop, width=cfg.width, height=cfg.height)


class FrameFeed:
    """Keeps a :class:`Source` producing: reopen with back-off, newest-frame-only grabbing.

    ``mode``: ``"latest"`` (a grabber thread; :meth:`get` returns the newest frame, older unread
    ones count as ``stale``) or ``"sequential"`` (:meth:`get` reads in the caller's thread).
    ``fps`` > 0 paces reads. A context manager; :meth:`close` stops the grabber.
    """

    def __init__(
        self,
        source: Source,
        *,
        mode: str = "latest",
        fps: float = 0.0,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 10.0,
    ) -> None:
        if mode not in ("latest", "sequential"):
            raise ValueError(f"mode must be 'latest' or 'sequential', got {mode!r}")
        self.source = source
        self.mode = mode
        self.period = 1.0 / fps if fps > 0 else 0.0
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.captured = 0
        self.stale = 0
        self.discarded = 0
        self.ended = False  # a finite source without loop reached its end
        self.open_failures = 0
        self.reopens = 0
        self._is_open = False
        self._backoff = retry_initial_s
        self._next_read = 0.0
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._slot: Captured | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def from_config(cls, cfg: SourceConfig, *, size: int = 128, task: str = "classify") -> FrameFeed:
        fps = cfg.fps
        source = open_source(cfg, size=size, task=task)
        if cfg.kind == "scene" and cfg.mode == "latest" and fps == 0:
            fps = SCENE_DEFAULT_FPS
        if cfg.kind == "file" and cfg.mode == "latest" and fps == 0:
            # unpaced, the grabber reads a file as fast as it decodes and most frames end "stale"
            fps = source.frame_rate() or SCENE_DEFAULT_FPS
            log.info("%s: paced at %.2f fps (its own frame rate; source.fps overrides)", source.name, fps)
        return cls(
            source,
            mode=cfg.mode,
            fps=fps,
            retry_initial_s=cfg.retry_initial_s,
            retry_max_s=cfg.retry_max_s,
        )

    # -- reading with reopen ---------------------------------------------------------

    def _wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; False if the feed was closed meanwhile."""
        return not self._stop.wait(seconds)

    def _read_one(self) -> Captured | None:
        """One frame, reopening as needed; None only when the feed is closed or the source ended."""
        while not self._stop.is_set() and not self.ended:
            if not self._is_open:
                try:
                    self.source.open()
                except SourceError as e:
                    self.open_failures += 1
                    log.warning("%s; retrying in %.1f s", e, self._backoff)
                    if not self._wait(self._backoff):
                        return None
                    self._backoff = min(self.retry_max_s, max(self._backoff * 2, 0.01))
                    continue
                self._is_open = True
            if self.period:
                delay = self._next_read - time.monotonic()
                if delay > 0 and not self._wait(delay):
                    return None
                # the schedule starts at the first read: from 0, the first two frames came back
                # to back and a consumer waiting in get() lost the first one as "stale" (seen in
                # CI: test_latest_mode_is_paced_at_the_files_frame_rate)
                now = time.monotonic()
                self._next_read = max((self._next_read or now) + self.period, now)
            try:
                frame = self.source.read()
            except SourceError as e:
                log.warning("%s", e)
                frame = None
            if frame is not None:
                self.captured += 1
                self._backoff = self.retry_initial_s
                return frame
            # ended or failed: reopen (files that loop at once, the rest after back-off)
            self.source.close()
            self._is_open = False
            if self.source.finite and not self.source.loops:
                log.info("%s ended (loop = false)", self.source.name)
                self.ended = True
                with self._cond:
                    self._cond.notify_all()
                return None
            self.reopens += 1
            if not self.source.loops:
                log.warning("%s ended or failed; reopening in %.1f s", self.source.name, self._backoff)
                if not self._wait(self._backoff):
                    return None
                self._backoff = min(self.retry_max_s, max(self._backoff * 2, 0.01))
        return None

    def _grab(self) -> None:
        while not self._stop.is_set():
            frame = self._read_one()
            if frame is None:
                break
            with self._cond:
                if self._slot is not None:
                    self.stale += 1
                self._slot = frame
                self._cond.notify()

    # -- public ------------------------------------------------------------------------

    def start(self) -> FrameFeed:
        if self.mode == "latest" and self._thread is None:
            self._thread = threading.Thread(target=self._grab, name="frame-grabber", daemon=True)
            self._thread.start()
        return self

    def get(self, timeout: float = 1.0) -> Captured | None:
        """The next frame (the newest, in latest mode), or None after ``timeout`` seconds / on close."""
        if self.mode == "sequential":
            return self._read_one()
        if self._thread is None:
            self.start()
        with self._cond:
            if self._slot is None:
                self._cond.wait_for(lambda: self._slot is not None or self._stop.is_set(), timeout)
            frame, self._slot = self._slot, None
        return frame

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)
            if self._thread.is_alive():
                log.warning("frame grabber did not stop within 10 s (a blocking source read)")
            self._thread = None
        with self._cond:
            if self._slot is not None:
                self.discarded += 1
                self._slot = None
        if self._is_open:
            self.source.close()
            self._is_open = False

    def __enter__(self) -> FrameFeed:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
