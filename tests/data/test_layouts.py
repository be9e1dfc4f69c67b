from __future__ import annotations

import pickle
import shutil
from collections import Counter
from pathlib import Path

import pytest

from corese_edge.data import (
    LAYOUTS,
    Sample,
    describe,
    detect_layout,
    load_index,
    stratified_split,
)
from corese_edge.data.layouts import (
    AFFECTNET_KAGGLE_CLASSES,
    AFFECTNET_OFFICIAL_CLASSES,
    RAFDB_CLASSES,
)
from corese_edge.errors import DataError
from tests.data.layout_fixtures import (
    AFFECTNET_FOLDERS,
    make_affectnet_kaggle,
    make_affectnet_official,
    make_folder,
    make_rafdb_basic,
    make_rafdb_kaggle,
    write_image,
)

BUILDERS = {
    "rafdb-basic": make_rafdb_basic,
    "rafdb-kaggle": make_rafdb_kaggle,
    "affectnet-kaggle": make_affectnet_kaggle,
    "affectnet-official": make_affectnet_official,
    "folder": make_folder,
}


def _labels_by_name(samples) -> dict[str, int]:
    return {s.path.name: s.label for s in samples}


def test_class_constants() -> None:
    assert LAYOUTS == ("rafdb-basic", "rafdb-kaggle", "affectnet-kaggle", "affectnet-official",
                       "folder")
    assert RAFDB_CLASSES == ("Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger",
                             "Neutral")
    assert AFFECTNET_KAGGLE_CLASSES == AFFECTNET_FOLDERS


# ----------------------------------------------------------------------------- detection


@pytest.mark.parametrize("layout", LAYOUTS)
def test_each_layout_is_detected_and_forcing_it_works(tmp_path: Path, layout: str) -> None:
    root = BUILDERS[layout](tmp_path / "ds")
    assert detect_layout(root) == layout
    auto = load_index(root)
    forced = load_index(root, layout=layout)
    assert auto.layout == forced.layout == layout
    assert auto == forced
    assert auto.root == root
    assert set(auto.splits) == {"train", "test"}
    assert auto.split("train") and auto.split("test")
    for split in ("train", "test"):
        samples = auto.split(split)
        assert list(samples) == sorted(samples, key=lambda s: str(s.path))
        assert all(s.path.is_file() for s in samples)
        assert all(0 <= s.label < len(auto.class_names) for s in samples)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_forcing_the_wrong_layout_says_what_was_expected(tmp_path: Path, layout: str) -> None:
    # an affectnet-official tree matches no other layout; rafdb-basic for affectnet-official
    other = "affectnet-official" if layout != "affectnet-official" else "rafdb-basic"
    root = BUILDERS[other](tmp_path / "ds")
    with pytest.raises(DataError) as exc:
        load_index(root, layout=layout)
    msg = str(exc.value)
    assert str(root) in msg and f"not a {layout} dataset" in msg and "expected" in msg


def test_unknown_layout_name_and_missing_root(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "ds")
    with pytest.raises(DataError, match="unknown dataset layout 'fer2013'"):
        load_index(root, layout="fer2013")
    missing = tmp_path / "nope"
    with pytest.raises(DataError, match="does not exist") as exc:
        detect_layout(missing)
    assert str(missing) in str(exc.value)
    with pytest.raises(DataError, match="does not exist"):
        load_index(missing)


def test_unrecognised_tree_names_root_and_layouts(tmp_path: Path) -> None:
    root = tmp_path / "pile"
    write_image(root / "cat" / "a.jpg")  # class folders but no train/test
    with pytest.raises(DataError) as exc:
        detect_layout(root)
    msg = str(exc.value)
    assert str(root) in msg
    for layout in LAYOUTS:
        assert layout in msg


# ----------------------------------------------------------------------------- (a) rafdb-basic


def test_rafdb_basic_labels_map_by_id(tmp_path: Path) -> None:
    entries = [("train_00001.jpg", 1), ("train_00002.jpg", 7), ("train_00003.jpg", 4),
               ("test_00001.jpg", 5), ("test_00002.jpg", 6)]
    root = make_rafdb_basic(tmp_path / "raf", entries=entries)
    index = load_index(root)
    assert index.layout == "rafdb-basic"
    assert index.class_names == RAFDB_CLASSES
    train = _labels_by_name(index.split("train"))
    assert train == {"train_00001_aligned.jpg": 0, "train_00002_aligned.jpg": 6,
                     "train_00003_aligned.jpg": 3}
    assert index.class_names[train["train_00003_aligned.jpg"]] == "Happiness"
    assert _labels_by_name(index.split("test")) == {"test_00001_aligned.jpg": 4,
                                                   "test_00002_aligned.jpg": 5}
    assert index.class_counts("train") == [1, 0, 0, 1, 0, 0, 1]
    expected = root / "basic" / "Image" / "aligned" / "train_00003_aligned.jpg"
    assert expected in {s.path for s in index.split("train")}


def test_rafdb_basic_three_columns_and_basic_as_root(tmp_path: Path) -> None:
    root = make_rafdb_basic(tmp_path / "raf", per_class=1, three_columns=True)
    index = load_index(root)
    assert index.class_counts("train") == [1] * 7 and index.class_counts("test") == [1] * 7
    inner = load_index(root / "basic")
    assert inner.layout == "rafdb-basic"
    assert [s.path for s in inner.split("train")] == [s.path for s in index.split("train")]


@pytest.mark.parametrize("line, fragment", [
    ("train_09999.jpg", "malformed"),
    ("train_09999.jpg 4 0 extra", "malformed"),
    ("train_09999.jpg four", "not an integer"),
    ("train_09999.jpg 8", "bad label 8"),
    ("train_09999.jpg 0", "bad label 0"),
    ("val_00001.jpg 3", "train_ or test_"),
])
def test_rafdb_basic_bad_line_names_file_and_line(tmp_path: Path, line: str,
                                                  fragment: str) -> None:
    root = make_rafdb_basic(tmp_path / "raf", per_class=1, extra_lines=["", line])
    with pytest.raises(DataError) as exc:
        load_index(root)
    msg = str(exc.value)
    assert fragment in msg
    assert "list_patition_label.txt line 16" in msg  # 14 entries, a blank line, then this one


def test_rafdb_basic_missing_image_is_named(tmp_path: Path) -> None:
    root = make_rafdb_basic(tmp_path / "raf", per_class=1)
    gone = root / "basic" / "Image" / "aligned" / "test_00010_aligned.jpg"
    gone.unlink()
    with pytest.raises(DataError) as exc:
        load_index(root)
    assert str(gone) in str(exc.value)


# ----------------------------------------------------------------------------- (b) rafdb-kaggle


def test_rafdb_kaggle_folder_number_is_label_id(tmp_path: Path) -> None:
    root = make_rafdb_kaggle(tmp_path / "raf", per_class=2)
    index = load_index(root)
    assert index.class_names == RAFDB_CLASSES
    for split in ("train", "test"):
        for s in index.split(split):
            assert s.label == int(s.path.parent.name) - 1
        assert index.class_counts(split) == [2] * 7
    # the DATASET folder itself is accepted as the root
    inner = load_index(root / "DATASET")
    assert inner.layout == "rafdb-kaggle"
    assert inner.split("test") == index.split("test")


def test_rafdb_kaggle_subset_of_folders_keeps_fixed_indices(tmp_path: Path) -> None:
    # only Neutral (7) and Disgust (3): indices stay 6 and 2, not 1 and 0
    root = make_rafdb_kaggle(tmp_path / "raf", per_class=1, class_ids=[7, 3])
    index = load_index(root)
    assert len(index.class_names) == 7
    assert index.class_counts("train") == [0, 0, 1, 0, 0, 0, 1]
    assert {index.class_names[s.label] for s in index.split("test")} == {"Neutral", "Disgust"}


def test_rafdb_kaggle_csv_disagreement_names_the_csv(tmp_path: Path) -> None:
    root = make_rafdb_kaggle(tmp_path / "raf", per_class=1)
    csv_path = root / "test_labels.csv"
    lines = csv_path.read_text().splitlines()
    name, label = lines[3].split(",")
    lines[3] = f"{name},{int(label) % 7 + 1}"
    csv_path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as exc:
        load_index(root)
    msg = str(exc.value)
    assert "test_labels.csv" in msg and name in msg
    assert f"label {int(label) % 7 + 1}" in msg and f"class folder {label}" in msg


def test_rafdb_kaggle_csv_next_to_dataset_and_extra_rows_are_fine(tmp_path: Path) -> None:
    root = make_rafdb_kaggle(tmp_path / "raf", per_class=1)
    # rows for images that are not on disk are ignored; agreeing rows pass
    with open(root / "train_labels.csv", "a") as fh:
        fh.write("train_99999_aligned.jpg,2\n")
    assert load_index(root).class_counts("train") == [1] * 7
    # with DATASET as the root, the CSVs next to it are still checked
    (root / "train_labels.csv").write_text("image,label\ntrain_00001_aligned.jpg,5\n")
    with pytest.raises(DataError, match="train_labels.csv"):
        load_index(root / "DATASET")


def test_rafdb_kaggle_unknown_folder(tmp_path: Path) -> None:
    root = make_rafdb_kaggle(tmp_path / "raf", per_class=1)
    bad = root / "DATASET" / "train" / "8"
    write_image(bad / "x.jpg")
    with pytest.raises(DataError) as exc:
        load_index(root)
    msg = str(exc.value)
    assert str(bad) in msg and "1, 2, 3, 4, 5, 6, 7" in msg


def test_rafdb_kaggle_ignores_non_images_and_hidden_folders(tmp_path: Path) -> None:
    root = make_rafdb_kaggle(tmp_path / "raf", per_class=1)
    folder = root / "DATASET" / "train" / "4"
    (folder / ".DS_Store").write_bytes(b"\x00\x01")
    (folder / "Thumbs.db").write_bytes(b"\x00\x01")
    (folder / "readme.txt").write_text("hi")
    write_image(root / "DATASET" / "train" / ".cache" / "x.jpg")
    write_image(root / "DATASET" / "train" / "__MACOSX" / "x.jpg")
    index = load_index(root)
    assert index.class_counts("train") == [1] * 7


# ----------------------------------------------------------------------------- class-folder errors


@pytest.mark.parametrize("layout", ["rafdb-kaggle", "affectnet-kaggle", "folder"])
def test_empty_class_folder_is_named(tmp_path: Path, layout: str) -> None:
    root = BUILDERS[layout](tmp_path / "ds", per_class=1)
    split_dir = next(p for p in root.rglob("*") if p.is_dir() and p.name.lower() == "test")
    empty = sorted(d for d in split_dir.iterdir() if d.is_dir())[0]
    for f in empty.iterdir():
        f.unlink()
    (empty / "Thumbs.db").write_bytes(b"x")  # not an image
    with pytest.raises(DataError) as exc:
        load_index(root, layout=layout)
    assert str(empty) in str(exc.value) and "no images" in str(exc.value)


@pytest.mark.parametrize("layout", ["rafdb-kaggle", "affectnet-kaggle", "folder"])
def test_missing_test_split_is_named(tmp_path: Path, layout: str) -> None:
    root = BUILDERS[layout](tmp_path / "ds", per_class=1)
    split_dir = next(p for p in root.rglob("*") if p.is_dir() and p.name.lower() == "test")
    shutil.rmtree(split_dir)
    with pytest.raises(DataError) as exc:
        load_index(root)
    msg = str(exc.value)
    assert "missing split folder" in msg
    assert str(split_dir.parent / "test") in msg


# ----------------------------------------------------------------------------- (c) affectnet-kaggle


def test_affectnet_kaggle_case_insensitive_and_fixed_indices(tmp_path: Path) -> None:
    folders = ("Anger", "CONTEMPT", "disgust", "Fear", "Happy", "neutral", "Sad", "SURPRISE")
    root = make_affectnet_kaggle(tmp_path / "an", per_class=1, folders=folders,
                                 splits=("TRAIN", "test"))
    index = load_index(root)
    assert index.layout == "affectnet-kaggle"
    assert index.class_names == AFFECTNET_KAGGLE_CLASSES
    # listing order (uppercase first: CONTEMPT, SURPRISE, Anger, ...) differs from index order
    for s in index.split("train") + index.split("test"):
        assert index.class_names[s.label] == s.path.parent.name.lower()
    happy = [s for s in index.split("train") if s.path.parent.name == "Happy"]
    assert len(happy) == 1 and happy[0].label == 4


def test_affectnet_kaggle_without_contempt_keeps_eight_classes(tmp_path: Path) -> None:
    folders = [f for f in AFFECTNET_FOLDERS if f != "contempt"]
    root = make_affectnet_kaggle(tmp_path / "an", per_class=1, folders=folders)
    index = load_index(root)
    assert index.layout == "affectnet-kaggle"
    assert len(index.class_names) == 8
    assert index.class_counts("train") == [1, 0, 1, 1, 1, 1, 1, 1]
    assert {s.label for s in index.split("test")} == {0, 2, 3, 4, 5, 6, 7}


def test_affectnet_kaggle_unknown_folder_lists_valid_names(tmp_path: Path) -> None:
    folders = [("happyy" if f == "happy" else f) for f in AFFECTNET_FOLDERS]
    root = make_affectnet_kaggle(tmp_path / "an", per_class=1, folders=folders)
    assert detect_layout(root) == "affectnet-kaggle"  # 7 of the 8 names: still AffectNet
    with pytest.raises(DataError) as exc:
        load_index(root)
    msg = str(exc.value)
    assert str(root / "Test" / "happyy") in msg or str(root / "Train" / "happyy") in msg
    assert ", ".join(AFFECTNET_KAGGLE_CLASSES) in msg


def test_fer_style_names_are_a_generic_folder(tmp_path: Path) -> None:
    fer = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
    root = make_folder(tmp_path / "fer", classes=fer, per_class=1)
    index = load_index(root)
    assert index.layout == "folder"
    assert index.class_names == tuple(sorted(fer))


# ------------------------------------------------------------------------ (d) affectnet-official


def test_affectnet_official_drops_8_to_10_and_has_contempt(tmp_path: Path) -> None:
    root = make_affectnet_official(tmp_path / "an")
    index = load_index(root)
    assert index.layout == "affectnet-official"
    assert index.class_names == AFFECTNET_OFFICIAL_CLASSES
    assert index.class_counts("train") == [1] * 8
    assert index.class_counts("test") == [1] * 8
    train = _labels_by_name(index.split("train"))
    assert set(train) == {f"train_{i:02d}.jpg" for i in range(8)}
    assert all(train[f"train_{i:02d}.jpg"] == i for i in range(8))
    assert all(s.path.name.startswith("val_") for s in index.split("test"))  # validation -> test


def test_affectnet_official_without_contempt_has_seven(tmp_path: Path) -> None:
    root = make_affectnet_official(tmp_path / "an", with_contempt=False, nested=True)
    index = load_index(root)
    assert index.class_names == AFFECTNET_OFFICIAL_CLASSES[:7]
    assert index.class_counts("train") == [1] * 7
    assert all("Manually_Annotated/Manually_Annotated_Images" in s.path.as_posix()
               for s in index.split("train"))


def test_affectnet_official_contempt_only_in_validation_still_counts(tmp_path: Path) -> None:
    rows = {"training": [("1/a.jpg", 0), ("1/b.jpg", 1)],
            "validation": [("2/c.jpg", 7), ("2/d.jpg", 9)]}
    root = make_affectnet_official(tmp_path / "an", rows=rows)
    index = load_index(root)
    assert len(index.class_names) == 8
    assert _labels_by_name(index.split("test")) == {"c.jpg": 7}


def test_affectnet_official_errors(tmp_path: Path) -> None:
    root = make_affectnet_official(tmp_path / "an")
    gone = root / "Manually_Annotated_Images" / "203" / "val_03.jpg"
    gone.unlink()
    with pytest.raises(DataError) as exc:
        load_index(root)
    assert str(gone) in str(exc.value)

    root2 = make_affectnet_official(tmp_path / "an2",
                                    rows={"training": [("1/a.jpg", 12)], "validation": []})
    with pytest.raises(DataError, match=r"bad expression 12 in .*training.csv line 2"):
        load_index(root2)

    root3 = make_affectnet_official(tmp_path / "an3", rows={"training": [("1/a.jpg", 1)]})
    with pytest.raises(DataError, match="validation.csv"):
        load_index(root3)


# ----------------------------------------------------------------------------- (e) folder


def test_folder_classes_are_sorted_not_listing_order(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "f", classes=("zebra", "apple", "mango"), per_class=2,
                       splits=("Train", "TEST"))
    index = load_index(root)
    assert index.layout == "folder"
    assert index.class_names == ("apple", "mango", "zebra")
    for s in index.split("train") + index.split("test"):
        assert index.class_names[s.label] == s.path.parent.name
    assert index.class_counts("test") == [2, 2, 2]


def test_folder_test_only_class_is_an_error(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "f", classes=("a", "b"), test_classes=("a", "b", "c"))
    with pytest.raises(DataError, match="train split must contain every class") as exc:
        load_index(root)
    assert f"classes c are in {root / 'test'}" in str(exc.value)
    # a class missing from test is fine
    root2 = make_folder(tmp_path / "g", classes=("a", "b"), test_classes=("b",))
    assert load_index(root2).class_counts("test") == [0, 2]


def test_folder_missing_train_split(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "f", splits=("test",))
    with pytest.raises(DataError) as exc:
        load_index(root)
    assert str(root / "train") in str(exc.value)


# ----------------------------------------------------------------------------- index helpers


def test_split_lookup_and_describe(tmp_path: Path) -> None:
    root = make_rafdb_kaggle(tmp_path / "raf", per_class=2)
    index = load_index(root)
    with pytest.raises(DataError) as exc:
        index.split("val")
    assert str(root) in str(exc.value) and "train, test" in str(exc.value)
    assert describe(index) == f"rafdb-kaggle at {root}: 7 classes, train 14, test 14"
    with pytest.raises(TypeError):
        index.splits["val"] = ()  # read-only mapping
    clone = pickle.loads(pickle.dumps(index))  # DataLoader workers may pickle it
    assert clone == index and clone.class_counts("train") == [2] * 7


def test_bare_numeric_trees(tmp_path: Path) -> None:
    # train/test with folders 1..7 but no DATASET parent: still RAF-DB (folder = label id)
    root = make_rafdb_kaggle(tmp_path / "raf", per_class=1, class_ids=[2, 6], with_csv=False)
    bare = root / "DATASET"
    bare.rename(tmp_path / "raf_bare")
    assert detect_layout(tmp_path / "raf_bare") == "rafdb-kaggle"
    assert load_index(tmp_path / "raf_bare").class_counts("train") == [0, 1, 0, 0, 0, 1, 0]
    # numbered classes beyond 7 in a folder not called DATASET: a generic folder
    digits = make_folder(tmp_path / "dataset", classes=("0", "1", "8"), per_class=1)
    assert detect_layout(digits) == "folder"
    # a generic tree in a folder called "dataset" is not mistaken for Kaggle RAF-DB
    named = make_folder(tmp_path / "d2" / "dataset", classes=("cat", "dog"), per_class=1)
    assert detect_layout(named) == "folder"


# ----------------------------------------------------------------------------- stratified_split


def _samples(counts: dict[int, int]) -> list[Sample]:
    return [Sample(Path(f"/d/{label}/{i:03d}.jpg"), label)
            for label, n in counts.items() for i in range(n)]


def test_stratified_split_counts_and_coverage() -> None:
    samples = _samples({0: 20, 1: 10, 2: 3, 3: 2, 4: 1})
    train, val = stratified_split(samples, 0.2, seed=0)
    val_counts = Counter(s.label for s in val)
    assert val_counts == {0: 4, 1: 2, 2: 1, 3: 1}  # >= 1 for classes with >= 2 samples
    train_counts = Counter(s.label for s in train)
    assert train_counts == {0: 16, 1: 8, 2: 2, 3: 1, 4: 1}  # a singleton stays in train
    assert set(train).isdisjoint(val)
    assert sorted(train + val, key=lambda s: str(s.path)) == sorted(samples,
                                                                   key=lambda s: str(s.path))


def test_stratified_split_is_deterministic_per_seed() -> None:
    samples = _samples({0: 30, 1: 30, 2: 30})
    a = stratified_split(samples, 0.3, seed=1)
    b = stratified_split(list(reversed(samples)), 0.3, seed=1)  # input order does not matter
    c = stratified_split(samples, 0.3, seed=2)
    assert a == b
    assert set(a[1]) != set(c[1])
    assert Counter(s.label for s in c[1]) == Counter(s.label for s in a[1]) == {0: 9, 1: 9, 2: 9}


def test_stratified_split_fraction_bounds() -> None:
    samples = _samples({0: 5, 1: 5})
    train, val = stratified_split(samples, 0.0, seed=0)
    assert val == () and len(train) == 10
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError):
            stratified_split(samples, bad, seed=0)
    # a tiny fraction still gives each class one validation image, a large one keeps one train
    _, val = stratified_split(samples, 0.01, seed=0)
    assert Counter(s.label for s in val) == {0: 1, 1: 1}
    train, _ = stratified_split(samples, 0.99, seed=0)
    assert Counter(s.label for s in train) == {0: 1, 1: 1}
