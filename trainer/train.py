"""Fit the autoencoder: tf.data pipeline, progress display, early stopping, best checkpoint."""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

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
    x: np.ndarray,
    batch_size: int,
    shuffle: bool,
    augment: TrainSpec | None = None,
    seed: int = 0,
    denoise: float = 0.0,
    synthetic_parts: float = 0.0,
) -> Any:
    """uint8 frames (N, H, W, C) → batches of (input, target) float32 in [0, 1]; with
    ``synthetic_parts`` that share of frames (input and target) shows drawn clean parts
    (``trainer.synthetic_parts``); with ``denoise`` that share of inputs carries pasted
    foreign material (``trainer.denoise``)."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices(x)
    if shuffle:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(
        lambda b: tf.cast(b, tf.float32) / 255.0, num_parallel_calls=tf.data.AUTOTUNE
    )
    if augment is not None:
        aug = _augmenter(augment)
        # one call at a time: the augmentation's random draws come in the same order every run
        ds = ds.map(
            lambda b: tf.clip_by_value(aug(b, training=True), 0.0, 1.0),
            num_parallel_calls=1,
        )
    if synthetic_parts > 0:
        from trainer.synthetic_parts import draw_parts

        # each stage its own generator: the two stages run at once
        parts_rng = np.random.default_rng(seed)

        def drawn(b: Any) -> Any:
            out = tf.numpy_function(
                lambda v: draw_parts(v, parts_rng, synthetic_parts), [b], tf.float32, stateful=True
            )
            return tf.ensure_shape(out, b.shape)

        # one call at a time: the generator's draws stay in the same order every run
        ds = ds.map(drawn, num_parallel_calls=1)
    if denoise > 0:
        from trainer.denoise import paste_foreign

        rng = np.random.default_rng(seed)

        def pasted(b: Any) -> Any:
            noisy = tf.numpy_function(
                lambda v: paste_foreign(v, rng, denoise), [b], tf.float32, stateful=True
            )
            return tf.ensure_shape(noisy, b.shape), b

        # one call at a time: the generator's draws stay in the same order every run
        return ds.map(pasted, num_parallel_calls=1).prefetch(tf.data.AUTOTUNE)
    return ds.map(lambda b: (b, b)).prefetch(tf.data.AUTOTUNE)


def _progress_line(label: str, epochs: int, stream: TextIO) -> Any:
    """A Keras callback drawing one line per fit, rewritten at each epoch (Keras' own display
    prints a line or a bar per epoch: 30 lines per fit, four fits per run)."""
    import keras

    class ProgressLine(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            logs = logs or {}
            done = int(20 * (epoch + 1) / epochs)
            stream.write(
                f"\r{label}: [{'#' * done}{'.' * (20 - done)}] epoch {epoch + 1}/{epochs}"
                f"  loss {logs.get('loss', float('nan')):.4f}  val_loss {logs.get('val_loss', float('nan')):.4f} "
            )
            stream.flush()

        def on_train_end(self, logs: dict[str, float] | None = None) -> None:
            stream.write("\n")
            stream.flush()

    return ProgressLine()


def fit(
    model: Any,
    x_fit: np.ndarray,
    x_val: np.ndarray,
    spec: TrainSpec,
    checkpoint: Path,
    seed: int = 0,
    verbose: int | None = None,
    label: str = "fit",
) -> FitResult:
    """Train on uint8 frames; early-stop on val_loss and end with the best weights loaded.

    ``checkpoint`` must end in ``.weights.h5``; it holds the best weights seen. ``verbose``:
    None draws one progress line per fit on a terminal (``label`` names the fit), 0 nothing;
    either way one log line sums the fit up at its end.
    """
    import keras

    keras.utils.set_random_seed(seed)
    if verbose is None:
        verbose = 1 if sys.stderr.isatty() else 0
    train_ds = make_dataset(
        x_fit,
        spec.batch_size,
        True,
        spec if spec.augment else None,
        seed,
        spec.denoise,
        spec.synthetic_parts,
    )
    val_ds = make_dataset(x_val, spec.batch_size, False)
    callbacks: list[Any] = [
        keras.callbacks.ModelCheckpoint(
            str(checkpoint), monitor="val_loss", save_best_only=True, save_weights_only=True
        )
    ]
    if verbose:
        callbacks.append(_progress_line(label, spec.epochs, sys.stderr))
    if spec.patience > 0:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=spec.patience, restore_best_weights=True
            )
        )
    t0 = time.perf_counter()
    hist = model.fit(  # shuffle=False: the dataset shuffles itself (Keras would warn otherwise)
        train_ds,
        validation_data=val_ds,
        epochs=spec.epochs,
        callbacks=callbacks,
        verbose=0,
        shuffle=False,
    )
    seconds = time.perf_counter() - t0
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    val_loss = history.get("val_loss", [float("nan")])
    best = int(np.nanargmin(val_loss)) if val_loss else 0
    if checkpoint.exists():
        model.load_weights(str(checkpoint))
    logger.info(
        "%s: %d epochs in %.0f s; best val_loss %.5f at epoch %d",
        label,
        len(val_loss),
        seconds,
        val_loss[best],
        best + 1,
    )
    return FitResult(history, seconds, len(val_loss), best + 1, float(val_loss[best]))


def predict(model: Any, x: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Reconstructions (float32, [0, 1]) of uint8 frames."""
    if len(x) == 0:
        return np.zeros(x.shape, np.float32)
    ds = make_dataset(x, batch_size, False).map(lambda a, b: a)
    return np.asarray(model.predict(ds, verbose=0), dtype=np.float32)
