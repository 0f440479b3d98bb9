"""The photographic task: real product photographs in camera-like scenes over real photographs.

Objects are Fashion-MNIST items (70 000 photographs of real products, 10 classes, MIT licence;
Debian's ``dataset-fashion-mnist``) or the procedural shapes of :mod:`edge_runtime.scenes`.
They are placed over crops of real background photographs (Debian's ``mate-backgrounds`` and
``plasma-workspace-wallpapers``, GPL-2+; ``docs/data.md``) with random scale, position,
rotation and tint, smaller distractor items and partial occlusion, then passed through a camera
model (white balance, gamma, contrast, sensor noise, blur, JPEG artefacts of a stream).

Splits (``edge_runtime.datasets`` hands them out):

- items: Fashion-MNIST's own train / test split stays the split; its train file is cut into
  train (first 55 000) and validation (last 5 000) items; test items never enter a training scene;
- backgrounds: the *seen* photographs are cut in two regions, the left 60% for training scenes
  and the right 40% for validation and test scenes; the *unseen* photographs appear in no training
  or validation scene at all (the domain-shift test).

Decoy scenes (the ABN correction experiment, ``benchmarks/decoy.py``): ``decoy="label"`` adds a
small square patch whose colour encodes the label (on a share ``decoy_prob`` of the scenes; the
others get a patch of a random class), ``decoy="random"`` a patch of a random class on every
scene. The patch goes into a corner of the finished frame that the item does not reach, drawn from
its own random stream, so a decoy scene is its plain scene plus the patch and nothing else
(:func:`add_decoys` adds the same patches to frames made without them).

The demo needs no apt: a few hundred test items and four background photographs ship in
``edge_runtime/assets`` (with their licences) and make the built-in moving stream.

Like :mod:`edge_runtime.scenes`, this needs only numpy and OpenCV.
"""

from __future__ import annotations

import functools
import gzip
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_runtime.scenes import CLASS_NAMES as SHAPE_NAMES
from edge_runtime.scenes import Scene, _draw_shape

__all__ = [
    "FASHION_NAMES",
    "DataMissingError",
    "Camera",
    "CAMERAS",
    "fashion_items",
    "backgrounds",
    "PhotoScenes",
    "PhotoStream",
    "DECOYS",
    "DECOY_COLOURS",
    "decoy_patch",
    "add_decoys",
]

FASHION_NAMES = (
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle-boot",
)

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
ASSETS = Path(__file__).parent / "assets"
_MATE = Path("/usr/share/backgrounds/mate/nature")
_PLASMA = Path("/usr/share/wallpapers")
_LOMIRI = Path("/usr/share/backgrounds")  # lomiri-wallpapers-16.04 / -20.04: community photographs

#: Background photographs by role. ``seen``: train (left 60%) / validation, test (right 40%);
#: ``unseen``: only the domain-shift test. Chosen by looking: photographs, not illustrations.
SEEN = (
    _MATE / "Aqua.jpg",
    _MATE / "Blinds.jpg",
    _MATE / "Dune.jpg",
    _MATE / "FreshFlower.jpg",
    _MATE / "Garden.jpg",
    _MATE / "GreenMeadow.jpg",
    _MATE / "RainDrops.jpg",
    _MATE / "TwoWings.jpg",
    _MATE / "YellowFlower.jpg",
    _PLASMA / "BytheWater/contents/images/800x600.jpg",
    _PLASMA / "ColdRipple/contents/images/800x600.jpg",
    _PLASMA / "DarkestHour/contents/images/800x600.jpg",
    _PLASMA / "FallenLeaf/contents/images/800x600.jpg",
    _PLASMA / "Kite/contents/images/800x600.jpg",
    _PLASMA / "summer_1am/contents/images/800x600.jpg",
) + tuple(
    _LOMIRI / f"{name}.jpg"
    for name in (
        "Bridge_by_Sander_Klootwijk", "Dragonfly_by_Bolly", "Picture_0B_by_freespace",
        "Picture_1A_by_freespace", "Wine_by_Jakkub_Mede", "aitzgorri_by_Aitzol_Berasategi",
        "analogpattern_by_Peter_Nerlich", "free_by_Peter_Nerlich", "friends_by_Aitzol_Berasategi",
        "greentock_by_Peter_Nerlich", "life_by_Aitzol_Berasategi", "picosdeeuropa_by_Aitzol_Berasategi",
        "seeding_by_Clements_Engelhardt", "sunset_by_Aitzol_Berasategi",  # 16.04
        "Infinite-Sea_by_Aury88", "Kleiber_by_Lukas_Baubkus",  # 20.04
    )
)  # fmt: skip
UNSEEN = (
    _MATE / "LadyBird.jpg",
    _MATE / "Storm.jpg",
    _MATE / "Wood.jpg",
    _PLASMA / "ColorfulCups/contents/images/2560x1600.jpg",
    _PLASMA / "EveningGlow/contents/images/800x600.jpg",
    _PLASMA / "OneStandsOut/contents/images/800x600.jpg",
    _PLASMA / "Path/contents/images/800x600.jpg",
)
_MATE_ART = Path("/usr/share/backgrounds/mate")
#: Training-only textures: the abstract renders and illustrations of the same two packages (the
#: ones with structure; near-blank or logo images left out). A share of the training scenes
#: (:data:`edge_runtime.datasets.TEXTURE_MIX`, off by default: it lost on validation) can be drawn
#: over them, for more kinds of background than the 15 seen photographs; no validation or test
#: scene uses them.
TEXTURES = (
    _MATE_ART / "abstract/Elephants.jpg",
    _MATE_ART / "abstract/Gulp.png",
    _MATE_ART / "desktop/Stripes.png",
    _MATE_ART / "desktop/Ubuntu-Mate-Cold-no-logo.png",
    _MATE_ART / "desktop/Ubuntu-Mate-Radioactive-no-logo.png",
    _MATE_ART / "desktop/Ubuntu-Mate-Warm-no-logo.png",
) + tuple(
    _PLASMA / name / "contents/images" / image
    for name, image in (
        ("Altai", "5120x2880.png"),
        ("Autumn", "1280x800.jpg"),
        ("Canopee", "3840x2160.png"),
        ("Cascade", "3840x2160.png"),
        ("Cluster", "3840x2160.png"),
        ("Elarun", "2560x1600.png"),
        ("Flow", "5120x2880.jpg"),
        ("Grey", "1280x800.jpg"),
        ("Honeywave", "5120x2880.jpg"),
        ("IceCold", "5120x2880.png"),
        ("Kay", "5120x2880.png"),
        ("Kokkini", "3840x2160.png"),
        ("MilkyWay", "5120x2880.png"),
        ("Opal", "3840x2160.png"),
        ("PastelHills", "1280x800.jpg"),
        ("Patak", "5120x2880.png"),
        ("SafeLanding", "5120x2880.jpg"),
        ("Shell", "5120x2880.jpg"),
        ("Volna", "5120x2880.jpg"),
    )
)
_TRAIN_SHARE = 0.6  # of each seen photograph's width, for training scenes
_MAX_SIDE = 640  # backgrounds are decoded once and kept at most this large


class DataMissingError(FileNotFoundError):
    """A Debian data package the photographic task needs is not installed."""


# --- object sources -------------------------------------------------------------------------------


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


@functools.cache
def fashion_items(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST items of ``split`` (train / validation / test / demo): (N,28,28) uint8, labels.

    ``demo`` are the test items shipped in ``edge_runtime/assets`` (no apt needed).
    """
    if split == "demo":
        with np.load(ASSETS / "fashion_demo.npz") as z:
            return z["images"], z["labels"].astype(np.int64)
    stem = {"train": "train", "validation": "train", "test": "t10k"}[split]
    img, lab = FASHION_DIR / f"{stem}-images-idx3-ubyte.gz", FASHION_DIR / f"{stem}-labels-idx1-ubyte.gz"
    if not img.exists() or not lab.exists():
        raise DataMissingError(
            f"Fashion-MNIST is not installed ({img} missing); install it with "
            "`apt-get install dataset-fashion-mnist` (or `sh deploy/system-packages.sh`, as root)"
        )
    images, labels = _read_idx(img), _read_idx(lab).astype(np.int64)
    if split == "train":
        return images[:55000], labels[:55000]
    if split == "validation":
        return images[55000:], labels[55000:]
    return images, labels


def _shape_sprite(rng: np.random.Generator, cls: int, side: int) -> np.ndarray:
    """A shape of class ``cls`` as a (side, side) uint8 sprite (luminance = alpha source)."""
    canvas = np.zeros((side, side, 3), np.uint8)
    mask = _draw_shape(
        canvas, cls, (side / 2, side / 2), side * 0.45, rng.uniform(0, 2 * np.pi), (255, 255, 255)
    )
    out = np.zeros((side, side), np.uint8)
    out[mask] = rng.integers(170, 256)
    return out


# --- backgrounds ----------------------------------------------------------------------------------


def _decode(path: Path) -> np.ndarray:
    # the large renders and the multi-megapixel photographs: decode at 1/4 (still >= _MAX_SIDE)
    big = path.name.split("x")[0] in ("2560", "3840", "5120") or (
        path.parent == _LOMIRI and path.name != "Picture_1A_by_freespace.jpg"
    )
    bgr = cv2.imread(str(path), cv2.IMREAD_REDUCED_COLOR_4 if big else cv2.IMREAD_COLOR)
    if bgr is None:
        raise DataMissingError(
            f"background photograph {path} is missing or unreadable; install the Debian packages "
            "mate-backgrounds, plasma-workspace-wallpapers, lomiri-wallpapers-16.04 and "
            "lomiri-wallpapers-20.04 (`sh deploy/system-packages.sh`, as root)"
        )
    h, w = bgr.shape[:2]
    s = _MAX_SIDE / max(h, w)
    if s < 1:
        bgr = cv2.resize(bgr, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@functools.cache
def backgrounds(role: str) -> tuple[np.ndarray, ...]:
    """Background photographs (RGB) for ``role``: train, validation, test, unseen, demo, textures
    (training only)."""
    if role == "textures":
        return tuple(_decode(p) for p in TEXTURES)
    if role == "demo":
        return tuple(_decode(p) for p in sorted((ASSETS / "backgrounds").glob("*.jpg")))
    if role == "unseen":
        return tuple(_decode(p) for p in UNSEEN)
    out = []
    for p in SEEN:
        img = _decode(p)
        cut = int(img.shape[1] * _TRAIN_SHARE)
        out.append(np.ascontiguousarray(img[:, :cut] if role == "train" else img[:, cut:]))
    return tuple(out)


# --- the camera -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Camera:
    """Ranges of the camera model's knobs; each frame draws its own values."""

    wb: float = 0.12  # per-channel gain in 1 +- wb
    gamma: tuple[float, float] = (0.75, 1.35)
    contrast: tuple[float, float] = (0.75, 1.15)
    brightness: float = 18.0  # offset in +- brightness
    noise: tuple[float, float] = (0.0, 6.0)  # sensor noise sigma (8-bit levels)
    blur: tuple[float, float] = (0.0, 0.9)  # Gaussian sigma in pixels
    jpeg_prob: float = 0.5
    jpeg_quality: tuple[int, int] = (45, 95)

    def draw(self, rng: np.random.Generator) -> dict:
        return {
            "gain": 1 + rng.uniform(-self.wb, self.wb, 3),
            "gamma": rng.uniform(*self.gamma),
            "contrast": rng.uniform(*self.contrast),
            "offset": rng.uniform(-self.brightness, self.brightness),
            "noise": rng.uniform(*self.noise),
            "blur": rng.uniform(*self.blur),
            "jpeg": int(rng.integers(*self.jpeg_quality)) if rng.random() < self.jpeg_prob else 0,
        }

    @staticmethod
    def apply(img: np.ndarray, p: dict, rng: np.random.Generator) -> np.ndarray:
        x = img.astype(np.float32) * p["gain"]
        x = 255.0 * np.power(np.clip(x, 0, 255) / 255.0, p["gamma"])
        x = (x - 128.0) * p["contrast"] + 128.0 + p["offset"]
        if p["blur"] > 0.3:
            x = cv2.GaussianBlur(x, (0, 0), p["blur"])
        if p["noise"] > 0:
            x = x + rng.normal(0, p["noise"], x.shape).astype(np.float32)
        out = np.clip(x, 0, 255).astype(np.uint8)
        if p["jpeg"]:
            ok, buf = cv2.imencode(".jpg", out[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, p["jpeg"]])
            out = np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1])
        return out


#: ``typical`` is what training and the in-domain splits see; ``strong`` is the camera-variation
#: test: every knob pushed past the training ranges (darker, noisier, blurrier, harsher JPEG).
CAMERAS = {
    "typical": Camera(),
    "strong": Camera(
        wb=0.2,
        gamma=(0.6, 1.6),
        contrast=(0.6, 1.25),
        brightness=28.0,
        noise=(4.0, 10.0),
        blur=(0.6, 1.4),
        jpeg_prob=1.0,
        jpeg_quality=(30, 60),
    ),
}


# --- composition ----------------------------------------------------------------------------------


def _crop(rng: np.random.Generator, bg: np.ndarray, h: int, w: int) -> np.ndarray:
    """A random window of ``bg`` at a random scale, resized to (h, w); random flip."""
    bh, bw = bg.shape[:2]
    scale = rng.uniform(0.35, 1.0) * min(bh / h, bw / w)
    ch, cw = max(8, int(h * scale)), max(8, int(w * scale))
    y, x = int(rng.integers(0, bh - ch + 1)), int(rng.integers(0, bw - cw + 1))
    out = cv2.resize(bg[y : y + ch, x : x + cw], (w, h), interpolation=cv2.INTER_AREA)
    return out[:, ::-1] if rng.random() < 0.5 else out


def _tint(rng: np.random.Generator) -> np.ndarray:
    """A product colour: mostly saturated, sometimes near-white or near-black items."""
    hsv = np.uint8([[[rng.integers(0, 180), rng.integers(40, 256), rng.integers(150, 256)]]])
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32) / 255.0


def _paste(
    canvas: np.ndarray, sprite: np.ndarray, centre, side: float, angle: float, tint: np.ndarray
) -> np.ndarray:
    """Alpha-composite a grey sprite (luminance = shading, alpha from it) into ``canvas``; its mask."""
    h, w = canvas.shape[:2]
    s = side / sprite.shape[0]
    m = cv2.getRotationMatrix2D((sprite.shape[1] / 2, sprite.shape[0] / 2), angle, s)
    m[:, 2] += np.array(centre) - np.array([sprite.shape[1] / 2, sprite.shape[0] / 2])
    lum = cv2.warpAffine(sprite.astype(np.float32) / 255.0, m, (w, h), flags=cv2.INTER_LINEAR)
    alpha = np.clip(lum * 4.0, 0, 1)  # Fashion-MNIST items sit on black: a soft silhouette
    colour = (0.25 + 0.75 * lum)[..., None] * tint * 255.0
    canvas[:] = (canvas * (1 - alpha[..., None]) + colour * alpha[..., None]).astype(np.uint8)
    return alpha > 0.5


# --- decoy patches --------------------------------------------------------------------------------

#: ``label``: the patch's class is the label (on ``decoy_prob`` of the scenes, else a random
#: class); ``random``: a random class on every scene.
DECOYS = ("label", "random")
#: One colour per class: ten hues 36 degrees apart, full saturation (RGB).
DECOY_COLOURS = np.array(
    [cv2.cvtColor(np.uint8([[[h, 255, 255]]]), cv2.COLOR_HSV2RGB)[0, 0] for h in range(0, 180, 18)],
    np.uint8,
)
_DECOY_SIDE = 0.09  # of the frame's side: 12 px of 128, 1.5 cells of the 16 x 16 attention map
_DECOY_STREAM = 0xDEC0  # the patch's own random stream: the rest of the scene does not change


def decoy_patch(
    image: np.ndarray,
    mask: np.ndarray,
    label: int,
    rng: np.random.Generator,
    mode: str,
    prob: float = 1.0,
    num_classes: int = len(FASHION_NAMES),
) -> tuple[int, np.ndarray]:
    """Draw a decoy patch into ``image`` (H, W, 3, in place) in a corner that item ``mask`` does not
    reach (the emptiest corner if every one is touched); returns the patch's class and its mask.

    The class is ``label`` with probability ``prob`` when ``mode`` is ``"label"``, else uniform over
    ``num_classes``; the colour is :data:`DECOY_COLOURS` of that class with a little sensor noise.
    """
    if mode not in DECOYS:
        raise ValueError(f"decoy must be one of {DECOYS}, got {mode!r}")
    h, w = mask.shape
    side = max(4, round(_DECOY_SIDE * min(h, w)))
    labelled = mode == "label" and rng.random() < prob
    cls = int(label) if labelled else int(rng.integers(num_classes))
    pad = max(2, side // 4)
    corners = [(y, x) for y in (pad, h - side - pad) for x in (pad, w - side - pad)]
    guard = max(1, side // 3)  # keep a gap between patch and item
    overlap = [
        int(mask[max(0, y - guard) : y + side + guard, max(0, x - guard) : x + side + guard].sum())
        for y, x in corners
    ]
    free = [k for k, o in enumerate(overlap) if o == 0]
    k = int(rng.choice(free)) if free else int(np.argmin(overlap))
    y, x = corners[k]
    noise = rng.normal(0.0, 3.0, (side, side, 3))
    image[y : y + side, x : x + side] = np.clip(DECOY_COLOURS[cls] + noise, 0, 255).astype(np.uint8)
    patch = np.zeros((h, w), bool)
    patch[y : y + side, x : x + side] = True
    return cls, patch


def add_decoys(
    images: np.ndarray,
    labels: np.ndarray,
    masks: np.ndarray,
    seed: int,
    mode: str,
    prob: float = 1.0,
    start: int = 0,
    num_classes: int = len(FASHION_NAMES),
) -> tuple[np.ndarray, np.ndarray]:
    """Copies of frames ``start ..`` of a :class:`PhotoScenes` of ``seed`` with the decoy patches
    that ``PhotoScenes(..., decoy=mode, decoy_prob=prob)`` draws; returns (images, patch classes)."""
    out = np.array(images, copy=True)
    classes = np.empty(len(labels), np.int64)
    for i in range(len(labels)):
        rng = np.random.default_rng([seed, start + i, _DECOY_STREAM])
        classes[i], _ = decoy_patch(
            out[i], np.asarray(masks[i]), int(labels[i]), rng, mode, prob, num_classes
        )
    return out, classes


class PhotoScenes:
    """Labelled photographic scenes, deterministic by ``seed`` and index.

    ``objects``: ``"fashion"`` (items of ``item_split``) or ``"shapes"``; ``background``: a role
    of :func:`backgrounds`; ``camera``: a key of :data:`CAMERAS`; ``aspect``: width / height of
    the camera frame (4/3 renders a wider frame, which :func:`edge_runtime.framing.fit` brings to
    the square input); ``aspect_mix``: the share of frames drawn at 4:3 when ``aspect`` is 1;
    ``texture_mix``: the share of frames drawn over the training-only :data:`TEXTURES` instead;
    ``decoy`` / ``decoy_prob``: a decoy patch (:func:`decoy_patch`) on the finished frame.
    """

    def __init__(
        self,
        objects: str,
        item_split: str,
        background: str,
        *,
        size: int = 128,
        seed: int = 0,
        camera: str = "typical",
        aspect: float = 1.0,
        aspect_mix: float = 0.0,
        resize: str = "letterbox",
        texture_mix: float = 0.0,
        decoy: str | None = None,
        decoy_prob: float = 1.0,
    ) -> None:
        if objects not in ("fashion", "shapes"):
            raise ValueError(f"objects must be 'fashion' or 'shapes', got {objects!r}")
        if decoy is not None and decoy not in DECOYS:
            raise ValueError(f"decoy must be None or one of {DECOYS}, got {decoy!r}")
        if not 0.0 <= decoy_prob <= 1.0:
            raise ValueError(f"decoy_prob must be in [0, 1], got {decoy_prob}")
        self.decoy = decoy
        self.decoy_prob = decoy_prob
        self.objects = objects
        self.size = size
        self.seed = seed
        self.camera = CAMERAS[camera]
        self.aspect = aspect
        self.aspect_mix = aspect_mix
        self.resize = resize
        self.bgs = backgrounds(background)
        self.texture_mix = texture_mix
        self.textures = backgrounds("textures") if texture_mix > 0 else ()
        if objects == "fashion":
            self.items, self.item_labels = fashion_items(item_split)
            self.class_names = FASHION_NAMES
        else:
            self.items = self.item_labels = None
            self.class_names = SHAPE_NAMES

    def _sprite(self, rng: np.random.Generator, cls: int | None = None) -> tuple[np.ndarray, int]:
        if self.items is None:
            cls = int(rng.integers(len(SHAPE_NAMES))) if cls is None else cls
            return _shape_sprite(rng, cls, 56), cls
        k = int(rng.integers(len(self.items)))
        sprite = self.items[k]
        return (sprite[:, ::-1] if rng.random() < 0.5 else sprite), int(self.item_labels[k])

    def sample(self, index: int) -> Scene:
        from edge_runtime.framing import fit

        rng = np.random.default_rng([self.seed, index])
        wide = self.aspect != 1.0 or rng.random() < self.aspect_mix
        h = self.size
        w = round(h * (self.aspect if self.aspect != 1.0 else 4 / 3)) if wide else h
        bgs = self.bgs
        if self.texture_mix > 0 and rng.random() < self.texture_mix:  # no draw otherwise: the
            bgs = self.textures  # validation and test scenes stay what they were
        img = _crop(rng, bgs[int(rng.integers(len(bgs)))], h, w)
        # Distractors: smaller items behind the object.
        for _ in range(int(rng.integers(0, 4))):
            spr, _ = self._sprite(rng)
            _paste(
                img,
                spr,
                rng.uniform(0, [w, h]),
                rng.uniform(0.15, 0.3) * h,
                rng.uniform(-180, 180),
                _tint(rng),
            )
        sprite, label = self._sprite(rng)
        side = rng.uniform(0.45, 0.8) * h
        margin = side * 0.35
        centre = (rng.uniform(margin, w - margin), rng.uniform(margin, h - margin))
        mask = _paste(img, sprite, centre, side, rng.uniform(-20, 20), _tint(rng))
        if rng.random() < 0.3:  # partial occlusion by a small item in front
            spr, _ = self._sprite(rng)
            off = rng.normal(0, side * 0.35, 2)
            occ = _paste(
                img, spr, np.add(centre, off), rng.uniform(0.15, 0.3) * h, rng.uniform(-180, 180), _tint(rng)
            )
            mask &= ~occ
        img = self.camera.apply(img, self.camera.draw(rng), rng)
        if wide:
            img, mask = fit(img, self.size, self.resize, mask=mask)
        if self.decoy is not None:
            decoy_rng = np.random.default_rng([self.seed, index, _DECOY_STREAM])
            decoy_patch(img, mask, label, decoy_rng, self.decoy, self.decoy_prob, len(self.class_names))
        return Scene(img, label, mask)

    def batch(
        self, start: int, count: int, progress: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Scenes ``start .. start+count-1``: images (N,H,W,3), labels (N,), masks (N,H,W)."""
        s = self.size
        images = np.empty((count, s, s, 3), np.uint8)
        labels = np.empty(count, np.int64)
        masks = np.empty((count, s, s), bool)
        it = range(count)
        if progress:
            from tqdm import tqdm  # offline side only; the runtime never asks for progress

            it = tqdm(it, desc="scenes", unit="scene", mininterval=1.0)
        for i in it:
            sc = self.sample(start + i)
            images[i], labels[i], masks[i] = sc.image, sc.label, sc.mask
        return images, labels, masks


class PhotoStream:
    """An endless camera video: one item at a time moves over a panning background photograph.

    The item changes every ``segment`` frames; within a segment the camera's white balance,
    gamma and so on stay fixed (one camera, one scene) and only the sensor noise changes.
    """

    def __init__(
        self,
        size: int = 128,
        seed: int = 0,
        *,
        segment: int = 60,
        speed: float = 1.2,
        item_split: str = "demo",
        background: str = "demo",
        item_range: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        if segment < 1:
            raise ValueError(f"segment must be >= 1 frame, got {segment}")
        self.size = size
        self.seed = seed
        self.segment = segment
        self.speed = speed
        self.items, self.labels = fashion_items(item_split)
        lo, hi = (int(f * len(self.items)) for f in item_range)
        self.items, self.labels = self.items[lo:hi], self.labels[lo:hi]
        self.bgs = backgrounds(background)
        self.class_names = FASHION_NAMES
        self.num_classes = len(FASHION_NAMES)
        self._cache: tuple[int, dict] | None = None

    def _segment(self, k: int) -> dict:
        if self._cache is not None and self._cache[0] == k:
            return self._cache[1]
        rng = np.random.default_rng([self.seed, 7919, k])
        s = self.size
        bg = _crop(rng, self.bgs[int(rng.integers(len(self.bgs)))], 2 * s, 2 * s)
        j = int(rng.integers(len(self.items)))
        side = rng.uniform(0.5, 0.75) * s
        seg = {
            "bg": bg,
            "sprite": self.items[j],
            "label": int(self.labels[j]),
            "side": side,
            "start": rng.uniform(side * 0.4, s - side * 0.4, 2),
            "vel": rng.normal(0, 1, 2) / np.sqrt(2) * self.speed,
            "pan": rng.normal(0, 0.4, 2),
            "angle": rng.uniform(-15, 15),
            "spin": rng.normal(0, 0.15),
            "tint": _tint(rng),
            "camera": CAMERAS["typical"].draw(rng) | {"jpeg": 0},
        }
        self._cache = (k, seg)
        return seg

    def frame(self, t: int) -> Scene:
        """Frame number ``t`` (0-based)."""
        k, i = divmod(t, self.segment)
        seg = self._segment(k)
        s, half = self.size, seg["side"] * 0.4
        span = s - 2 * half
        pos = seg["start"] - half + seg["vel"] * i
        pos = np.abs((pos + 2 * span) % (2 * span) - span) + half
        off = np.clip(s / 2 + seg["pan"] * i, 0, s).astype(int)
        img = np.ascontiguousarray(seg["bg"][off[1] : off[1] + s, off[0] : off[0] + s])
        mask = _paste(img, seg["sprite"], pos, seg["side"], seg["angle"] + seg["spin"] * i, seg["tint"])
        rng = np.random.default_rng([self.seed, k, i])
        img = Camera.apply(img, seg["camera"], rng)
        return Scene(img, seg["label"], mask)

    def __iter__(self):
        t = 0
        while True:
            yield self.frame(t)
            t += 1
