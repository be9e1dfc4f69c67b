"""Datasets on disk: layouts, image decoding and the synthetic demo set (torch-free)."""
from corese_edge.data.layouts import (
    LAYOUTS,
    DatasetIndex,
    Sample,
    describe,
    detect_layout,
    find_bad_images,
    load_index,
    stratified_split,
)

__all__ = [
    "LAYOUTS",
    "DatasetIndex",
    "Sample",
    "describe",
    "detect_layout",
    "find_bad_images",
    "load_index",
    "stratified_split",
]
