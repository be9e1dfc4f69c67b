"""TrainConfig: the seed notebook's recipe as defaults, with its known bugs fixed."""
from __future__ import annotations

from dataclasses import dataclass

from corese_edge.model.coresse import SE_MODES

AMP_MODES = ("auto", "bf16", "fp16", "off")
DEVICES = ("auto", "cpu", "cuda")
SELECT_METRICS = ("accuracy", "mean_class_accuracy")
BALANCE_MODES = ("none", "sampler", "loss")
CACHE_MODES = ("auto", "on", "off")


@dataclass(frozen=True)
class TrainConfig:
    data: str = ""
    dataset: str = "auto"
    model: str = "coresse"
    img_size: int = 224
    epochs: int = 50
    #: images per optimizer step *per process*; even, because Mixup/CutMix pair images.
    batch_size: int = 32
    eval_batch_size: int = 64
    lr: float = 3e-4
    min_lr: float = 1e-6
    weight_decay: float = 0.05
    mixup: float = 0.2
    cutmix: float = 0.2
    mix_prob: float = 1.0
    mix_switch_prob: float = 0.5
    label_smoothing: float = 0.1
    #: fraction of the epochs after which SWA starts averaging (seed: int(0.75 * epochs)).
    swa_start: float = 0.75
    se_mode: str = "sample"
    pretrained: str = "imagenet"
    init_from: str | None = None
    #: warm-up from lr/steps to lr, per step; capped at epochs - 1.
    warmup_epochs: int = 3
    amp: str = "auto"
    channels_last: bool = False
    workers: int = 2
    #: decode the train and val images once into memory at img_size (auto: when they fit in
    #: corese_edge.data.dataset.CACHE_AUTO_LIMIT); off: read every image from disk every epoch.
    cache: str = "auto"
    device: str = "auto"
    seed: int = 0
    out: str = ""
    resume: bool = False
    val_fraction: float = 0.1
    select_metric: str = "accuracy"
    balance: str = "none"
    skip_bad_images: bool = False
    progress: bool = True
    #: YuNet model file for the face template (None: $CORESE_EDGE_FACE_MODEL, the user's cache,
    #: or a checked download); when it cannot be had the run keeps the default template.
    face_model: str | None = None
    #: training images sampled to learn the face template (0: no detection, the default template).
    face_template_images: int = 300

    def __post_init__(self) -> None:
        def bad(msg: str) -> None:
            raise ValueError(msg)

        if self.epochs < 1:
            bad(f"--epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 2 or self.batch_size % 2:
            bad(f"--batch-size must be an even number >= 2 (Mixup/CutMix mix image pairs), got {self.batch_size}")
        if self.eval_batch_size < 1:
            bad("--eval-batch-size must be >= 1")
        if not 0.0 <= self.swa_start < 1.0:
            bad(f"--swa-start is a fraction of the epochs in [0, 1), got {self.swa_start}")
        if not 0.0 <= self.val_fraction < 1.0:
            bad(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        if self.amp not in AMP_MODES:
            bad(f"--amp must be one of {AMP_MODES}")
        if self.device not in DEVICES:
            bad(f"--device must be one of {DEVICES}")
        if self.se_mode not in SE_MODES:
            bad(f"--se-mode must be one of {SE_MODES}")
        if self.select_metric not in SELECT_METRICS:
            bad(f"--select-metric must be one of {SELECT_METRICS}")
        if self.cache not in CACHE_MODES:
            bad(f"--cache must be one of {CACHE_MODES}")
        if self.balance not in BALANCE_MODES:
            bad(f"--balance must be one of {BALANCE_MODES}")
        if self.lr <= 0 or self.min_lr < 0:
            bad("--lr must be > 0 and --min-lr >= 0")
        if self.warmup_epochs < 0:
            bad("--warmup-epochs must be >= 0")
        if self.img_size < 32:
            bad(f"--img-size must be >= 32 (the backbones downsample 32x), got {self.img_size}")
        if self.workers < 0:
            bad("--workers must be >= 0")
        if self.face_template_images < 0:
            bad(f"--face-template-images must be >= 0 (0 turns face detection off), got {self.face_template_images}")

    @property
    def swa_start_epoch(self) -> int:
        """0-based epoch from whose end on the weights are averaged."""
        return int(self.swa_start * self.epochs)

    @property
    def effective_warmup_epochs(self) -> int:
        return max(0, min(self.warmup_epochs, self.epochs - 1))
