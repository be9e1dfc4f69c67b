"""Training curves are drawn from whatever metrics.jsonl holds."""
from __future__ import annotations

import pytest

from corese_edge.train.plots import plot_curves


@pytest.mark.parametrize("with_val", [True, False])
def test_curves_are_drawn_with_and_without_a_validation_split(tmp_path, with_val):
    """--val-fraction 0 records no val_accuracy; the plot must still be written."""
    history = []
    for epoch in range(3):
        row = {"epoch": epoch, "train_loss": 2.0 - epoch / 10, "train_accuracy": 0.2 + epoch / 10}
        if with_val:
            row.update(val_loss=1.9 - epoch / 10, val_accuracy=0.3 + epoch / 10)
        history.append(row)
    out = tmp_path / "curves.png"
    plot_curves(history, out, swa_start=1)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
