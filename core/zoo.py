"""The MoViNet model zoo: every model id, variant and default resolution lives here.

Listing, validating and describing models all go through this registry, so ids never appear
as scattered string literals elsewhere.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from core.errors import CheckpointMismatchError, UnknownModelError


@dataclass(frozen=True)
class ModelSpec:
    """One MoViNet architecture from the Model Garden."""

    model_id: str
    resolution: int
    # Model Garden README: stream a3/a4/a5 need positional encoding in the causal pools.
    stream_positional_encoding: bool
    description: str


@dataclass(frozen=True)
class VariantSpec:
    """How a variant builds its backbone: causality, conv/SE types and activations."""

    name: str
    causal: bool
    conv_type: str
    se_type: str
    activation: str
    gating_activation: str
    # The classifier head's activation is not stored in checkpoints: it must match how the
    # weights were trained, and Model Garden's export recipe (tools/export_saved_model.py, the
    # streaming notebook) keeps it at its default, swish, whatever the backbone uses.
    head_activation: str
    description: str


MODELS: dict[str, ModelSpec] = {
    spec.model_id: spec
    for spec in (
        ModelSpec("t0", 172, False, "tiny MoViNet (Model Garden 't0'), for tests and demos"),
        ModelSpec("a0", 172, False, "MoViNet-A0, Kinetics-600 top-1 72.3 base / 72.1 stream"),
        ModelSpec("a1", 172, False, "MoViNet-A1, Kinetics-600 top-1 76.7 base / 76.5 stream"),
        ModelSpec("a2", 224, False, "MoViNet-A2, Kinetics-600 top-1 78.6 base / 78.4 stream"),
        ModelSpec("a3", 256, True, "MoViNet-A3, Kinetics-600 top-1 81.8 base / 80.1 stream"),
        ModelSpec("a4", 290, True, "MoViNet-A4, Kinetics-600 top-1 83.5 base / 81.5 stream"),
        ModelSpec("a5", 320, True, "MoViNet-A5, Kinetics-600 top-1 84.3 base / 82.4 stream"),
    )
}

VARIANTS: dict[str, VariantSpec] = {
    spec.name: spec
    for spec in (
        # Official base checkpoints use full 3D convs; export rewrites them into 2D ops
        # (converters/rewrite3d.py). Training on CPU wants conv_type='2plus1d' (3D conv
        # backward is ~35x slower there).
        VariantSpec("base", False, "3d", "3d", "swish", "sigmoid", "swish",
                    "non-causal, whole clip at once (the classic 3D classifier)"),
        VariantSpec("stream", True, "2plus1d", "2plus3d", "hard_swish", "hard_sigmoid", "swish",
                    "causal, stream buffers as explicit states"),
        # Mobile exists for full-integer quantization: ReLU6 in the head too, so no activation
        # of the graph needs a float-only int8 kernel (int8 HARD_SWISH is not delegated to
        # XNNPACK). Model Garden builds it with --classifier_activation=relu6.
        VariantSpec("mobile", True, "2plus1d", "none", "relu6", "hard_sigmoid", "relu6",
                    "stream with ReLU6 and no squeeze-excitation (int8-friendly)"),
    )
}

CONV_TYPES = ("3d", "2plus1d", "3d_2plus1d")
SE_TYPES = ("3d", "2d", "2plus3d", "none")
KINETICS600_CLASSES = 600


def get_model(model_id: str) -> ModelSpec:
    """Return the spec of `model_id`, or raise UnknownModelError naming the known ids."""
    try:
        return MODELS[model_id.lower()]
    except KeyError:
        raise UnknownModelError(
            f"unknown model id {model_id!r}; known ids: {', '.join(MODELS)}") from None


def get_variant(name: str) -> VariantSpec:
    """Return the variant spec, or raise UnknownModelError naming the known variants."""
    try:
        return VARIANTS[name.lower()]
    except KeyError:
        raise UnknownModelError(
            f"unknown variant {name!r}; known variants: {', '.join(VARIANTS)}") from None


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to build one model: a zoo entry plus per-build overrides.

    `None` fields take the zoo defaults; `resolved()` fills them so two configs that build the
    same network compare (and hash) equal.
    """

    model_id: str
    variant: str = "stream"
    resolution: int | None = None
    num_classes: int = KINETICS600_CLASSES
    conv_type: str | None = None
    se_type: str | None = None
    activation: str | None = None
    head_activation: str | None = None
    use_positional_encoding: bool | None = None
    # Model Garden's default (0.99) leaves moving statistics unsettled after short fine-tunes;
    # it only matters for training, so it is not part of the architecture identity.
    norm_momentum: float = 0.99

    def resolved(self) -> ModelConfig:
        """Return a copy with every default filled in and every value validated."""
        model = get_model(self.model_id)
        variant = get_variant(self.variant)
        conv_type = self.conv_type or variant.conv_type
        se_type = self.se_type or variant.se_type
        if conv_type not in CONV_TYPES:
            raise UnknownModelError(f"unknown conv_type {conv_type!r}; known: {', '.join(CONV_TYPES)}")
        if se_type not in SE_TYPES:
            raise UnknownModelError(f"unknown se_type {se_type!r}; known: {', '.join(SE_TYPES)}")
        resolution = self.resolution or model.resolution
        if resolution < 32:
            raise UnknownModelError(f"resolution must be >= 32 pixels, got {resolution}")
        if self.num_classes < 1:
            raise UnknownModelError(f"num_classes must be >= 1, got {self.num_classes}")
        pos_enc = self.use_positional_encoding
        if pos_enc is None:
            pos_enc = variant.causal and model.stream_positional_encoding
        return replace(
            self,
            model_id=model.model_id,
            variant=variant.name,
            resolution=resolution,
            conv_type=conv_type,
            se_type=se_type,
            activation=self.activation or variant.activation,
            head_activation=self.head_activation or variant.head_activation,
            use_positional_encoding=pos_enc,
        )

    @property
    def causal(self) -> bool:
        return get_variant(self.variant).causal

    @property
    def gating_activation(self) -> str:
        return get_variant(self.variant).gating_activation

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


# A project checkpoint is a tf.train.Checkpoint prefix with this sidecar beside it, recording
# the ModelConfig it was trained with, so loading it rebuilds the same network.
CONFIG_SIDECAR = "movibench_model.json"


def checkpoint_config(path: str | Path) -> ModelConfig | None:
    """The ModelConfig saved beside a project checkpoint, or None for foreign checkpoints."""
    path = Path(path)
    sidecar = (path if path.is_dir() else path.parent) / CONFIG_SIDECAR
    if not sidecar.exists():
        return None
    try:
        data = json.loads(sidecar.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointMismatchError(f"{sidecar} is not the JSON a project checkpoint keeps "
                                      f"beside it ({exc})") from None
    # Sidecars written before head_activation existed describe models whose head used the
    # backbone's activation.
    data.setdefault("head_activation", data.get("activation"))
    return ModelConfig.from_dict(data)


def config_for(model_id: str | None, variant: str | None, resolution: int | None = None,
               num_classes: int | None = None, checkpoint: str | Path | None = None,
               conv_type: str | None = None) -> ModelConfig:
    """The ModelConfig a command should build, from its options and the checkpoint's sidecar.

    A project checkpoint fixes the architecture (id, variant, conv/SE types, class count);
    asking for a different id, variant or conv type than it holds is a
    CheckpointMismatchError. A foreign checkpoint (e.g. one trained with Model Garden's
    conv_type='3d_2plus1d') needs `conv_type` when it differs from the variant's default. The
    resolution stays free: MoViNets are fully convolutional.
    """
    saved = checkpoint_config(checkpoint) if checkpoint else None
    if saved is None:
        if model_id is None:
            raise UnknownModelError("--model is required unless --checkpoint is a project checkpoint")
        return ModelConfig(model_id, variant or "stream", resolution,
                           num_classes or KINETICS600_CLASSES, conv_type=conv_type).resolved()
    for field_name, asked in (("model_id", model_id), ("variant", variant),
                              ("num_classes", num_classes), ("conv_type", conv_type)):
        have = getattr(saved, field_name)
        if asked is not None and str(asked).lower() != str(have):
            # The class count may come from a dataset rather than an option: say so.
            source = (" (--classes, or the dataset's class count)" if field_name == "num_classes"
                      else "")
            raise CheckpointMismatchError(
                f"checkpoint {checkpoint} holds {field_name}={have!r}, not the {asked!r} asked "
                f"for{source}")
    return replace(saved, resolution=resolution or saved.resolution).resolved()


# Small checkpoints trained on the synthetic flash-count task (bench/data/synth.py), shipped as
# package data so demos, docs and tests have trained weights without any download.
DEMO_WEIGHTS_DIR = Path(__file__).parent / "demo_weights"
# t0 at 64x64 for tests and the default matrix; a0 at 172x172, the size users ship, for the a0
# matrix (each directory's TRAINING.md says how it was trained).
DEMO_CHECKPOINTS = ("t0-stream-synth", "t0-base-synth", "a0-stream-synth", "a0-mobile-synth",
                    "a0-base-synth")


def demo_checkpoint(name: str) -> Path:
    """The directory of demo checkpoint `name` (e.g. 't0-stream-synth'), with its config sidecar.

    Pass it wherever a checkpoint is taken (`--checkpoint`, `config_for`, `load_checkpoint`).
    Raises UnknownModelError listing the names for an unknown one or a missing install.
    """
    key = name.strip().lower()
    if key not in DEMO_CHECKPOINTS:
        raise UnknownModelError(
            f"unknown demo checkpoint {name!r}; known: {', '.join(DEMO_CHECKPOINTS)}")
    path = DEMO_WEIGHTS_DIR / key
    if not (path / CONFIG_SIDECAR).exists():
        raise UnknownModelError(f"demo checkpoint {key!r} is not installed (no {path / CONFIG_SIDECAR})")
    return path
