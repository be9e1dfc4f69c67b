"""OrtRunner's thread-pool settings (issue 9): the intra-op threads do not spin unless asked to."""
from __future__ import annotations

import numpy as np
import pytest

from corese_edge.runtime.ort import OrtRunner

KEYS = ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning")


def _entries(runner: OrtRunner) -> dict[str, str]:
    # the options the live session was built with, as ONNX Runtime holds them
    opts = runner.session.get_session_options()
    return {k: opts.get_session_config_entry(k) for k in KEYS}


@pytest.mark.parametrize("spinning, expected", [(None, "0"), (False, "0"), (True, "1")])
def test_spinning_is_off_by_default_and_can_be_turned_on(tiny_onnx, spinning, expected):
    kwargs = {} if spinning is None else {"spinning": spinning}
    with OrtRunner(tiny_onnx, providers="cpu", threads=2, **kwargs) as runner:
        assert _entries(runner) == {k: expected for k in KEYS}
        x = np.zeros((1, *runner.inputs[0].shape[1:]), np.float32)
        out = runner.infer({runner.inputs[0].name: x})
        assert np.isfinite(next(iter(out.values()))).all()  # the setting leaves the session usable
