"""A procedural facial-expression dataset, written in the Kaggle RAF-DB layout.

Each of the seven RAF-DB classes is a distinct combination of brows, eyes and mouth:

=========  ======================  ==============  ==========================
class      brows                   eyes            mouth
=========  ======================  ==============  ==========================
Surprise   raised, arched          wide            open "O"
Fear       raised, inner ends up   wide            wide, stretched, open
Disgust    lowered                 squinting       asymmetric sneer
Happiness  neutral                 slightly shut   big smile
Sadness    inner ends up  /\\       normal          frown
Anger      angled down  \\/         narrowed        tight, flat, pressed
Neutral    flat                    normal          short flat line
=========  ======================  ==============  ==========================

Everything else varies: face size and aspect, skin, hair and background colours, in-plane
rotation (+-15 degrees), scale (+-10 %), translation, small per-feature jitter, blur, noise,
brightness, contrast and a horizontal flip.  The cues are clear, so a small CNN learns the task
in a few epochs; that makes it a quick end-to-end check of training and export without a real
dataset.

:func:`generate` writes ``DATASET/{train,test}/{1..7}/*.jpg`` plus ``train_labels.csv`` and
``test_labels.csv`` (the RAF-DB label id is the folder number), so :func:`load_index` reads it
as ``rafdb-kaggle``.  The same seed gives byte-identical files.

Torch-free: numpy and OpenCV only.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np

from corese_edge.atomic import write_json, write_text
from corese_edge.errors import UserError

SCHEMA = "corese-edge/synthetic/1"
#: Bump when the pictures change, so an old cached set is regenerated.
GENERATOR_VERSION = 1
MARKER = "synthetic.json"
_SPLIT_IDS = {"train": 0, "test": 1}
_OURS = {"DATASET", "train_labels.csv", "test_labels.csv", MARKER, ".partial"}

_SHIFT = 4  # cv2 drawing with 4 fractional bits (sub-pixel coordinates)
_ONE = 1 << _SHIFT
_AA = cv2.LINE_AA

# Per-class feature recipe (units: brow offsets in face half-heights, eye openness = height/width).
# brow: (gap above eye, inner-end lift, outer-end lift, arch, inner-end pull toward centre)
_RECIPES = {
    0: dict(brow=(0.30, 0.00, 0.00, 0.07, 0.00), eye=0.95, mouth="o"),          # Surprise
    1: dict(brow=(0.27, 0.08, -0.04, 0.00, 0.08), eye=0.95, mouth="stretch"),   # Fear
    2: dict(brow=(0.10, -0.03, 0.01, 0.01, 0.06), eye=0.14, mouth="sneer"),     # Disgust
    3: dict(brow=(0.18, 0.00, 0.00, 0.03, 0.00), eye=0.32, mouth="smile"),      # Happiness
    4: dict(brow=(0.19, 0.10, -0.05, 0.00, 0.03), eye=0.50, mouth="frown"),     # Sadness
    5: dict(brow=(0.13, -0.10, 0.05, 0.00, 0.08), eye=0.28, mouth="tight"),     # Anger
    6: dict(brow=(0.17, 0.00, 0.00, 0.01, 0.00), eye=0.50, mouth="flat"),       # Neutral
}

_SKIN = np.array([
    [241, 206, 180], [224, 180, 150], [198, 150, 116], [170, 120, 88],
    [140, 96, 66], [105, 72, 50], [232, 196, 160], [186, 140, 110],
], dtype=np.float64)
_HAIR = np.array([
    [30, 22, 18], [60, 40, 25], [110, 75, 40], [170, 130, 80], [200, 170, 120],
    [90, 90, 90], [140, 60, 30], [20, 20, 25],
], dtype=np.float64)
_IRIS = np.array([[60, 40, 25], [40, 80, 140], [60, 110, 70], [25, 20, 20]], dtype=np.float64)


def _pt(x: float, y: float) -> tuple[int, int]:
    return int(round(x * _ONE)), int(round(y * _ONE))


def _col(c: np.ndarray | tuple) -> tuple[int, int, int]:
    a = np.clip(np.asarray(c, dtype=np.float64), 0, 255)
    return int(round(a[0])), int(round(a[1])), int(round(a[2]))


def _ellipse(img, cx, cy, ax, ay, color, thickness=-1, angle=0.0, start=0.0, end=360.0):
    cv2.ellipse(img, _pt(cx, cy), _pt(max(ax, 0.5), max(ay, 0.5)), float(angle), float(start),
                float(end), _col(color), int(thickness), _AA, _SHIFT)


def _bezier(p0, p1, p2, n: int = 24) -> np.ndarray:
    t = np.linspace(0.0, 1.0, n)[:, None]
    p0, p1, p2 = (np.asarray(p, dtype=np.float64) for p in (p0, p1, p2))
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2


def _poly(img, pts: np.ndarray, color, thickness: float, closed: bool = False) -> None:
    arr = np.round(np.asarray(pts) * _ONE).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(img, [arr], closed, _col(color), max(1, int(round(thickness))), _AA, _SHIFT)


def _fill(img, pts: np.ndarray, color) -> None:
    arr = np.round(np.asarray(pts) * _ONE).astype(np.int32).reshape(-1, 1, 2)
    cv2.fillPoly(img, [arr], _col(color), _AA, _SHIFT)


def _background(rng: np.random.Generator, s: int) -> np.ndarray:
    c0 = rng.uniform(20, 235, size=3)
    c1 = np.clip(c0 + rng.normal(0, 40, size=3), 0, 255)
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:s, 0:s] / max(s - 1, 1)
    t = (np.cos(angle) * (xx - 0.5) + np.sin(angle) * (yy - 0.5)) + 0.5
    img = c0[None, None, :] * (1 - t[..., None]) + c1[None, None, :] * t[..., None]
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(0, 3))):  # low-contrast clutter
        col = np.clip(c0 + rng.normal(0, 20, size=3), 0, 255)
        _ellipse(img, rng.uniform(0, s), rng.uniform(0, s), rng.uniform(0.05, 0.25) * s,
                 rng.uniform(0.05, 0.25) * s, col, angle=rng.uniform(0, 180))
    return img


def render_face(label: int, rng: np.random.Generator, size: int = 100) -> np.ndarray:
    """A ``size`` x ``size`` RGB uint8 face showing RAF-DB class index ``label`` (0..6)."""
    if label not in _RECIPES:
        raise ValueError(f"label must be a RAF-DB class index 0..6, got {label}")
    if size < 16:
        raise ValueError(f"size must be at least 16, got {size}")
    recipe = _RECIPES[label]
    s = 2 * size  # draw at twice the size, then downsample (smoother edges)
    img = _background(rng, s)

    def j(scale: float) -> float:  # small intra-class jitter
        return float(rng.normal(0.0, scale))

    cx, cy = s * (0.5 + j(0.01)), s * (0.5 + j(0.01))
    ax = s * rng.uniform(0.30, 0.35)
    ay = ax * rng.uniform(1.12, 1.30)
    skin = _SKIN[rng.integers(len(_SKIN))] + rng.normal(0, 8, size=3)
    hair = _HAIR[rng.integers(len(_HAIR))] + rng.normal(0, 8, size=3)
    dark = np.minimum(hair, 60) * rng.uniform(0.3, 0.8)  # brows: dark, hair-tinted
    shade = skin * 0.78

    # neck, ears, hair, face
    neck_w = ax * rng.uniform(0.45, 0.6)
    _fill(img, np.array([[cx - neck_w, cy + 0.6 * ay], [cx + neck_w, cy + 0.6 * ay],
                         [cx + neck_w * 1.3, s * 1.2], [cx - neck_w * 1.3, s * 1.2]]), shade)
    if rng.random() < 0.75:
        _ellipse(img, cx, cy - 0.18 * ay, ax * rng.uniform(1.05, 1.2), ay * rng.uniform(0.9, 1.0),
                 hair)
    for side in (-1, 1):
        _ellipse(img, cx + side * ax * 0.97, cy - 0.05 * ay, ax * 0.14, ay * 0.2, shade)
    _ellipse(img, cx, cy, ax, ay, skin)
    if rng.random() < 0.6:  # fringe
        _ellipse(img, cx, cy - 0.82 * ay, ax * rng.uniform(0.75, 0.95), ay * rng.uniform(0.18, 0.3),
                 hair, start=180, end=360)

    line_w = max(1.0, ax * 0.07)
    eye_y = cy - ay * (0.12 + j(0.015))
    eye_dx = ax * (0.40 + j(0.02))
    ew = ax * (0.22 + j(0.012))

    # brows
    gap, inner, outer, arch, pull = recipe["brow"]
    brow_w = line_w * rng.uniform(1.4, 2.0)
    for side in (-1, 1):  # -1: image left
        ex = cx + side * eye_dx
        base = eye_y - ay * (gap + j(0.015))
        p_in = (ex - side * ew * (1.0 - pull * 4 + j(0.05)), base - ay * (inner + j(0.01)))
        p_out = (ex + side * ew * (1.2 + j(0.05)), base - ay * (outer + j(0.01)))
        mid = ((p_in[0] + p_out[0]) / 2, (p_in[1] + p_out[1]) / 2 - ay * (arch + j(0.008)))
        _poly(img, _bezier(p_in, mid, p_out), dark, brow_w)

    # eyes
    openness = recipe["eye"] * rng.uniform(0.85, 1.15)
    iris = _IRIS[rng.integers(len(_IRIS))]
    for side in (-1, 1):
        ex = cx + side * eye_dx
        eh = ew * openness
        if openness < 0.2:  # squint: a slit
            _poly(img, _bezier((ex - ew, eye_y), (ex, eye_y - eh * 1.5), (ex + ew, eye_y)),
                  (35, 25, 25), line_w * 1.3)
        else:
            _ellipse(img, ex, eye_y, ew, eh, (245, 245, 240))
            r = min(eh, ew * 0.55) * 0.95
            _ellipse(img, ex, eye_y, r, r, iris)
            _ellipse(img, ex, eye_y, r * 0.45, r * 0.45, (10, 10, 10))
            _ellipse(img, ex, eye_y, ew, eh, (40, 30, 30), thickness=max(1, round(line_w * 0.7)))
        if label == 3:  # happiness: cheeks push the lower lids up
            _poly(img, _bezier((ex - ew, eye_y + eh + line_w), (ex, eye_y + eh * 0.2),
                               (ex + ew, eye_y + eh + line_w)), shade * 0.9, line_w)

    # nose
    nose_y = cy + ay * (0.2 + j(0.02))
    _poly(img, np.array([[cx + j(1.0), eye_y + 0.1 * ay], [cx - ax * 0.08, nose_y],
                         [cx + ax * 0.05, nose_y + ay * 0.03]]), shade * 0.85, line_w * 0.9)
    if label == 2:  # disgust: wrinkled nose
        for k in (-1, 1):
            _poly(img, np.array([[cx + k * ax * 0.05, eye_y + 0.12 * ay],
                                 [cx + k * ax * 0.14, eye_y + 0.2 * ay]]), shade * 0.7, line_w)

    # mouth
    my = cy + ay * (0.50 + j(0.02))
    lips = np.array([skin[0] * 0.85, skin[1] * 0.5, skin[2] * 0.5]) + rng.normal(0, 6, size=3)
    inside = (60, 18, 24)
    teeth = (240, 236, 225)
    kind = recipe["mouth"]
    if kind == "o":
        mw, mh = ax * rng.uniform(0.18, 0.24), ay * rng.uniform(0.2, 0.27)
        _ellipse(img, cx, my, mw + line_w, mh + line_w, lips)
        _ellipse(img, cx, my, mw, mh, inside)
    elif kind == "stretch":
        mw, mh = ax * rng.uniform(0.45, 0.55), ay * rng.uniform(0.12, 0.16)
        pts = np.array([[cx - mw, my + mh * 0.3], [cx - mw * 0.6, my - mh],
                        [cx + mw * 0.6, my - mh], [cx + mw, my + mh * 0.3],
                        [cx + mw * 0.6, my + mh], [cx - mw * 0.6, my + mh]])
        _fill(img, pts, lips)
        _fill(img, (pts - [cx, my]) * 0.8 + [cx, my], inside)
        _fill(img, np.array([[cx - mw * 0.5, my - mh * 0.75], [cx + mw * 0.5, my - mh * 0.75],
                             [cx + mw * 0.45, my - mh * 0.3], [cx - mw * 0.45, my - mh * 0.3]]),
              teeth)
    elif kind == "sneer":
        mw = ax * rng.uniform(0.25, 0.32)
        up = ay * rng.uniform(0.09, 0.14)
        left, right = (cx - mw, my + ay * 0.03), (cx + mw, my - up)
        upper = np.array([left, (cx - mw * 0.2, my - up * 0.3), (cx + mw * 0.45, my - up * 1.3),
                          right])
        lower = _bezier(right, (cx + mw * 0.2, my + up * 0.3), left)
        _fill(img, np.concatenate([upper, lower]), inside)
        _poly(img, upper, lips, line_w * 1.4)
        _poly(img, lower, lips, line_w * 1.2)
    elif kind == "smile":
        mw = ax * rng.uniform(0.42, 0.52)
        depth = ay * rng.uniform(0.2, 0.28)
        lift = ay * rng.uniform(0.05, 0.1)
        curve = _bezier((cx - mw, my - lift), (cx, my + depth * 2 - lift), (cx + mw, my - lift))
        if rng.random() < 0.5:  # open smile with teeth
            top = _bezier((cx - mw, my - lift), (cx, my + depth * 0.3 - lift),
                          (cx + mw, my - lift))  # same x(t) as ``curve``
            _fill(img, np.concatenate([curve, top[::-1]]), inside)
            low = top.copy()
            low[:, 1] = np.minimum(top[:, 1] + depth * 0.45, curve[:, 1])
            _fill(img, np.concatenate([top, low[::-1]]), teeth)
            _poly(img, np.concatenate([curve, top[::-1]]), lips, line_w, closed=True)
        else:
            _poly(img, curve, lips * 0.6, line_w * 1.8)
    elif kind == "frown":
        mw = ax * rng.uniform(0.26, 0.34)
        depth = ay * rng.uniform(0.1, 0.15)
        _poly(img, _bezier((cx - mw, my + depth * 0.7), (cx, my - depth * 1.3),
                           (cx + mw, my + depth * 0.7)), lips * 0.6, line_w * 1.8)
    elif kind == "tight":
        mw = ax * rng.uniform(0.2, 0.26)
        _poly(img, np.array([[cx - mw, my + ay * 0.02], [cx, my], [cx + mw, my + ay * 0.02]]),
              lips * 0.45, line_w * 2.4)
        for k in (-1, 1):  # tension lines at the corners
            _poly(img, np.array([[cx + k * mw * 1.1, my - ay * 0.03],
                                 [cx + k * mw * 1.2, my + ay * 0.06]]), shade * 0.8, line_w * 0.7)
    else:  # flat
        mw = ax * rng.uniform(0.22, 0.3)
        _poly(img, np.array([[cx - mw, my], [cx + mw, my + j(0.5)]]), lips * 0.6, line_w * 1.3)

    # nuisance: rotation, scale, translation, flip
    m = cv2.getRotationMatrix2D((s / 2, s / 2), float(rng.uniform(-15, 15)),
                                float(rng.uniform(0.9, 1.1)))
    m[:, 2] += rng.uniform(-0.06, 0.06, size=2) * s
    img = cv2.warpAffine(img, m, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    if rng.random() < 0.5:
        img = img[:, ::-1]
    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)

    # nuisance: blur, brightness/contrast, noise
    sigma = rng.uniform(0.0, 0.9)
    if sigma > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    out = img.astype(np.float64)
    contrast, brightness = rng.uniform(0.7, 1.3), rng.uniform(-30, 30)
    out = (out - 128.0) * contrast + 128.0 + brightness
    out += rng.normal(0.0, rng.uniform(0.0, 8.0), size=out.shape)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- writing a set


def _params(train_per_class: int, test_per_class: int, size: int, seed: int) -> dict:
    return {
        "schema": SCHEMA,
        "generator_version": GENERATOR_VERSION,
        "layout": "rafdb-kaggle",
        "train_per_class": int(train_per_class),
        "test_per_class": int(test_per_class),
        "size": int(size),
        "seed": int(seed),
    }


def _is_complete(root: Path, params: dict) -> bool:
    try:
        existing = json.loads((root / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if existing != params:
        return False
    for split in _SPLIT_IDS:
        want = params[f"{split}_per_class"]
        for label_id in range(1, 8):
            folder = root / "DATASET" / split / str(label_id)
            if not folder.is_dir():
                return False
            if sum(1 for p in folder.iterdir() if p.suffix == ".jpg") != want:
                return False
    return True


def generate(
    out_dir: str | os.PathLike,
    train_per_class: int = 200,
    test_per_class: int = 50,
    size: int = 100,
    seed: int = 0,
    progress: bool = False,
) -> Path:
    """Write the synthetic set to ``out_dir`` (Kaggle RAF-DB layout) and return ``out_dir``.

    The images are written under ``out_dir/.partial`` and moved into place when all are done;
    ``synthetic.json`` (the parameters) is written last.  If ``out_dir`` already holds a complete
    set with the same parameters it is reused.  ``out_dir`` must be empty, missing, or hold only
    a previous synthetic set.
    """
    for name, value, low in (("train_per_class", train_per_class, 1),
                             ("test_per_class", test_per_class, 1), ("size", size, 16)):
        if int(value) < low:
            raise UserError(f"synthetic dataset: {name} must be at least {low}, got {value}")
    root = Path(out_dir).expanduser()
    params = _params(train_per_class, test_per_class, size, seed)
    if _is_complete(root, params):
        return root
    if root.exists() and not root.is_dir():
        raise UserError(f"cannot write the synthetic dataset to {root}: it is a file")
    root.mkdir(parents=True, exist_ok=True)
    foreign = sorted(p.name for p in root.iterdir() if p.name not in _OURS)
    if foreign:
        raise UserError(
            f"refusing to write the synthetic dataset into {root}: it holds other files "
            f"({', '.join(foreign[:5])}); choose an empty or new folder"
        )
    partial = root / ".partial"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir()

    jobs = [(split, label, i) for split in _SPLIT_IDS for label in range(7)
            for i in range(params[f"{split}_per_class"])]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc="synthetic faces", unit="img")
    rows: dict[str, list[str]] = {split: ["image,label"] for split in _SPLIT_IDS}
    for split, label, i in jobs:
        per_class = params[f"{split}_per_class"]
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, _SPLIT_IDS[split], label, i])
        rgb = render_face(label, rng, size)
        name = f"{split}_{label * per_class + i + 1:05d}_aligned.jpg"
        folder = partial / "DATASET" / split / str(label + 1)
        folder.mkdir(parents=True, exist_ok=True)
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, 95])
        if not ok:  # pragma: no cover
            raise RuntimeError(f"OpenCV could not encode {name}")
        buf.tofile(folder / name)
        rows[split].append(f"{name},{label + 1}")
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    for split in _SPLIT_IDS:
        write_text(partial / f"{split}_labels.csv", "\n".join(rows[split]) + "\n")

    # Move into place: drop the previous set's marker first, then its data, then install the
    # new data; the marker goes last, so an interrupted run never looks complete.
    (root / MARKER).unlink(missing_ok=True)
    for name in ("DATASET", "train_labels.csv", "test_labels.csv"):
        old = root / name
        if old.is_dir():
            shutil.rmtree(old)
        elif old.exists():
            old.unlink()
        os.replace(partial / name, old)
    shutil.rmtree(partial)
    write_json(root / MARKER, params)
    return root
