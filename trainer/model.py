"""The convolutional autoencoder, built from plain parameters, and the named presets.

A preset is plain data: how frames are preprocessed and scored (the ``watchdog.detection.bundle``
dataclasses that travel in the bundle), the architecture and the training schedule. Tune
``default`` by editing ``PRESETS`` (or ``dataclasses.replace`` in a benchmark).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from watchdog.detection.bundle import Adaptation, Preprocess, Scoring


@dataclass(frozen=True)
class ModelSpec:
    """The architecture: strided conv encoder, optional dense bottleneck, mirrored decoder.

    ``latent`` is the seed's ``latent_dim``: its Dense layer has ``latent + latent`` units
    (``dense_latent=True``); with ``dense_latent=False`` the bottleneck is a 1x1 conv with
    ``latent`` channels (fully convolutional: no dense layer, far fewer parameters).
    """

    filters: tuple[int, ...] = (16, 8)
    kernel: int = 3
    stride: int = 2
    latent: int = 16
    dense_latent: bool = True
    activation: str = "relu"
    batch_norm: bool = False


@dataclass(frozen=True)
class TrainSpec:
    """How to fit: loss, optimiser schedule, batch, epochs, early stopping, augmentation."""

    loss: str = "mae"
    learning_rate: float = 1e-3
    lr_decay: float = 0.0  # Keras 2 ``decay``: lr / (1 + decay * step); the seed uses lr/epochs
    batch_size: int = 32
    epochs: int = 125
    patience: int = 10  # early stopping on val_loss; 0 disables it
    augment: bool = False
    shift: float = 0.04  # augmentation: fraction of width/height
    zoom: float = 0.05
    brightness: float = 0.1
    # share of training frames with foreign material pasted, the target the clean frame
    # (trainer.denoise); 0: a plain autoencoder
    denoise: float = 0.0
    # share of training frames with clean synthetic parts drawn on them, the target the same
    # frame (trainer.synthetic_parts); 0: the recordings as they are
    synthetic_parts: float = 0.0

    def __post_init__(self) -> None:
        # in the words of the flags that set these, the trainer's and the quality benchmark's
        if self.epochs < 1:
            raise ValueError(f"--epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.patience < 0:
            raise ValueError(
                f"--patience must be 0 (never stop early) or more, got {self.patience}"
            )
        if not 0.0 <= self.denoise <= 1.0:
            raise ValueError(f"--denoise must be a share from 0 to 1, got {self.denoise}")
        if not 0.0 <= self.synthetic_parts <= 1.0:
            raise ValueError(
                f"--synthetic-parts must be a share from 0 to 1, got {self.synthetic_parts}"
            )


@dataclass(frozen=True)
class Preset:
    """Everything a run needs besides the data."""

    name: str
    preprocess: Preprocess
    scoring: Scoring
    model: ModelSpec
    train: TrainSpec
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    # per-print adaptation (watchdog.detection.baseline); its threshold is set by calibration, not here
    adaptation: Adaptation = field(default_factory=Adaptation)


PRESETS: dict[str, Preset] = {
    # The seed blog post exactly: 400x400x3, conv (16, 8) k3 s2, Dense(16+16), MAE,
    # Adam 1e-3 with decay 1e-3/125, batch 32, 125 epochs; scored by whole-image MSE.
    "seed": Preset(
        name="seed",
        preprocess=Preprocess(width=400, height=400, channels=3, interpolation="linear"),
        scoring=Scoring(error="l2", reduce="mean"),
        model=ModelSpec(filters=(16, 8), kernel=3, stride=2, latent=16, dense_latent=True),
        train=TrainSpec(
            loss="mae",
            learning_rate=1e-3,
            lr_decay=1e-3 / 125,
            batch_size=32,
            epochs=125,
            patience=0,
        ),
        description="the original blog post's model exactly (slow: well over an hour on 2 cores)",
    ),
    # Ours, chosen by measurement (docs/decisions/region-of-interest.md): the bottom half of the frame
    # (bed and nozzle; the carriage fills the top), SSIM error, mean of the top 10% of the
    # smoothed map, a small fully convolutional model with shift/zoom/brightness augmentation,
    # and per-print adaptation (each print is judged against its own first 30 frames, every
    # frame matched in brightness and contrast to them first: `match_light`, and compared with
    # the 10 of them that look most like it: `nearest`).
    # Per-frame normalisation (`--normalize`) is measured but off: docs/decisions/light-matching.md.
    # Batch 8 for up to 60 epochs: batch 32 for 30 left the model blurred, missing small
    # failures (docs/decisions/training-length.md).
    "default": Preset(
        name="default",
        preprocess=Preprocess(width=128, height=64, channels=3, roi=(0.0, 0.5, 1.0, 1.0)),
        scoring=Scoring(error="ssim", reduce="topk", topk=0.10, blur_sigma=2.0),
        model=ModelSpec(filters=(16, 32, 64), kernel=3, stride=2, latent=32, dense_latent=False),
        train=TrainSpec(
            loss="mae",
            learning_rate=1e-3,
            lr_decay=0.0,
            batch_size=8,
            epochs=60,
            patience=15,
            augment=True,
            shift=0.06,
            zoom=0.05,
            brightness=0.15,
        ),
        adaptation=Adaptation(
            frames=30,
            std_floor=0.5,
            match_light=True,
            nearest=10,
            early_frames=10,
            start_light=True,
            clipped_light=True,
        ),
        description="bottom-half ROI, SSIM top-10% score, small conv AE, per-print adaptation with light "
        "matching",
    ),
    # For tests and smoke runs: seconds on synthetic frames; independent of `default` tuning.
    "tiny": Preset(
        name="tiny",
        preprocess=Preprocess(width=64, height=48, channels=3),
        scoring=Scoring(error="l2", reduce="topk", topk=0.02, blur_sigma=1.5),
        model=ModelSpec(filters=(16, 32, 32), kernel=3, stride=2, latent=32, dense_latent=True),
        train=TrainSpec(loss="mae", batch_size=8, epochs=25, patience=6, augment=True),
        description="64x48 toy model for tests and smoke runs (seconds)",
    ),
}


def get_preset(name: str) -> Preset:
    """A preset by name; ValueError naming the known ones otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(sorted(PRESETS))}") from None


def build_autoencoder(
    spec: ModelSpec, input_shape: tuple[int, int, int], seed: int | None = None
) -> Any:
    """A Keras autoencoder (H, W, C) → (H, W, C) with a sigmoid output, as the seed builds it;
    with ``seed`` its first weights are drawn from it, so one seed trains one model."""
    import keras
    from keras import layers

    if seed is not None:
        keras.utils.set_random_seed(seed)

    h, w, c = input_shape
    factor = spec.stride ** len(spec.filters)
    if h % factor or w % factor:
        raise ValueError(
            f"input {w}x{h} must be divisible by stride**layers = {factor} so the decoder "
            "reconstructs the same size"
        )
    inputs = keras.Input(shape=input_shape, name="frame")
    x = inputs
    for i, n in enumerate(spec.filters):
        x = layers.Conv2D(n, spec.kernel, strides=spec.stride, padding="same", name=f"enc{i}")(x)
        if spec.batch_norm:
            x = layers.BatchNormalization(name=f"enc{i}_bn")(x)
        x = layers.Activation(spec.activation, name=f"enc{i}_act")(x)
    conv_shape = tuple(int(v) for v in x.shape[1:])
    if spec.dense_latent:
        x = layers.Flatten(name="flatten")(x)
        x = layers.Dense(spec.latent + spec.latent, name="latent")(x)
        x = layers.Dense(conv_shape[0] * conv_shape[1] * conv_shape[2], name="expand")(x)
        x = layers.Reshape(conv_shape, name="reshape")(x)
    else:
        x = layers.Conv2D(spec.latent, 1, name="latent")(x)
        x = layers.Activation(spec.activation, name="latent_act")(x)
    for i, n in enumerate(reversed(spec.filters)):
        x = layers.Conv2DTranspose(
            n, spec.kernel, strides=spec.stride, padding="same", name=f"dec{i}"
        )(x)
        if spec.batch_norm:
            x = layers.BatchNormalization(name=f"dec{i}_bn")(x)
        x = layers.Activation(spec.activation, name=f"dec{i}_act")(x)
    outputs = layers.Conv2D(
        c, spec.kernel, padding="same", activation="sigmoid", name="reconstruction"
    )(x)
    return keras.Model(inputs, outputs, name="autoencoder")


def compile_autoencoder(model: Any, train: TrainSpec) -> Any:
    """Compile with Adam; Keras 2's ``decay`` (the seed's) becomes an InverseTimeDecay schedule."""
    import keras

    lr: Any = train.learning_rate
    if train.lr_decay > 0:
        lr = keras.optimizers.schedules.InverseTimeDecay(
            train.learning_rate, decay_steps=1, decay_rate=train.lr_decay
        )
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=lr), loss=train.loss)
    return model
