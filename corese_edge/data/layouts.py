"""Dataset layouts: find the images and labels of a facial-expression dataset on disk.

Five layouts are understood (docs/ARCHITECTURE.md, "Dataset layouts"):

``rafdb-basic``
    The RAF-DB basic release: ``basic/EmoLabel/list_patition_label.txt`` and
    ``basic/Image/aligned/<stem>_aligned.jpg``; the split is the file-name prefix.
``rafdb-kaggle``
    RAF-DB as published on Kaggle: ``DATASET/{train,test}/{1..7}/`` (the folder number is the
    RAF-DB label id), with optional ``train_labels.csv`` / ``test_labels.csv`` cross-checked.
``affectnet-official``
    The official AffectNet release: ``Manually_Annotated_file_lists/{training,validation}.csv``
    and ``Manually_Annotated_Images/``.  ``training.csv`` is the train split and
    ``validation.csv`` the test split: AffectNet's test set was never released, so its
    validation set is what papers report as the test accuracy.  Ids 8-10 are dropped.
``affectnet-kaggle``
    AffectNet as published on Kaggle: ``Train/`` and ``Test/`` with the eight class folders
    (case-insensitive).
``folder``
    Any ``train/<class>/`` and ``test/<class>/`` tree; the classes are the sorted folder names.

Class names and label indices are fixed by the dataset, never by the order in which the file
system lists folders.  Every problem the user can fix raises :class:`DataError` naming the path.

Torch-free: numpy and OpenCV only.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from corese_edge.images import BadImageError, is_image_file, read_rgb
from corese_edge.errors import DataError

__all__ = [
    "AFFECTNET_KAGGLE_CLASSES",
    "AFFECTNET_OFFICIAL_CLASSES",
    "DatasetIndex",
    "LAYOUTS",
    "RAFDB_CLASSES",
    "Sample",
    "describe",
    "detect_layout",
    "find_bad_images",
    "load_index",
    "stratified_split",
]

LAYOUTS = ("rafdb-basic", "rafdb-kaggle", "affectnet-kaggle", "affectnet-official", "folder")

#: RAF-DB classes in index order; index ``i`` is RAF-DB label id ``i + 1``.
RAFDB_CLASSES = ("Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral")
#: AffectNet (Kaggle) class folders in index order.
AFFECTNET_KAGGLE_CLASSES = (
    "anger", "contempt", "disgust", "fear", "happy", "neutral", "sad", "surprise",
)
#: Official AffectNet expression ids 0..7 in index order (ids 8, 9, 10 are not expressions).
AFFECTNET_OFFICIAL_CLASSES = (
    "Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt",
)

SPLITS = ("train", "test")

_RAFDB_LABEL_FILE = Path("EmoLabel") / "list_patition_label.txt"
_IGNORED_DIRS = {"__macosx"}

_EXPECTED = {
    "rafdb-basic": "basic/EmoLabel/list_patition_label.txt and basic/Image/aligned/",
    "rafdb-kaggle": "DATASET/train/{1..7}/ and DATASET/test/{1..7}/",
    "affectnet-official": "Manually_Annotated_file_lists/{training,validation}.csv "
    "and Manually_Annotated_Images/",
    "affectnet-kaggle": "Train/<class>/ and Test/<class>/ with class folders "
    + ",".join(AFFECTNET_KAGGLE_CLASSES),
    "folder": "train/<class>/ and test/<class>/",
}


class _FrozenMapping(Mapping[str, tuple]):
    """A read-only, picklable mapping (``MappingProxyType`` cannot be pickled)."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, tuple]) -> None:
        self._data = dict(data)

    def __getitem__(self, key: str) -> tuple:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return repr(self._data)

    def __getstate__(self) -> dict:
        return self._data

    def __setstate__(self, state: dict) -> None:
        self._data = state


@dataclass(frozen=True)
class Sample:
    """One labelled image: ``label`` is an index into ``DatasetIndex.class_names``."""

    path: Path
    label: int


@dataclass(frozen=True)
class DatasetIndex:
    """Every labelled image of a dataset, by split (always ``train`` and ``test``)."""

    root: Path
    layout: str
    class_names: tuple[str, ...]
    splits: Mapping[str, tuple[Sample, ...]]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def split(self, name: str) -> tuple[Sample, ...]:
        try:
            return self.splits[name]
        except KeyError:
            raise DataError(
                f"dataset {self.root} has no split {name!r}; available splits: "
                f"{', '.join(self.splits) or 'none'}"
            ) from None

    def class_counts(self, name: str) -> list[int]:
        counts = [0] * len(self.class_names)
        for sample in self.split(name):
            counts[sample.label] += 1
        return counts


def describe(index: DatasetIndex) -> str:
    """One line, e.g. ``rafdb-kaggle at /x: 7 classes, train 1400, test 350``."""
    sizes = ", ".join(f"{name} {len(samples)}" for name, samples in index.splits.items())
    return f"{index.layout} at {index.root}: {len(index.class_names)} classes, {sizes}"


# --------------------------------------------------------------------------- file helpers


def _visible_dirs(folder: Path) -> list[Path]:
    try:
        entries = list(folder.iterdir())
    except OSError as exc:
        raise DataError(f"cannot list folder {folder}: {exc.strerror or exc}") from None
    return sorted(
        p
        for p in entries
        if not p.name.startswith(".") and p.name.lower() not in _IGNORED_DIRS and p.is_dir()
    )


def _ci_child(folder: Path, name: str, *, want_dir: bool = True) -> Path | None:
    """The child of ``folder`` called ``name`` (case-insensitive), or None."""
    exact = folder / name
    if (exact.is_dir() if want_dir else exact.is_file()):
        return exact
    try:
        entries = list(folder.iterdir())
    except OSError:
        return None
    matches = sorted(
        p for p in entries
        if p.name.lower() == name.lower() and (p.is_dir() if want_dir else p.is_file())
    )
    if len(matches) > 1:
        raise DataError(
            f"ambiguous folders in {folder}: {', '.join(p.name for p in matches)} "
            f"(names differ only by case); keep one"
        )
    return matches[0] if matches else None


def _images_in(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if is_image_file(p) and p.is_file())
    except OSError as exc:
        raise DataError(f"cannot list folder {folder}: {exc.strerror or exc}") from None


def _split_dir(base: Path, split: str, layout: str) -> Path:
    found = _ci_child(base, split)
    if found is None:
        raise DataError(
            f"missing split folder {base / split} for layout {layout} "
            f"(expected {_EXPECTED[layout]})"
        )
    return found


def _read_class_tree(
    split_dir: Path, resolve: Callable[[str], int | None], valid: Sequence[str], layout: str
) -> list[Sample]:
    """Samples from ``split_dir/<class>/*``; ``resolve`` maps a folder name to a label."""
    samples: list[Sample] = []
    seen: dict[int, Path] = {}
    for class_dir in _visible_dirs(split_dir):
        label = resolve(class_dir.name)
        if label is None:
            raise DataError(
                f"unknown class folder {class_dir} for layout {layout}; "
                f"valid names: {', '.join(valid)}"
            )
        if label in seen:
            raise DataError(
                f"class folders {seen[label]} and {class_dir} name the same class; keep one"
            )
        seen[label] = class_dir
        images = _images_in(class_dir)
        if not images:
            raise DataError(
                f"class folder {class_dir} has no images (.jpg/.png/.bmp/.webp/.tif); "
                f"add images or delete the folder"
            )
        samples.extend(Sample(p, label) for p in images)
    return samples


def _sorted(samples: Iterable[Sample]) -> tuple[Sample, ...]:
    return tuple(sorted(samples, key=lambda s: (str(s.path), s.label)))


def _make_index(
    root: Path, layout: str, class_names: Sequence[str], train: Iterable[Sample],
    test: Iterable[Sample],
) -> DatasetIndex:
    splits = _FrozenMapping({"train": _sorted(train), "test": _sorted(test)})
    return DatasetIndex(root=root, layout=layout, class_names=tuple(class_names), splits=splits)


# --------------------------------------------------------------------------- (a) rafdb-basic


def _locate_rafdb_basic(root: Path) -> Path | None:
    """The ``basic`` folder (root itself or ``root/basic``) or None."""
    for base in (root / "basic", root):
        if (base / _RAFDB_LABEL_FILE).is_file():
            return base
    return None


def _load_rafdb_basic(root: Path) -> DatasetIndex:
    base = _locate_rafdb_basic(root)
    assert base is not None
    label_file = base / _RAFDB_LABEL_FILE
    image_dir = base / "Image" / "aligned"
    if not image_dir.is_dir():
        raise DataError(
            f"missing image folder {image_dir} (RAF-DB basic keeps aligned faces there)"
        )
    splits: dict[str, list[Sample]] = {"train": [], "test": []}
    missing: list[Path] = []
    try:
        text = label_file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {label_file}: {exc}") from None
    for lineno, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        where = f"{label_file} line {lineno}"
        if len(parts) not in (2, 3):
            raise DataError(
                f"malformed {where}: expected '<image> <label>', got {line.strip()!r}"
            )
        name, raw = parts[0], parts[1]
        try:
            label_id = int(raw)
        except ValueError:
            raise DataError(f"malformed {where}: label {raw!r} is not an integer") from None
        if not 1 <= label_id <= 7:
            raise DataError(f"bad label {label_id} in {where}: RAF-DB labels are 1..7")
        split = next((s for s in SPLITS if name.lower().startswith(s + "_")), None)
        if split is None:
            raise DataError(
                f"malformed {where}: image name {name!r} must start with train_ or test_"
            )
        path = image_dir / f"{Path(name).stem}_aligned.jpg"
        if not path.is_file():
            missing.append(path)
            continue
        splits[split].append(Sample(path, label_id - 1))
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DataError(
            f"image {missing[0]} listed in {label_file} does not exist{more}; "
            f"restore the images or remove their lines"
        )
    for split in SPLITS:
        if not splits[split]:
            raise DataError(f"{label_file} lists no {split}_ images")
    return _make_index(root, "rafdb-basic", RAFDB_CLASSES, splits["train"], splits["test"])


# --------------------------------------------------------------------------- (b) rafdb-kaggle

_RAFDB_FOLDERS = tuple(str(i) for i in range(1, 8))


def _locate_rafdb_kaggle(root: Path) -> Path | None:
    """The ``DATASET`` folder (``root/DATASET`` or root itself) or None."""
    dataset = _ci_child(root, "DATASET")
    if dataset is not None:
        return dataset
    if _ci_child(root, "train") is not None or _ci_child(root, "test") is not None:
        return root
    return None


def _detect_rafdb_kaggle(root: Path) -> bool:
    if _ci_child(root, "DATASET") is not None:
        return True
    split_dirs = [d for d in (_ci_child(root, s) for s in SPLITS) if d is not None]
    if not split_dirs:
        return False
    # a bare train/test tree whose class folders are RAF-DB label ids 1..7 (or any numbers,
    # when the folder is Kaggle's ``DATASET``: then a stray ``8`` is reported, not learned)
    names = {d.name for s in split_dirs for d in _visible_dirs(s)}
    if not names or not all(n.isdigit() for n in names):
        return False
    return root.name == "DATASET" or names <= set(_RAFDB_FOLDERS)


def _load_rafdb_kaggle(root: Path) -> DatasetIndex:
    dataset = _locate_rafdb_kaggle(root)
    assert dataset is not None

    def resolve(name: str) -> int | None:
        return int(name) - 1 if name in _RAFDB_FOLDERS else None

    splits = {}
    for split in SPLITS:
        split_dir = _split_dir(dataset, split, "rafdb-kaggle")
        samples = _read_class_tree(split_dir, resolve, _RAFDB_FOLDERS, "rafdb-kaggle")
        if not samples:
            raise DataError(f"split folder {split_dir} has no class folders 1..7")
        _cross_check_kaggle_csv(root, dataset, split, samples)
        splits[split] = samples
    return _make_index(root, "rafdb-kaggle", RAFDB_CLASSES, splits["train"], splits["test"])


def _cross_check_kaggle_csv(root: Path, dataset: Path, split: str, samples: list[Sample]) -> None:
    """Check ``<split>_labels.csv`` (if present) against the class folders (the truth)."""
    dirs: list[Path] = []
    for d in (root, dataset.parent, dataset):
        if d not in dirs:
            dirs.append(d)
    folder_label = {s.path.name: s.label + 1 for s in samples}
    for d in dirs:
        csv_path = _ci_child(d, f"{split}_labels.csv", want_dir=False)
        if csv_path is None:
            continue
        for lineno, image, label_id in _read_image_label_csv(csv_path):
            name = Path(image.replace("\\", "/")).name
            folder_id = folder_label.get(name)
            if folder_id is not None and folder_id != label_id:
                raise DataError(
                    f"{csv_path.name} ({csv_path}) line {lineno} gives image {name} label "
                    f"{label_id}, but it is in class folder {folder_id}; fix the CSV or move "
                    f"the image (class folders are the truth)"
                )


def _read_image_label_csv(csv_path: Path) -> list[tuple[int, str, int]]:
    rows: list[tuple[int, str, int]] = []
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                return rows
            cols = [h.strip().lower() for h in header]
            if "image" not in cols or "label" not in cols:
                raise DataError(
                    f"{csv_path} must have the columns image,label; found {','.join(header)}"
                )
            i_img, i_lab = cols.index("image"), cols.index("label")
            for row in reader:
                lineno = reader.line_num
                if not row or all(not c.strip() for c in row):
                    continue
                if len(row) <= max(i_img, i_lab):
                    raise DataError(f"malformed {csv_path} line {lineno}: {','.join(row)!r}")
                try:
                    label = int(row[i_lab].strip())
                except ValueError:
                    raise DataError(
                        f"malformed {csv_path} line {lineno}: label {row[i_lab]!r} "
                        f"is not an integer"
                    ) from None
                rows.append((lineno, row[i_img].strip(), label))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read {csv_path}: {exc}") from None
    return rows


# --------------------------------------------------------------------------- (c) affectnet-kaggle

_AFFECTNET_KAGGLE_INDEX = {name: i for i, name in enumerate(AFFECTNET_KAGGLE_CLASSES)}


def _locate_split_tree(root: Path) -> Path | None:
    if _ci_child(root, "train") is not None or _ci_child(root, "test") is not None:
        return root
    return None


def _detect_affectnet_kaggle(root: Path) -> bool:
    split_dirs = [d for d in (_ci_child(root, s) for s in SPLITS) if d is not None]
    names = {d.name.lower() for s in split_dirs for d in _visible_dirs(s)}
    # At least 7 of the 8 AffectNet class names: FER-2013 (angry, ...) and CK+ (sadness, ...)
    # share only 6 and stay generic folders.
    return len(names & set(AFFECTNET_KAGGLE_CLASSES)) >= 7


def _load_affectnet_kaggle(root: Path) -> DatasetIndex:
    def resolve(name: str) -> int | None:
        return _AFFECTNET_KAGGLE_INDEX.get(name.lower())

    splits = {}
    for split in SPLITS:
        split_dir = _split_dir(root, split, "affectnet-kaggle")
        samples = _read_class_tree(split_dir, resolve, AFFECTNET_KAGGLE_CLASSES,
                                   "affectnet-kaggle")
        if not samples:
            raise DataError(f"split folder {split_dir} has no class folders")
        splits[split] = samples
    return _make_index(
        root, "affectnet-kaggle", AFFECTNET_KAGGLE_CLASSES, splits["train"], splits["test"]
    )


# --------------------------------------------------------------------------- (d) affectnet-official

_AFFECTNET_LISTS = "Manually_Annotated_file_lists"
_AFFECTNET_CSVS = (("train", "training.csv"), ("test", "validation.csv"))


def _locate_affectnet_official(root: Path) -> Path | None:
    lists = _ci_child(root, _AFFECTNET_LISTS)
    if lists is None:
        return None
    if any(_ci_child(lists, name, want_dir=False) for _, name in _AFFECTNET_CSVS):
        return lists
    return None


def _load_affectnet_official(root: Path) -> DatasetIndex:
    """Official AffectNet.

    ``training.csv`` becomes the ``train`` split and ``validation.csv`` the ``test`` split:
    AffectNet's own test set was never released, so the official validation set (500 images
    per class) is what every paper reports as the AffectNet test accuracy.

    Expression ids 0..7 are the classes (Neutral, Happy, Sad, Surprise, Fear, Disgust, Anger,
    Contempt); ids 8, 9 and 10 (None, Uncertain, No-Face) are dropped.  There are 7 classes
    unless some image has id 7 (Contempt), then 8.
    """
    lists = _locate_affectnet_official(root)
    assert lists is not None
    candidates = [root / "Manually_Annotated_Images",
                  root / "Manually_Annotated" / "Manually_Annotated_Images"]
    image_dir = next((c for c in candidates if c.is_dir()), None)
    if image_dir is None:
        raise DataError(
            f"missing image folder for affectnet-official: expected {candidates[0]} "
            f"or {candidates[1]}"
        )
    splits: dict[str, list[Sample]] = {}
    for split, name in _AFFECTNET_CSVS:
        csv_path = _ci_child(lists, name, want_dir=False)
        if csv_path is None:
            raise DataError(f"missing {lists / name} (affectnet-official needs both lists)")
        splits[split] = _read_affectnet_csv(csv_path, image_dir)
        if not splits[split]:
            raise DataError(f"{csv_path} lists no images with expression ids 0..7")
    has_contempt = any(s.label == 7 for samples in splits.values() for s in samples)
    classes = AFFECTNET_OFFICIAL_CLASSES if has_contempt else AFFECTNET_OFFICIAL_CLASSES[:7]
    return _make_index(root, "affectnet-official", classes, splits["train"], splits["test"])


def _read_affectnet_csv(csv_path: Path, image_dir: Path) -> list[Sample]:
    samples: list[Sample] = []
    missing: list[Path] = []
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            cols = [h.strip() for h in header or []]
            if "subDirectory_filePath" not in cols or "expression" not in cols:
                raise DataError(
                    f"{csv_path} must have a header with subDirectory_filePath and "
                    f"expression; found {','.join(cols) or 'nothing'}"
                )
            i_path, i_expr = cols.index("subDirectory_filePath"), cols.index("expression")
            for row in reader:
                lineno = reader.line_num
                if not row or all(not c.strip() for c in row):
                    continue
                if len(row) <= max(i_path, i_expr):
                    raise DataError(f"malformed {csv_path} line {lineno}: too few columns")
                raw = row[i_expr].strip()
                try:
                    expr = int(raw)
                except ValueError:
                    raise DataError(
                        f"malformed {csv_path} line {lineno}: expression {raw!r} is not "
                        f"an integer"
                    ) from None
                if not 0 <= expr <= 10:
                    raise DataError(
                        f"bad expression {expr} in {csv_path} line {lineno}: ids are 0..10"
                    )
                if expr >= 8:  # None, Uncertain, No-Face
                    continue
                rel = row[i_path].strip().replace("\\", "/")
                path = image_dir / rel
                if not path.is_file():
                    missing.append(path)
                    continue
                samples.append(Sample(path, expr))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read {csv_path}: {exc}") from None
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DataError(
            f"image {missing[0]} listed in {csv_path} does not exist{more}; "
            f"restore the images or remove their lines"
        )
    return samples


# --------------------------------------------------------------------------- (e) folder


def _load_folder(root: Path) -> DatasetIndex:
    split_dirs = {split: _split_dir(root, split, "folder") for split in SPLITS}
    names_by_split = {
        split: [d.name for d in _visible_dirs(d)] for split, d in split_dirs.items()
    }
    class_names = sorted(set(names_by_split["train"]) | set(names_by_split["test"]))
    if not class_names:
        raise DataError(f"{split_dirs['train']} has no class folders (expected train/<class>/)")
    absent = [c for c in class_names if c not in names_by_split["train"]]
    if absent:
        raise DataError(
            f"classes {', '.join(absent)} are in {split_dirs['test']} but not in "
            f"{split_dirs['train']}; the train split must contain every class"
        )
    index = {name: i for i, name in enumerate(class_names)}
    splits = {}
    for split, d in split_dirs.items():
        splits[split] = _read_class_tree(d, index.get, class_names, "folder")
        if not splits[split]:
            raise DataError(f"split folder {d} has no class folders")
    return _make_index(root, "folder", class_names, splits["train"], splits["test"])


# --------------------------------------------------------------------------- detection

_LOCATE: dict[str, Callable[[Path], Path | None]] = {
    "rafdb-basic": _locate_rafdb_basic,
    "rafdb-kaggle": _locate_rafdb_kaggle,
    "affectnet-official": _locate_affectnet_official,
    "affectnet-kaggle": _locate_split_tree,
    "folder": _locate_split_tree,
}
_DETECT: dict[str, Callable[[Path], bool]] = {
    "rafdb-basic": lambda r: _locate_rafdb_basic(r) is not None,
    "rafdb-kaggle": _detect_rafdb_kaggle,
    "affectnet-official": lambda r: _locate_affectnet_official(r) is not None,
    "affectnet-kaggle": _detect_affectnet_kaggle,
    "folder": lambda r: _locate_split_tree(r) is not None,
}
_LOAD: dict[str, Callable[[Path], DatasetIndex]] = {
    "rafdb-basic": _load_rafdb_basic,
    "rafdb-kaggle": _load_rafdb_kaggle,
    "affectnet-official": _load_affectnet_official,
    "affectnet-kaggle": _load_affectnet_kaggle,
    "folder": _load_folder,
}
_DETECTION_ORDER = ("rafdb-basic", "rafdb-kaggle", "affectnet-official", "affectnet-kaggle",
                    "folder")


def _check_root(root: str | os.PathLike) -> Path:
    path = Path(root).expanduser()
    if not path.exists():
        raise DataError(f"dataset root {path} does not exist")
    if not path.is_dir():
        raise DataError(f"dataset root {path} is not a folder")
    return path


def detect_layout(root: str | os.PathLike) -> str:
    """The layout of the dataset at ``root`` (first match in a fixed order)."""
    path = _check_root(root)
    for layout in _DETECTION_ORDER:
        if _DETECT[layout](path):
            return layout
    expected = "; ".join(f"{name}: {_EXPECTED[name]}" for name in _DETECTION_ORDER)
    raise DataError(f"no known dataset layout at {path}; expected one of {expected}")


def load_index(root: str | os.PathLike, layout: str = "auto") -> DatasetIndex:
    """Index the dataset at ``root``; ``layout`` is one of :data:`LAYOUTS` or ``"auto"``."""
    path = _check_root(root)
    if layout == "auto":
        layout = detect_layout(path)
    elif layout not in LAYOUTS:
        raise DataError(f"unknown dataset layout {layout!r}; choose auto, {', '.join(LAYOUTS)}")
    elif _LOCATE[layout](path) is None:
        raise DataError(
            f"{path} is not a {layout} dataset: expected {_EXPECTED[layout]} under it"
        )
    return _LOAD[layout](path)


# --------------------------------------------------------------------------- utilities


def stratified_split(
    samples: Sequence[Sample], fraction: float, seed: int
) -> tuple[tuple[Sample, ...], tuple[Sample, ...]]:
    """Split ``samples`` into ``(train, val)`` with ``fraction`` of each class in ``val``.

    Deterministic for a seed and independent of the input order.  A class with at least two
    samples keeps at least one in train and, when ``fraction > 0``, gives at least one to val;
    a class with one sample stays in train.  Both parts are sorted by path.
    """
    fraction = float(fraction)
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"validation fraction must be in [0, 1), got {fraction}")
    ordered = _sorted(samples)
    if fraction == 0.0:
        return ordered, ()
    by_label: dict[int, list[Sample]] = {}
    for s in ordered:
        by_label.setdefault(s.label, []).append(s)
    train: list[Sample] = []
    val: list[Sample] = []
    for label in sorted(by_label):
        group = by_label[label]
        n = len(group)
        n_val = int(round(n * fraction)) if n >= 2 else 0
        if n >= 2:
            n_val = min(max(n_val, 1), n - 1)
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, label])
        perm = rng.permutation(n)
        chosen = set(perm[:n_val].tolist())
        for i, s in enumerate(group):
            (val if i in chosen else train).append(s)
    return _sorted(train), _sorted(val)


def find_bad_images(samples: Iterable[Sample]) -> list[tuple[Path, str]]:
    """Decode every image; return ``(path, reason)`` for each one that cannot be read."""
    bad: list[tuple[Path, str]] = []
    seen: set[Path] = set()
    for sample in samples:
        if sample.path in seen:
            continue
        seen.add(sample.path)
        try:
            read_rgb(sample.path)
        except BadImageError as exc:
            bad.append((sample.path, exc.reason))
    return bad
