"""Builders that write small datasets in each real layout (plain functions, not fixtures).

Image content comes from :func:`corese_edge.data.synthetic.render_face`, so every file is a
real decodable image.  Each builder returns the dataset root it wrote.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np

from corese_edge.data.synthetic import render_face

AFFECTNET_FOLDERS = ("anger", "contempt", "disgust", "fear", "happy", "neutral", "sad", "surprise")
IMAGE_SIZE = 24


def write_image(path: Path, label: int = 0, seed: int = 0, size: int = IMAGE_SIZE) -> Path:
    """Write a synthetic face (RAF-DB class ``label % 7``) to ``path`` (format from suffix)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = render_face(int(label) % 7, np.random.default_rng([seed, int(label)]), size=max(size, 16))
    ok, buf = cv2.imencode(path.suffix or ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok, path
    path.write_bytes(buf.tobytes())
    return path


def make_rafdb_basic(
    root: Path,
    per_class: int = 2,
    entries: Sequence[tuple[str, int]] | None = None,
    three_columns: bool = False,
    extra_lines: Iterable[str] = (),
) -> Path:
    """``root/basic/EmoLabel/list_patition_label.txt`` + ``root/basic/Image/aligned``.

    ``entries`` is ``[(file name, label id 1..7), ...]``; by default ``per_class`` train and test
    images for every label id.  ``extra_lines`` are appended verbatim (no image is written).
    """
    root = Path(root)
    basic = root / "basic"
    if entries is None:
        entries = []
        n = 0
        for split in ("train", "test"):
            for label_id in range(1, 8):
                for _ in range(per_class):
                    n += 1
                    entries.append((f"{split}_{n:05d}.jpg", label_id))
    lines = []
    for i, (name, label_id) in enumerate(entries):
        write_image(basic / "Image" / "aligned" / f"{Path(name).stem}_aligned.jpg",
                    label_id - 1, seed=i)
        lines.append(f"{name} {label_id}" + (" 0" if three_columns else ""))
    lines.extend(extra_lines)
    label_file = basic / "EmoLabel" / "list_patition_label.txt"
    label_file.parent.mkdir(parents=True, exist_ok=True)
    label_file.write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    return root


def make_rafdb_kaggle(
    root: Path,
    per_class: int = 2,
    class_ids: Iterable[int] = range(1, 8),
    with_csv: bool = True,
    splits: Sequence[str] = ("train", "test"),
) -> Path:
    """``root/DATASET/{train,test}/{1..7}/*.jpg`` with ``root/{split}_labels.csv``."""
    root = Path(root)
    class_ids = list(class_ids)
    n = 0
    for split in splits:
        rows = ["image,label"]
        for label_id in class_ids:
            folder = root / "DATASET" / split / str(label_id)
            folder.mkdir(parents=True, exist_ok=True)
            for _ in range(per_class):
                n += 1
                name = f"{split}_{n:05d}_aligned.jpg"
                write_image(folder / name, label_id - 1, seed=n)
                rows.append(f"{name},{label_id}")
        if with_csv:
            (root / f"{split}_labels.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


def make_affectnet_kaggle(
    root: Path,
    per_class: int = 2,
    folders: Sequence[str] = AFFECTNET_FOLDERS,
    splits: Sequence[str] = ("Train", "Test"),
) -> Path:
    """``root/Train/<class>/`` and ``root/Test/<class>/``; folder spelling is kept as given."""
    root = Path(root)
    n = 0
    for split in splits:
        for k, folder in enumerate(folders):
            for _ in range(per_class):
                n += 1
                write_image(root / split / folder / f"img_{n:04d}.png", k, seed=n)
    return root


def make_affectnet_official(
    root: Path,
    rows: dict[str, Sequence[tuple[str, int]]] | None = None,
    nested: bool = False,
    with_contempt: bool = True,
) -> Path:
    """``Manually_Annotated_file_lists/{training,validation}.csv`` + the images they list.

    ``rows`` maps ``"training"``/``"validation"`` to ``[(subDirectory_filePath, expression)]``.
    By default each split has one image per expression id 0..10 (id 7 only if
    ``with_contempt``), in subfolders named like the real set.
    """
    root = Path(root)
    image_dir = root / ("Manually_Annotated/Manually_Annotated_Images" if nested
                        else "Manually_Annotated_Images")
    if rows is None:
        ids = [i for i in range(11) if with_contempt or i != 7]
        rows = {
            "training": [(f"{100 + i}/train_{i:02d}.jpg", i) for i in ids],
            "validation": [(f"{200 + i}/val_{i:02d}.jpg", i) for i in ids],
        }
    lists = root / "Manually_Annotated_file_lists"
    lists.mkdir(parents=True, exist_ok=True)
    header = ("subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,"
              "expression,valence,arousal")
    for split, entries in rows.items():
        lines = [header]
        for k, (rel, expr) in enumerate(entries):
            write_image(image_dir / rel, expr % 7, seed=k)
            lines.append(f"{rel},10,10,80,80,1.0;2.0;3.0;4.0,{expr},0.5,-0.25")
        (lists / f"{split}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def make_folder(
    root: Path,
    classes: Sequence[str] = ("cat", "dog"),
    per_class: int = 2,
    splits: Sequence[str] = ("train", "test"),
    test_classes: Sequence[str] | None = None,
) -> Path:
    """A generic ``root/{train,test}/<class>/*.jpg`` tree (classes created in the given order)."""
    root = Path(root)
    n = 0
    for split in splits:
        names = test_classes if (split.lower() == "test" and test_classes is not None) else classes
        for k, name in enumerate(names):
            for _ in range(per_class):
                n += 1
                write_image(root / split / name / f"{name}_{n:03d}.jpg", k, seed=n)
    return root
