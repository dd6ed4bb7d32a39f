"""report.json (machine-readable, stable keys) and report.md (for a person) of one run."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from trainer.model import Preset
from trainer.train import FitResult
from watchdog.detection.bundle import NormalStats
from watchdog.detection.calibration import GUARD_PRINTS


def build(
    *,
    protocol: str,
    sessions: dict[str, list[str]],
    notes: list[str],
    preset: Preset,
    n_train: int,
    n_val: int,
    n_test_normal: int,
    n_test_anomalous: int,
    n_contamination: int,
    metrics: dict[str, float | None],
    threshold: float,
    threshold_rule: str,
    target_fpr: float,
    val_false_alarm_rate: float,
    f1_best: dict[str, float] | None,
    seed_review: dict[str, Any],
    fitted: FitResult,
    skipped: list[str],
    parity: dict[str, float],
    quantization: dict[str, dict[str, Any]],
    bundle_quantization: str,
    normal_stats: NormalStats,
    daemon: dict[str, Any],
    test_normal_from: str,
) -> dict[str, Any]:
    """The report as a JSON-ready dict. ``daemon`` (``trainer.heldout.judgement``) is what the
    daemon would do on held-out prints; the top-level metrics are absolute single-frame scores."""
    return {
        "daemon": daemon,
        "protocol": protocol,
        "sessions": sessions,
        "notes": notes,
        "preset": preset.name,
        "preset_params": _plain(dataclasses.asdict(preset)),
        "n_train": n_train,
        "n_val": n_val,
        "n_test_normal": n_test_normal,
        "test_normal_from": test_normal_from,
        "n_test_anomalous": n_test_anomalous,
        "n_contamination": n_contamination,
        **metrics,
        "threshold": threshold,
        "threshold_rule": threshold_rule,
        "target_fpr": target_fpr,
        "val_false_alarm_rate": val_false_alarm_rate,
        "f1_best": f1_best,
        "seed_review": seed_review,
        "train_seconds": round(fitted.seconds, 1),
        "epochs_run": fitted.epochs_run,
        "best_epoch": fitted.best_epoch,
        "best_val_loss": fitted.best_val_loss,
        "skipped_files": len(skipped),
        "skipped": skipped,
        "parity": parity,
        "bundle_quantization": bundle_quantization,
        "quantization": quantization,
        "normal_stats": dataclasses.asdict(normal_stats),
    }


def _plain(obj: Any) -> Any:
    """JSON-safe: tuples to lists, NaN/inf to None."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _f(v: Any, digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _pct(v: Any) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def _daemon_section(d: dict[str, Any], figures: set[str]) -> list[str]:
    """What the daemon would do on the held-out prints: the report's headline."""
    off = d.get("adaptation_off")
    shown = d.get("shown") or {}  # none: the bundle has no per-print adaptation
    # from the bundle's own keys: a report with no print replayed still says what the daemon does
    judges = [
        *(["the start guard"] if shown.get("guard", 0) > 0 else []),
        *(
            ["the start's own judgement" + (", below" if d.get("start") else "")]
            if d.get("start") or shown.get("early_threshold", 0) > 0
            else []
        ),
    ]
    start = f"flagged only by {' and '.join(judges)}" if judges else "never flagged: no start guard"
    first = (
        f"its first frames calibrate the print's baseline ({start}), every later frame"
        if shown
        else "every frame, its first ones included,"
    )
    lines = [
        "## What the daemon would do on prints the model never saw",
        "",
        *([f"**Per-print adaptation is off: {off}.**", ""] if off else []),
        f"Each held-out print is replayed frame by frame as the daemon runs it: {first} is flagged above the exported threshold "
        f"({d['threshold_rule']}), and {d['consecutive']} flagged frames in a row, the start's "
        f"included, pause the print (the daemon's default rule). Each known failure is replayed "
        f"after a held-out print's calibration frames, so it is judged against another print's "
        f"start: a failure inside a print changes its picture less, and is caught less often "
        f"than its recall here says. {d['note'][0].upper() + d['note'][1:]}.",
        "",
    ]
    if not d["replays"]:
        return [*lines, "No print could be replayed.", ""]
    lines += [
        f"- **Failure frames flagged (recall): {_pct(d['recall'])}**; failures paused: "
        f"**{d['failures_paused']} of {d['failures_replayed']}** replays{_replays_of(d)}",
        f"- **Normal frames flagged (false alarms): {_pct(d['false_alarm_rate'])}**; good prints paused "
        f"by mistake: **{d['normal_prints_paused']} of {d['held_out_prints']}**",
        *_unseen_line(d.get("unseen")),
        "",
        *_replay_table(d["replays"], "calibration frames"),
    ]
    figure = (
        ["", "Figure: replay.png (calibration shaded, flagged frames in red, the pause as a line)."]
        if "replay.png" in figures
        else []
    )
    return [*lines, *figure, "", *_shown_section(d), *_start_section(d.get("start"))]


def _unseen_line(u: dict[str, Any] | None) -> list[str]:
    """The false alarms of a print no threshold was set on (``pipeline._unseen``): the line
    above counts them on the frames that set the threshold, at most the target by design."""
    if not u:
        return []
    return [
        "- **A new print, as far as these prints tell: "
        f"{_pct(u['false_alarm_rate'])} of its good frames flagged**; good prints paused "
        f"by mistake: **{u['normal_prints_paused']} of {u['prints']}**. The line above counts "
        "false alarms on the frames that set the threshold (low by construction); here each "
        "print is judged with the thresholds and start guard the other prints set, as a print "
        "of tomorrow is "
        "(if anything too often: the shipped threshold may be higher). Few prints make it a "
        "rough figure: more recorded prints make both better."
        + _unguarded(u.get("unguarded", 0), u["prints"])
    ]


def _unguarded(n: int, prints: int) -> str:
    """The prints of the line above whose start no guard judged (too few others set one)."""
    if not n:
        return ""
    return (
        f" The start guard judged {'none' if n == prints else f'{prints - n}'} of these "
        f"{prints} starts: fewer than {GUARD_PRINTS} other prints set none (the shipped one was "
        "set with each of them among its prints, and would never pause it)."
    )


def _shown_section(d: dict[str, Any]) -> list[str]:
    """The thresholds above as the daemon shows them: its page, Home Assistant, ``replay``
    and log put every judged score on the bundle threshold's scale, so the report's per-print
    threshold never appears there, and an owner comparing the two read it as another model."""
    shown = d.get("shown")
    if not shown:
        return []
    start = d.get("start") or {}
    of_start = (
        f"; so does a start frame that reaches the start's threshold ({start['threshold']:.4g}, "
        "below)"
        if start.get("threshold") is not None
        else ""
    )
    guard = (
        f" A frame of a print's first {shown['frames']} shows its absolute score, against the "
        f"start guard ({shown['guard']:.4g})."
        if shown["guard"] > 0
        else ""
    )
    return [
        f"**The scores the daemon shows.** The page, Home Assistant, `replay` and the daemon's "
        f"log show a judged frame's score scaled so that the threshold is the bundle's, "
        f"**{shown['threshold']:.4g}** (the absolute threshold below): a frame that changed "
        f"{shown['adapted']:.4g} from its print's start, the per-print threshold above, shows "
        f"as {shown['threshold']:.4g}{of_start}.{guard}",
        "",
    ]


def _start_section(s: dict[str, Any] | None) -> list[str]:
    """How the same prints' starts are judged against their first frames."""
    if not s:
        return []
    lines = [
        "### The start of a print",
        "",
        f"While a print's start is learnt, each frame after its first {s['first_frames']} is "
        f"judged against them (threshold {s['threshold']:.4g}, matched to their light when the "
        "model matches light). The same held-out prints' starts, and each known failure beginning right after "
        "those first frames:",
        "",
        f"- Good starts: **{_pct(s['good_frames_flagged'])}** of their judged frames flagged; "
        f"starts paused by mistake: **{s['good_starts_paused']} of {s['good_starts']}**",
        f"- Failures beginning during the start paused: **{s['failures_paused']} of "
        f"{s['failures_replayed']}** replays{_replays_of(s)}",
        "",
        *_replay_table(s["replays"], "first frames"),
        "",
    ]
    return lines


def _replays_of(d: dict[str, Any]) -> str:
    """What the failure replays are: each failed print after each held-out print's start (a
    report of older runs has no count of failed prints)."""
    failed, held = d.get("failed_prints"), d.get("held_out_prints", d.get("good_starts"))
    if not failed or not held:
        return ""
    parts = d.get("good_replays", held)  # a print resumed is replayed part by part
    each = f"{parts} parts of {held}" if parts != held else f"{held}"
    return (
        f" ({failed} failed print{'s' if failed != 1 else ''}, each after each of {each} "
        f"held-out print{'s' if held != 1 else ''})"
    )


def _replay_table(replays: list[dict[str, Any]], learnt: str) -> list[str]:
    """One row per replay: frames learnt (``learnt`` names them), judged, flagged, the pause."""
    lines = [
        f"| print | {learnt} | judged frames | flagged | paused after |",
        "|---|---|---|---|---|",
    ]
    for r in replays:
        to = r["frames_to_pause"]
        pause = "never" if to is None else "during its start" if to <= 0 else f"{to} judged frames"
        lines.append(
            f"| {r['print']}{' (failure)' if r['failure'] else ''} | {r['calibration_frames']} | "
            f"{r['judged_frames']} | {r['flagged_frames']} | {pause} |"
        )
    return lines


FIGURES = {
    "replay.png": "replay.png (the daemon's replays)",
    "loss.png": "loss.png",
    "reconstructions.png": "reconstructions.png",
    "anomalies.png": "anomalies.png (absolute)",
    "scores.png": "scores.png (absolute)",
}


def _figures_line(figures: set[str]) -> str:
    shown = [text for name, text in FIGURES.items() if name in figures]
    return f"Figures: {', '.join(shown)}." if shown else "No figures (--no-plots)."


def markdown(rep: dict[str, Any], figures: set[str] | None = None) -> str:
    """A short human summary of report.json: the daemon's judgement first, absolute figures
    after; ``figures``: the pictures the run drew, which it names (None: all of them)."""
    figures = set(FIGURES) if figures is None else figures
    s = rep["sessions"]
    r = rep["seed_review"]
    lines = [
        f"# Training run: preset `{rep['preset']}`",
        "",
        *_daemon_section(rep["daemon"], figures),
        "## Data",
        "",
        f"- Protocol: **{rep['protocol']}**",
        f"- Sessions: fit {s.get('fit')}, validation {s.get('val')}, test {s.get('test')}, "
        f"anomalous {s.get('anomalous')}",
        f"- Frames: {rep['n_train']} fit ({rep['n_contamination']} of them anomalous contamination), "
        f"{rep['n_val']} validation, {rep['n_test_normal']} normal test, "
        f"{rep['n_test_anomalous']} anomalous test; {rep['skipped_files']} unreadable file(s) skipped",
        *[f"- Note: {n}" for n in rep["notes"]],
        "",
        "## Absolute scores (single frames, without the per-print baseline)",
        "",
        "What `python -m watchdog score` reports for one image: each frame against the one absolute "
        "threshold, with no baseline of its print. A new print rarely looks like the prints the model "
        "fitted, so these figures understate what the daemon catches when the bundle has per-print "
        "adaptation (above).",
        "",
        "| metric | value |",
        "|---|---|",
        f"| image AUROC | {_f(rep['image_auroc'])} |",
        f"| average precision | {_f(rep['average_precision'])} |",
        f"| threshold | {rep['threshold']:.6g} ({rep['threshold_rule']}) |",
        f"| recall at threshold | {_f(rep['recall_at_threshold'])} |",
        f"| false-alarm rate at threshold (normal frames from {rep['test_normal_from']}) "
        f"| {_f(rep['false_alarm_rate_at_threshold'])} |",
        f"| false-alarm rate at threshold (validation) | {_f(rep['val_false_alarm_rate'])} |",
        f"| top-{100 * (1 - r['quantile']):.0f}% review (the original blog post's check: the "
        f"{100 * (1 - r['quantile']):.0f}% highest-scoring {r.get('on', '')} flagged) | "
        f"{r['found']} of {r['of']} failures among the {r['flagged']} flagged |",
        f"| training | {rep['train_seconds']} s, {rep['epochs_run']} epochs, best epoch {rep['best_epoch']} |",
    ]
    if rep.get("f1_best"):
        f1 = rep["f1_best"]
        # --use-f1-threshold: the threshold above is this one, or (a quantized bundle) its own
        # model's F1-best, where this row is the float32 model's
        used = "not used"
        if rep["threshold_rule"].startswith("f1-best"):
            same = abs(rep["threshold"] - f1["threshold"]) <= 1e-9 * max(1.0, f1["threshold"])
            used = (
                "used: optimistic"
                if same
                else "the float32 model's: the threshold above is the shipped model's own"
            )
        lines.append(
            f"| F1-best threshold (on test frames, {used}) | {f1['threshold']:.6g}: F1 {f1['f1']:.3f}, "
            f"recall {f1['recall']:.3f}, precision {f1['precision']:.3f} |"
        )
    lines += [
        "",
        "## Export",
        "",
        "| model | size | AUROC | recall | false alarms |",
        "|---|---|---|---|---|",
    ]
    for name, q in rep["quantization"].items():
        lines.append(
            f"| {name} | {q['size_bytes'] / 1e6:.2f} MB | {_f(q.get('image_auroc'))} | "
            f"{_f(q.get('recall_at_threshold'))} | {_f(q.get('false_alarm_rate_at_threshold'))} |"
        )
    p = rep["parity"]
    # the parity is the float32 export's: a quantized model differs from Keras by design, its
    # own figures are its row of the table above
    checked = (
        "TFLite"
        if rep["bundle_quantization"] == "float32"
        else "the float32 export (bundle-float32/), not the bundle's own model,"
    )
    lines += [
        "",
        f"Bundle model: {rep['bundle_quantization']}. Parity ({checked} through "
        f"watchdog.detection.model.FrameScorer vs Keras, {p['frames']} frames): max relative "
        f"score difference {p['max_relative_score_difference']:.2g}, max pixel difference "
        f"{p['max_pixel_difference']:.2g}.",
        "",
        f"{_figures_line(figures)} Bundle: bundle/.",
        "",
    ]
    return "\n".join(lines)


def write(rep: dict[str, Any], run_dir: Path) -> None:
    """Write report.json and report.md into the run folder."""
    (run_dir / "report.json").write_text(json.dumps(_plain(rep), indent=2) + "\n")
    # a print's name is a file name, which need not be UTF-8
    drawn = {p.name for p in run_dir.glob("*.png")}
    (run_dir / "report.md").write_text(markdown(rep, drawn), errors="backslashreplace")
