"""From a dataset folder to the train / val / test sample lists a run uses."""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from corese_edge.errors import DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataSplits:
    root: Path
    layout: str
    class_names: tuple[str, ...]
    train: tuple
    val: tuple
    test: tuple
    skipped: int = 0

    def describe(self) -> str:
        return (f"{self.layout} at {self.root}: {len(self.class_names)} classes, train {len(self.train)}, "
                f"val {len(self.val)} (carved from train), test {len(self.test)}")


def check_images(samples, progress: bool = False) -> list[tuple[Path, str]]:
    """Decode every image (cv2 releases the GIL, so threads help); return the bad ones."""
    from corese_edge.images import read_rgb

    def probe(s):
        try:
            read_rgb(s.path)
            return None
        except DataError as exc:
            return (s.path, str(exc))

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = pool.map(probe, samples, chunksize=64)
        if progress:
            from tqdm.auto import tqdm

            results = tqdm(results, total=len(samples), desc="checking images", leave=False)
        return [r for r in results if r is not None]


def prepare_splits(data: str, layout: str = "auto", val_fraction: float = 0.1, seed: int = 0,
                   skip_bad_images: bool = False, progress: bool = False) -> DataSplits:
    """Index the dataset, check every image, and carve a stratified validation split from train.

    A bad image is a :class:`DataError` naming it, unless ``skip_bad_images``; then it is dropped
    and counted.  The test split is never used for any choice.
    """
    from corese_edge.data.layouts import load_index, stratified_split

    if not data:
        raise DataError("no dataset given: pass --data DIR (RAF-DB, AffectNet or a class-folder tree)")
    index = load_index(data, layout)
    train, test = index.split("train"), index.split("test")
    bad = check_images(train + test, progress=progress)
    if bad and not skip_bad_images:
        path, reason = bad[0]
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise DataError(f"{reason}{more}")
    if bad:
        bad_paths = {p for p, _ in bad}
        train = tuple(s for s in train if s.path not in bad_paths)
        test = tuple(s for s in test if s.path not in bad_paths)
        log.warning("skipped %d unreadable images (--skip-bad-images)", len(bad))
        print(f"skipped {len(bad)} unreadable image(s) (--skip-bad-images); first: {bad[0][0]}")
    train, val = stratified_split(train, val_fraction, seed)
    if not train or not test:
        raise DataError(f"{index.root}: the train and test splits must both hold images")
    return DataSplits(Path(index.root), index.layout, tuple(index.class_names), tuple(train), tuple(val), tuple(test), len(bad))
