"""Datasets on disk: layouts and the synthetic demo set (torch-free).

Image decoding lives in the base layer, corese_edge.images.
"""
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
