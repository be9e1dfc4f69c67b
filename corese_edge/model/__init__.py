"""CoRes-SE: the fusion model, its named variants, checkpoints and seed import (needs torch)."""
from corese_edge.model.checkpoint import Checkpoint, load_checkpoint, load_model
from corese_edge.model.coresse import SE_MODES, CoResSE, SEFusion
from corese_edge.model.variants import VARIANTS, Variant, get_variant

__all__ = [
    "Checkpoint", "CoResSE", "SEFusion", "SE_MODES", "VARIANTS", "Variant",
    "get_variant", "load_checkpoint", "load_model",
]
