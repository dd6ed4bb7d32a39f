"""A camera that shows no movement during a print's start, through the daemon's own loop
(not run in CI).

    .venv/bin/python benchmarks/still_start.py [--data DIR] [--bundle DIR] [--json FILE]

Each Kaggle normal print replayed through ``python -m watchdog replay`` (its simulated owner
resumes right after each pause) as recorded, and with its first 30 frames replaced: a
snapshot URL stuck on the print's first picture, that picture as a live camera shows it while
the printer heats (its sensor noise, different in each frame; also for the first 12 frames
only), a black picture (lights off, lens covered), a dim one (x0.3: the room's light switched
on after the start); and a feed stuck on one picture for 30 frames in the middle of the print
(from frame 60). Every pause is a good print
stopped. Then whether a failure is still caught after a dim start: each failed print's
material pasted frame by frame (``inscene.pasted_sequence``, in the watched bottom half) into
the good print from frame 60 on, after its start as recorded and after a dim start; frames
from the failure's first frame to the pause. And whether a failure during the print's start
is caught after the printer heated: the material pasted from frame 12 of the print as
recorded (its first 10 frames the start's yardstick), and from frame 24 after its first
picture live for 12 frames (two minutes of heating, then 12 frames of printing): frames from
the failure's first frame to the pause (``--start-failures-only``: these rows alone). And each
good print after its first picture, live, for 0 to 45 frames (a printer heating), through the
daemon's ``Detector`` and ``decide``: where it is paused, the noise as given and through JPEG
(``--heating-only``). Default bundle: the shipped one (it saw these prints: this measures what the daemon
does with such a start, not detection quality). Skips (exit 0) when the data folder is absent.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.inscene import pasted_sequence  # noqa: E402
from benchmarks.time_to_pause import (  # noqa: E402
    bundle_replay_options,
    no_kaggle_data,
    paused_at,
    replay,
    sessions_in_time_order,
    write_bundle_rows,
    write_frames,
)
from watchdog.image_files import read_bgr_file  # noqa: E402

START = 30  # frames: the start the default bundle learns
STUCK_AT = 60  # the mid-print freeze begins here
FAILURE_AT = 60  # a failure's material is pasted from here on

Edit = Callable[[list[np.ndarray]], list[np.ndarray]]


def _start(change: Callable[[np.ndarray], np.ndarray]) -> Edit:
    return lambda frames: [change(f) for f in frames[:START]] + frames[START:]


def _noisy(frame: np.ndarray, i: int, sigma: float = 2.0) -> np.ndarray:
    """``frame`` as a live camera shows a still scene: its sensor noise differs each frame."""
    noise = np.random.default_rng(i).normal(0.0, sigma, frame.shape)
    return np.clip(frame.astype(np.float32) + noise, 0, 255).astype(np.uint8)


HEATING = "its first picture, live, for its first 12 frames (2 minutes heating)"

CASES: dict[str, Edit] = {
    "as recorded": lambda frames: frames,
    "stuck on its first picture for its start": lambda frames: [frames[0]] * START + frames[START:],
    "its first picture, live (sensor noise), for its start: heating": lambda frames: (
        [_noisy(frames[0], i) for i in range(START)] + frames[START:]
    ),
    HEATING: lambda frames: [_noisy(frames[0], i) for i in range(12)] + frames[12:],
    "black for its start": _start(np.zeros_like),
    "dim (x0.3) for its start": _start(lambda f: cv2.convertScaleAbs(f, alpha=0.3, beta=0)),
    "stuck on one picture mid-print (30 frames)": lambda frames: (
        frames[:STUCK_AT] + [frames[STUCK_AT]] * START + frames[STUCK_AT + START :]
    ),
}


FAILURE_STARTS = ("as recorded", "dim (x0.3) for its start")
AFTER_START = tuple((start, FAILURE_AT) for start in FAILURE_STARTS)
# a failure during the start: (the start, the failure's first frame): 2 minutes of printing in
START_FAILURES = (("as recorded", 12), (HEATING, 24))


def with_failure(
    frames: list[np.ndarray], failure: list[np.ndarray], onset: int = FAILURE_AT
) -> list[np.ndarray]:
    """The print's BGR frames up to ``onset``, then as many more as the failed print has
    frames with its material pasted into their bottom half (the bundle's watched region)."""
    good = np.stack(frames)
    half = good.shape[1] // 2
    bottom = np.ascontiguousarray(good[onset:, half:, :, ::-1])  # RGB, as inscene reads
    material = np.ascontiguousarray(np.stack(failure)[:, half:, :, ::-1])
    pasted = pasted_sequence(bottom, material, seed=0)
    out = good[: onset + len(pasted)].copy()
    out[onset:, half:] = pasted[..., ::-1]
    return list(out)


def failure_rows(
    normal: dict[str, list[Path]],
    failed: dict[str, list[Path]],
    bundle: Path,
    tmp: Path,
    starts: tuple[tuple[str, int], ...] = AFTER_START,
) -> list[dict[str, object]]:
    """Frames to pause each failure from its onset after its start: ``starts`` holds (a case
    of ``CASES``, the failure's first frame)."""
    rows: list[dict[str, object]] = []
    failures = {name: [read_bgr_file(p) for p in paths] for name, paths in sorted(failed.items())}
    print("\n| print | start | failure | onset | pauses (at frame) |\n|---|---|---|---|---|")
    for session, paths in sorted(normal.items()):
        frames = [read_bgr_file(path) for path in paths]
        for start, onset in starts:
            for name, failure in failures.items():
                work = tmp / f"{session}-failure-{onset}-{len(rows)}"
                edited = with_failure(CASES[start](frames), failure, onset)
                paused = paused_at(replay(bundle, write_frames(edited, work / "src"), work))
                rows.append(
                    {
                        "print": session,
                        "start": start,
                        "failure": name,
                        "onset": onset,
                        "paused_at": paused,
                    }
                )
                at = ", ".join(map(str, paused)) or "-"
                print(
                    f"| {session} | {start} | {name} | {onset} | {len(paused)} ({at}) |", flush=True
                )
    return rows


HEATING_LENGTHS = range(0, 46)  # frames of a printer heating before it prints: up to 7.5 min
AFTER_HEATING = 45  # frames of the print replayed after them: its start and 15 judged frames


def _jpeg_noisy(frame: np.ndarray, i: int) -> np.ndarray:
    """``_noisy`` as a camera sends it: its noise (2 grey levels) through JPEG at quality 70,
    which leaves a few percent of the pixels moving past the still rule's bar now and then."""
    ok, data = cv2.imencode(".jpg", _noisy(frame, i), [cv2.IMWRITE_JPEG_QUALITY, 70])
    decoded = cv2.imdecode(data, cv2.IMREAD_COLOR)
    assert ok and decoded is not None
    return np.asarray(decoded)


def _jpeg_low(frame: np.ndarray, i: int) -> np.ndarray:
    """A clean camera's still scene at a low JPEG quality (noise of 1 grey level, quality 40):
    whole blocks shift by a few levels from frame to frame."""
    ok, data = cv2.imencode(".jpg", _noisy(frame, i, 1.0), [cv2.IMWRITE_JPEG_QUALITY, 40])
    decoded = cv2.imdecode(data, cv2.IMREAD_COLOR)
    assert ok and decoded is not None
    return np.asarray(decoded)


def heating_sweep(
    normal: dict[str, list[Path]],
    bundle: Path,
    live: Callable[[np.ndarray, int], np.ndarray],
    told: bool = False,
) -> list[dict[str, object]]:
    """Each good print's first picture, live, for each of ``HEATING_LENGTHS`` frames, then
    the print from there, through the daemon's ``Detector`` and ``decide`` (a print set to
    notify: nobody resumes it): the frames where it is paused. Every pause is a good print
    stopped; the start's first frames are its yardstick, and one of still bed paused it. A
    print paused is replayed again from the same frame without the heating: whether it is
    paused as recorded from there (the start's own false alarms). ``told``: the printer's
    API says it heats during the heating frames (``Detector.heating``), as the watcher tells
    the detector."""
    from watchdog.detection import decide
    from watchdog.detection.bundle import Bundle
    from watchdog.detection.detector import Detector

    detector = Detector.for_bundle(Bundle.load(bundle))
    settings = decide.Settings(consecutive=3, cooldown_s=90.0)
    rows: list[dict[str, object]] = []
    print("\n| print | heating frames where a good print is paused (at frame) |\n|---|---|")
    for session, paths in sorted(normal.items()):
        frames = [read_bgr_file(p) for p in paths[: max(HEATING_LENGTHS) + AFTER_HEATING]]
        paused = []
        for heating in HEATING_LENGTHS:
            detector.relearn()
            shown = [live(frames[0], i) for i in range(heating)] + frames[heating:]
            flags = []
            for i, f in enumerate(shown[: heating + AFTER_HEATING]):
                detector.heating = told and i < heating
                flags.append(detector.observe(f).anomalous)
            detector.heating = False
            fired = decide.fires(flags, settings, 10.0)
            row: dict[str, object] = {"print": session, "heating": heating, "paused_at": fired}
            if fired:  # the print as recorded from the same frame, without the heating
                detector.relearn()
                flags = [detector.observe(f).anomalous for f in frames[heating:][:AFTER_HEATING]]
                row["unheated_paused_at"] = decide.fires(flags, settings, 10.0)
            rows.append(row)
            paused += [f"{heating} ({fired[0]})"] if fired else []
        print(f"| {session} | {', '.join(paused) or '-'} |", flush=True)
    return rows


def heating_sweeps(
    normal: dict[str, list[Path]], bundle: Path
) -> dict[str, list[dict[str, object]]]:
    """The heating sweep, by its key in the results: the heating's noise as given, through
    JPEG, through JPEG with the printer saying it heats, and a clean camera's at a low JPEG
    quality."""
    return {
        "heating": heating_sweep(normal, bundle, _noisy),
        "heating_jpeg": heating_sweep(normal, bundle, _jpeg_noisy),
        "heating_jpeg_told": heating_sweep(normal, bundle, _jpeg_noisy, told=True),
        "heating_jpeg_low": heating_sweep(normal, bundle, _jpeg_low),
    }


def main(argv: list[str] | None = None) -> int:
    parser = bundle_replay_options(__doc__.splitlines()[0])
    parser.add_argument(
        "--start-failures-only",
        action="store_true",
        help="only the failures during the start (the rows compared with an earlier commit)",
    )
    parser.add_argument(
        "--heating-only",
        action="store_true",
        help="only good prints after heating starts of 0 to 45 frames (compared likewise)",
    )
    args = parser.parse_args(argv)
    if no_kaggle_data(args.data):
        return 0
    normal, failed = sessions_in_time_order(args.data)
    if args.heating_only:
        sweeps = heating_sweeps(normal, args.bundle)
        if args.json:
            write_bundle_rows(args.json, args.bundle, [], **sweeps)
        return 0
    if args.start_failures_only:
        with tempfile.TemporaryDirectory() as tmp:
            during = failure_rows(normal, failed, args.bundle, Path(tmp), START_FAILURES)
        if args.json:
            write_bundle_rows(args.json, args.bundle, [], start_failures=during)
        return 0
    rows: list[dict[str, object]] = []
    print("| print | start | pauses (at frame) |")
    print("|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for session, paths in sorted(normal.items()):
            frames = [read_bgr_file(path) for path in paths]
            for name, edit in CASES.items():
                work = Path(tmp) / f"{session}-{len(rows)}"
                # (a stuck feed repeats the same bytes)
                files = write_frames(edit(frames), work / "src")
                paused = paused_at(replay(args.bundle, files, work))
                rows.append(
                    {"print": session, "frames": len(frames), "case": name, "paused_at": paused}
                )
                at = ", ".join(map(str, paused)) or "-"
                print(
                    f"| {session} ({len(frames)} frames) | {name} | {len(paused)} ({at}) |",
                    flush=True,
                )
        failures = failure_rows(normal, failed, args.bundle, Path(tmp))
        during = failure_rows(normal, failed, args.bundle, Path(tmp), START_FAILURES)
    sweeps = heating_sweeps(normal, args.bundle)
    if args.json:
        write_bundle_rows(
            args.json, args.bundle, rows, failures=failures, start_failures=during, **sweeps
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
