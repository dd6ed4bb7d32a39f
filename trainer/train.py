"""Fit the autoencoder: tf.data pipeline, progress display, early stopping, best checkpoint."""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainer.model import TrainSpec

logger = logging.getLogger(__name__)


@dataclass
class FitResult:
    """What training produced besides the weights (which are in the model, best restored)."""

    history: dict[str, list[float]]
    seconds: float
    epochs_run: int
    best_epoch: int
    best_val_loss: float


def _augmenter(spec: TrainSpec) -> Any:
    """Light, label-free augmentation: small shifts, zoom and brightness (framing moves)."""
    import keras

    return keras.Sequential(
        [
            keras.layers.RandomTranslation(spec.shift, spec.shift, fill_mode="reflect"),
            keras.layers.RandomZoom(spec.zoom, spec.zoom, fill_mode="reflect"),
            keras.layers.RandomBrightness(spec.brightness, value_range=(0.0, 1.0)),
        ],
        name="augment",
    )


def make_dataset(
    x: np.ndarray, batch_size: int, shuffle: bool, augment: TrainSpec | None = None, seed: int = 0
) -> Any:
    """uint8 frames (N, H, W, C) → batches of (input, target) float32 in [0, 1]."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices(x)
    if shuffle:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(lambda b: tf.cast(b, tf.float32) / 255.0, num_parallel_calls=tf.data.AUTOTUNE)
    if augment is not None:
        aug = _augmenter(augment)
        ds = ds.map(lambda b: tf.clip_by_value(aug(b, training=True), 0.0, 1.0),
                    num_parallel_calls=tf.data.AUTOTUNE)
    return ds.map(lambda b: (b, b)).prefetch(tf.data.AUTOTUNE)


def fit(
    model: Any,
    x_fit: np.ndarray,
    x_val: np.ndarray,
    spec: TrainSpec,
    checkpoint: Path,
    seed: int = 0,
    verbose: int | None = None,
) -> FitResult:
    """Train on uint8 frames; early-stop on val_loss and end with the best weights loaded.

    ``checkpoint`` must end in ``.weights.h5``; it holds the best weights seen.
    """
    import keras

    keras.utils.set_random_seed(seed)
    if verbose is None:
        verbose = 1 if sys.stderr.isatty() else 2  # a progress bar only on a terminal
    train_ds = make_dataset(x_fit, spec.batch_size, True, spec if spec.augment else None, seed)
    val_ds = make_dataset(x_val, spec.batch_size, False)
    callbacks: list[Any] = [
        keras.callbacks.ModelCheckpoint(
            str(checkpoint), monitor="val_loss", save_best_only=True, save_weights_only=True
        )
    ]
    if spec.patience > 0:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=spec.patience, restore_best_weights=True
            )
        )
    t0 = time.perf_counter()
    hist = model.fit(  # shuffle=False: the dataset shuffles itself (Keras would warn otherwise)
        train_ds, validation_data=val_ds, epochs=spec.epochs, callbacks=callbacks, verbose=verbose, shuffle=False
    )
    seconds = time.perf_counter() - t0
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    val_loss = history.get("val_loss", [float("nan")])
    best = int(np.nanargmin(val_loss)) if val_loss else 0
    if checkpoint.exists():
        model.load_weights(str(checkpoint))
    logger.info(
        "trained %d epochs in %.0f s; best val_loss %.5f at epoch %d",
        len(val_loss), seconds, val_loss[best], best + 1,
    )
    return FitResult(history, seconds, len(val_loss), best + 1, float(val_loss[best]))


def predict(model: Any, x: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Reconstructions (float32, [0, 1]) of uint8 frames."""
    if len(x) == 0:
        return np.zeros(x.shape, np.float32)
    ds = make_dataset(x, batch_size, False).map(lambda a, b: a)
    return np.asarray(model.predict(ds, verbose=0), dtype=np.float32)
