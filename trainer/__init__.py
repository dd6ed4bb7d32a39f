"""The trainer: fit a conv autoencoder on frames of normal printing, export a TFLite bundle.

Library use (what ``python -m trainer`` does, step by step):

- ``trainer.data``: ``find_frames(data, normal, anomalous, session_pattern) -> list[Frame]``,
  ``split_frames(frames, split, val_sessions, test_sessions, contamination=, seed=) -> Split``,
  ``load_frames(frames, preprocess) -> Loaded`` (uint8 model inputs; unreadable files skipped).
- ``trainer.model``: ``PRESETS`` / ``get_preset(name) -> Preset`` (plain dataclasses:
  Preprocess, Scoring, ModelSpec, TrainSpec), ``build_autoencoder(spec, shape)``,
  ``compile_autoencoder(model, train_spec)``.
- ``trainer.train``: ``fit(model, x_fit, x_val, train_spec, checkpoint) -> FitResult``.
- ``trainer.evaluate``: ``score_frames(reconstruct, x, scoring) -> Scored``,
  ``keras_reconstructor(model)``, ``image_metrics(normal, anomalous, threshold)``, ``seed_review``.
- ``trainer.calibrate``: ``threshold_for_fpr``, ``threshold_quantile``, ``f1_best_threshold``,
  ``normal_stats`` (pure numpy).
- ``trainer.export``: ``convert(model, quantization)``, ``write_bundle(tflite, folder, meta)``,
  ``parity_check(bundle, model, paths)``, ``tflite_reconstructor(bundle)``.
- ``trainer.crossfit``: models that each leave prints out; ``held_out`` scores every print by the
  one that never saw it; ``calibrate_on`` sets the per-print threshold on those replays;
  ``shipped_threshold`` takes the higher of that and the fitted model's validation frames'.
- ``trainer.heldout``: ``replays(...)`` and ``judgement(...)``: what the daemon would do on held-out
  prints (per-print baseline and ``consecutive`` rule), the report's headline.
- ``trainer.pipeline``: ``run(Options(...)) -> RunResult`` (the whole run, as the CLI does it;
  ``split="all"``, the default, makes the model to deploy).

TensorFlow is imported only inside the functions that need it.
"""
