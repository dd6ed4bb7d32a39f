"""Render docs/quality.md from the committed benchmark results (benchmarks/results/*.json).

    .venv/bin/python benchmarks/qualitydoc.py          # rewrite docs/quality.md
    .venv/bin/python benchmarks/qualitydoc.py --check  # exit 1 if it is not current

The figures in the page are never typed by hand: each table is generated from the JSON a
benchmark wrote, and the page says the command that regenerates it. A test keeps the page
current with the committed results.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if (
    str(ROOT) not in sys.path
):  # run as a script: the tables of quality.py and framing.py are imported
    sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"
OUTPUT = ROOT / "docs" / "quality.md"

Json = dict[str, Any]


def _load(name: str) -> Json | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.is_file() else None


def _table(head: list[str], rows: Iterable[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _f(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _pause(v: int | None) -> str:
    return "never" if v is None else str(v)


def _missing(what: str, command: str) -> str:
    return f"_Not measured yet: run `{command}`._\n"


QUALITY_CMD = (
    ".venv/bin/python benchmarks/quality.py --skip-seed --json benchmarks/results/quality.json"
)
TTP_CMD = (
    ".venv/bin/python benchmarks/time_to_pause.py --json benchmarks/results/time_to_pause.json"
)
LASTING_CMD = (
    ".venv/bin/python benchmarks/lasting_change.py --json benchmarks/results/lasting_change.json"
)
LASTING_START_CMD = (
    ".venv/bin/python benchmarks/lasting_change.py --onset 15 "
    "--json benchmarks/results/lasting_change_in_start.json"
)
GUARD_CMD = ".venv/bin/python benchmarks/start_guard.py --json benchmarks/results/start_guard.json"
COST_CMD = ".venv/bin/python benchmarks/frame_cost.py --json benchmarks/results/frame_cost.json"
RUNS_CMD = (
    "make quality  # = benchmarks/quality.py --seeds 0,1,2 --json benchmarks/results/quality-detection.json "
    "and benchmarks/framing.py --json benchmarks/results/framing.json"
)


# --------------------------------------------------------------------------- sections


def unseen_prints(q: Json) -> str:
    default = q["methods"]["default"]["folds"]
    rows = [
        [
            f["held_out"],
            str(f["n_normal_scored"]),
            _f(f["auroc"]),
            _f(f.get("auroc_adapted")),
            _f(f["threshold"], 2),
            _pct(f["false_alarm_rate"]),
            _f(f["recall"], 2),
            str(f["false_pauses"]),
        ]
        for f in default
    ]
    out = [
        _table(
            [
                "held-out print",
                "frames scored",
                "AUROC (absolute)",
                "AUROC (the daemon's score)",
                "threshold",
                "frames above it",
                "recall on failures",
                "pauses",
            ],
            rows,
        )
    ]
    others = [
        [
            name,
            _f(_mean(m["folds"], "auroc")),
            _f(_mean(m["folds"], "auroc_adapted")),
            _pct(max(f["false_alarm_rate"] for f in m["folds"])),
            _f(min(f["recall"] for f in m["folds"]), 2),
        ]
        for name, m in q["methods"].items()
    ]
    out.append(
        "\nEvery method of the same run, on the same folds (worst fold for false alarms and recall). "
        "The `pca-` rows take their threshold from their own validation frames alone (no cross-fit), "
        "which is why one flags nothing and catches nothing:\n"
    )
    out.append(
        _table(
            [
                "method",
                "mean AUROC",
                "mean adapted AUROC",
                "worst frames above threshold",
                "worst recall",
            ],
            others,
        )
    )
    return "\n".join(out) + "\n"


def _mean(folds: list[Json], key: str) -> float | None:
    values = [f[key] for f in folds if key in f]
    return sum(values) / len(values) if values else None


def time_to_pause(q: Json, t: Json | None) -> str:
    default = q["methods"]["default"]["folds"]
    names = list(default[0]["frames_to_pause"])
    rows = [[f["held_out"], *(_pause(f["frames_to_pause"][n]) for n in names)] for f in default]
    out = [
        "Frames from a failed print's first frame to the pause, after the held-out print's start "
        "(library replay, the daemon's rule):\n",
        _table(["held-out print", *names], rows),
    ]
    if t is not None:
        rows = []
        for h, fold in t["folds"].items():
            for name, seq in fold["sequences"].items():
                rows.append(
                    [
                        h,
                        name,
                        _pause(seq.get("frames_to_pause")),
                        str(seq.get("pauses_before_onset", "–")),
                    ]
                )
        out += [
            "\nThrough `python -m watchdog replay` (the daemon's own loop, a bundle trained per fold):\n",
            _table(
                ["held-out print", "failed print", "frames to pause", "pauses before the failure"],
                rows,
            ),
            f"\nCommand: `{TTP_CMD}`",
        ]
    return "\n".join(out) + "\n"


def first_minutes(q: Json) -> str:
    default = q["methods"]["default"]["folds"]
    if not default[0].get("failing_from_start"):
        return "_Not in this run._\n"
    names = list(default[0]["failing_from_start"])
    rows = [
        [
            f["held_out"],
            *(
                f"{_pause(v['frames_to_pause'])} ({_pct(v['above'])} above)"
                for v in (f["failing_from_start"][n] for n in names)
            ),
        ]
        for f in default
    ]
    return (
        "A print that fails from its first frame: each Kaggle failed print replayed on its own, "
        "its start learnt as its baseline. Frames to pause, counted from the end of its start "
        "(share of the frames after its start above the threshold):\n\n"
        + _table(["model of fold", *names], rows)
        + "\n"
    )


def inside_a_print(q: Json) -> str:
    default = q["methods"]["default"]["folds"]
    names = list(default[0]["inscene_frames_to_pause"])
    rows = [
        [
            f["held_out"],
            str(f["inscene_onset_frame"]),
            _f(f["inscene_recall"], 2),
            _f(f["strings_recall"], 2),
            _f(f["pasted_recall"], 2),
            *(_pause(f["inscene_frames_to_pause"][n]) for n in names),
        ]
        for f in default
    ]
    return (
        "Real failure material (cut out of the failed prints) pasted into the held-out good print's own "
        "frames from the onset frame on, and thin synthetic strings. Pasted recall: each of the "
        "print's later frames with one piece of material of 40 to 1400 pixels of the 128x64 "
        "input (0.5% to 17%; larger pieces, a whole part, are left out):\n\n"
        + _table(
            [
                "held-out print",
                "onset frame",
                "frames above threshold",
                "strings recall",
                "pasted recall",
                *(f"frames to pause: {n}" for n in names),
            ],
            rows,
        )
        + "\n"
    )


def lighting(q: Json, lasting: Json | None, in_start: Json | None = None) -> str:
    default = q["methods"]["default"]["folds"]
    names = list(default[0]["lighting"])
    rows = [
        [
            f["held_out"],
            *(
                f"{_pct(v['above'])} above, pause {_pause(v['frames_to_pause'])}"
                for v in (f["lighting"][n] for n in names)
            ),
        ]
        for f in default
    ]
    out = [
        "A lasting change of the room's light from frame 100 of the held-out print:\n",
        _table(["held-out print", *names], rows),
    ]
    if lasting is not None:
        out += [
            "\nThrough `python -m watchdog replay` with the shipped bundle (fitted on these "
            "very prints: optimistic); the simulated owner resumes after each pause, which "
            "re-learns the print's look:\n",
            _lasting_table(lasting),
            f"\nCommand: `{LASTING_CMD}`",
        ]
    if in_start is not None:
        out += [
            "\nThe same changes during the print's start, while it is judged against its first "
            "frames (each matched to their light: the whole start's light is not known yet; see "
            "[decisions/start-judgement.md](decisions/start-judgement.md)):\n",
            _lasting_table(in_start),
            f"\nCommand: `{LASTING_START_CMD}`",
        ]
    noisy = [r for r in (lasting or {"rows": []})["rows"] if "noisy" in r["change"]]
    if noisy:
        paused = [r for r in noisy if r["pauses_after_at"]]
        out.append(
            f"\nA room left dim (x0.35) with the noise a camera adds in dim light paused "
            f"{len(paused)} of {len(noisy)} prints once from frame 100: the light matching "
            "brings the brightness back, not the noise, which the model reads as texture the "
            "print did not have (x0.35 alone, or the noise alone, alerted on none of the three "
            "in replays made by hand, not among these results). The owner's resume learns the "
            "noisy view; a light left on through the night avoids it."
        )
    if any(r["change"].startswith("glare") for r in (lasting or {"rows": []})["rows"]):
        out.append(
            "\nGlare (x2.5) drives about half of the picture to pure white: what is lost there "
            "no light matching brings back, and where the print's look had detail in it, the "
            "print can be paused once (the owner's resume learns the new view)."
        )
    return "\n".join(out) + "\n"


STILL_CMD = ".venv/bin/python benchmarks/still_start.py --json benchmarks/results/still_start.json"


def still_start(
    now: Json | None,
    before: Json | None,
    dim_before: Json | None = None,
    heated_before: Json | None = None,
    specks_before: Json | None = None,
) -> str:
    """Pauses of good prints whose start the camera showed without movement, with the daemon
    before a start that did not move was learnt again (the same script, an earlier commit);
    and failures after a dim start, with the daemon before a dim look was matched; the
    heating through JPEG, with the daemon before a moved pixel was counted with its
    neighbours (``specks_before``)."""
    if now is None:
        return _missing("a start without movement", STILL_CMD)

    def at(rows: Json, key: tuple[str, str]) -> str:
        found = [r["paused_at"] for r in rows["rows"] if (r["print"], r["case"]) == key]
        return f"{len(found[0])} ({', '.join(map(str, found[0])) or '-'})" if found else "–"

    keys = [(r["print"], r["case"]) for r in now["rows"]]
    rows = [
        [p, case, at(now, (p, case)), at(before, (p, case)) if before else "–"] for p, case in keys
    ]
    out = [
        "Each good print through `python -m watchdog replay` with the shipped bundle (its "
        "simulated owner resumes after each pause: every pause is a good print stopped), its "
        "first 30 frames (or 12) replaced by what a camera shows without movement: a stuck "
        "feed, a black picture, or a live camera's noise on a printer still heating. A start "
        "in which nothing but the camera's noise moved is learnt again until the camera shows "
        "a moving print ([decisions/still-start.md](decisions/still-start.md)); before, it "
        "was learnt as the print's look, and the first live picture after it paused the "
        "print:\n",
        _table(
            ["print", "start", "pauses (at frame)", "before (learnt as the print's look)"], rows
        ),
    ]
    dim = [r for r in (dim_before or {"rows": []})["rows"] if r["case"].startswith("dim")]
    if dim:
        out.append(
            "\nA dim start (x0.3: the room's light switched on after it) is matched to the lit "
            "room: a gain below what a light switched on needs is allowed to a picture with "
            "almost no pure white ([decisions/light-matching.md](decisions/light-matching.md)). "
            "Before, it paused each print once when the light came on (at frames "
            f"{', '.join(str(r['paused_at'][0]) for r in dim if r['paused_at'])}; "
            "`benchmarks/results/still_start_before_dim_look.json`)."
        )
    out.append(
        f"\nBundle trained {now['bundle_created']}. Command: `{STILL_CMD}` (the before column: "
        "the same script at the commit before a still start was learnt again, and for the "
        "heating rows at the commit before the camera's noise was told from movement, "
        "`benchmarks/results/still_start_before.json`).\n"
    )
    if now.get("failures"):
        out.append(_failures_after_start(now, dim_before))
    if now.get("start_failures"):
        out.append(_failures_during_start(now, heated_before))
    if now.get("heating"):
        out.append(_heating_sweep(now, heated_before, "heating", "its noise as given"))
    if now.get("heating_jpeg"):
        out.append(
            _heating_sweep(
                now,
                specks_before,
                "heating_jpeg",
                "its noise through JPEG (quality 70), as a camera sends it",
                versus=(
                    "before a moved pixel was counted with its neighbours and past 6 grey levels ("
                    "`benchmarks/results/still_start_before_moved_together.json`; "
                    "[decisions/still-start.md](decisions/still-start.md))"
                ),
            )
        )
    if now.get("heating_jpeg_low"):
        out.append(
            _heating_sweep(
                now,
                specks_before,
                "heating_jpeg_low",
                "a clean camera's noise (1 grey level) through JPEG at quality 40",
                versus=(
                    "before a moved pixel was counted with its neighbours and past 6 grey levels "
                    "([decisions/still-start.md](decisions/still-start.md))"
                ),
            )
        )
    if now.get("heating_jpeg_told"):
        out.append(
            _heating_sweep(
                now,
                now,
                "heating_jpeg_told",
                "its noise through JPEG (quality 70), the printer's API saying it heats",
                before_key="heating_jpeg",
                before_name="the picture alone",
                versus=(
                    "with the picture alone to tell the heating (the table above; "
                    "[decisions/heating-from-the-printer.md](decisions/heating-from-the-printer.md))"
                ),
            )
        )
    return "\n".join(out)


def _by_failure(doc: Json | None, table: str, session: str, start: str) -> dict[str, Json]:
    """The rows of ``table`` of one print and start, by the failure pasted in."""
    rows = (doc or {}).get(table, [])
    return {r["failure"]: r for r in rows if (r["print"], r["start"]) == (session, start)}


BEFORE_STILL_RULES = (
    "before a start that stood still was learnt from its first moving frame (before, its "
    "still frames were the yardstick of the rest of the start)"
)


def _heating_sweep(
    now: Json,
    before: Json | None,
    key: str,
    noise: str,
    before_key: str = "",
    versus: str = BEFORE_STILL_RULES,
    before_name: str = "before",
) -> str:
    """Good prints after a heating start of each length: where they are paused, now and
    ``versus`` (``before``'s ``before_key`` rows; ``key``'s by default)."""

    def paused(doc: Json | None, session: str, table: str = key) -> list[str]:
        rows = [r for r in (doc or {}).get(table, []) if r["print"] == session]
        return [f"{r['heating']} ({r['paused_at'][0]})" for r in rows if r["paused_at"]]

    before_key = before_key or key

    sessions = list(dict.fromkeys(r["print"] for r in now[key]))
    lengths = sorted({r["heating"] for r in now[key]})
    rows = [
        [
            session,
            ", ".join(paused(now, session)) or "none",
            ", ".join(paused(before, session, before_key)) or ("none" if before else ""),
        ]
        for session in sessions
    ]
    count = sum(len(paused(now, session)) for session in sessions)
    count_before = sum(len(paused(before, session, before_key)) for session in sessions)
    unheated = sum(1 for r in now[key] if r["paused_at"] and r.get("unheated_paused_at"))
    return "\n".join(
        [
            f"\n**Good prints after their printer heated, {noise}.** Each good print's first "
            f"picture, live, for {lengths[0]} to {lengths[-1]} frames (a printer heating), then "
            "the print from there, through the daemon's `Detector` and `decide` (nobody "
            "resumes: every pause is a good print stopped). The heating lengths after which it "
            f"is paused (at frame), now and {versus}:\n",
            _table(["print", "paused after heating of (at frame)", before_name], rows),
            f"\nPaused: {count} of {len(sessions) * len(lengths)} ({before_name}: "
            f"{count_before}); "
            f"of those now, {unheated} are paused as well as recorded from the same frame "
            "without the heating (the start's own false alarms, "
            "[decisions/start-judgement.md](decisions/start-judgement.md)).\n",
        ]
    )


def _failures_during_start(now: Json, before: Json | None) -> str:
    """Frames to pause failures pasted during the start, as recorded and after the printer
    heated, now and before a start whose first frames did not move was learnt again."""
    names = sorted({r["failure"] for r in now["start_failures"]})

    def cell(doc: Json | None, session: str, start: str) -> tuple[str, int]:
        found = _by_failure(doc, "start_failures", session, start)
        if not found:
            return "–", 0
        frames = []
        for n in names:
            after = [p - found[n]["onset"] + 1 for p in found[n]["paused_at"]]
            frames.append(str(after[0]) if after else "never")
        return ", ".join(frames), sum(f != "never" and int(f) <= 10 for f in frames)

    rows: list[list[str]] = []
    within: dict[str, list[int]] = {}
    for session, start, onset in dict.fromkeys(
        (r["print"], r["start"], r["onset"]) for r in now["start_failures"]
    ):
        frames, n = cell(now, session, start)
        frames_before, n_before = cell(before, session, start)
        count = within.setdefault(start, [0, 0, 0])
        count[0], count[1], count[2] = count[0] + n, count[1] + n_before, count[2] + len(names)
        rows.append([session, start, str(onset), frames, frames_before])
    totals = "; ".join(
        f"{start}: {n} of {of} (before: {b})" for start, (n, b, of) in within.items()
    )
    return "\n".join(
        [
            "\n**A failure during the start, after the printer heated.** A printer heats before "
            "it prints, and OctoPrint and Klipper call that printing: the start's first frames "
            "show a still bed. Each failed print's material pasted into the watched half of the "
            "good print two minutes into its printing: from frame 12 as recorded (its first 10 "
            "frames the yardstick of the rest of its start), and from frame 24 after its first "
            "picture, live, for 12 frames (heating). Frames from the failure's first frame to "
            "the pause, now and before a start whose first 10 frames did not move was learnt "
            "again (they were not judged against, and the rest of the start was learnt blind):\n",
            _table(
                [
                    "print",
                    "start",
                    "failure from frame",
                    f"frames to pause ({', '.join(names)})",
                    "before",
                ],
                rows,
            ),
            f"\nPaused within 10 frames of the failure: {totals}. The bundle fitted these prints: "
            "this measures what the daemon does with a start that heats, not how well it "
            "detects (the three training runs below do). Before: "
            "`benchmarks/results/still_start_before_first_frames_learnt_again.json` (the same "
            "script, `--start-failures-only`, at the commit before).\n",
        ]
    )


def _failures_after_start(now: Json, before: Json | None) -> str:
    """Frames to pause failures pasted after a start as recorded and after a dim one."""
    names = sorted({r["failure"] for r in now["failures"]})

    def cells(doc: Json | None, session: str, start: str) -> tuple[str, str]:
        found = _by_failure(doc, "failures", session, start)
        if not found:
            return "–", "–"
        good = max(sum(1 for p in r["paused_at"] if p < r["onset"]) for r in found.values())
        frames = []
        for n in names:
            after = [p for p in found[n]["paused_at"] if p >= found[n]["onset"]]
            frames.append(str(after[0] - found[n]["onset"] + 1) if after else "never")
        return ", ".join(frames), str(good)

    rows: list[list[str]] = []
    caught: dict[str, list[int]] = {}
    for session, start in dict.fromkeys((r["print"], r["start"]) for r in now["failures"]):
        frames, good = cells(now, session, start)
        frames_before, good_before = cells(before, session, start)
        count = caught.setdefault(start, [0, 0, 0])
        count[0] += sum(f != "never" for f in frames.split(", "))
        count[1] += sum(f not in ("never", "–") for f in frames_before.split(", "))
        count[2] += len(names)
        rows.append([session, start, frames, good, frames_before, good_before])
    totals = "; ".join(
        f"{start}: {n} of {of} (before: {b})" for start, (n, b, of) in caught.items()
    )
    onset = now["failures"][0]["onset"]
    return "\n".join(
        [
            f"**A failure after a dim start.** Each failed print's material pasted into the "
            f"watched half of the good print from frame {onset} on, after its start as recorded "
            "and after a dim one; frames from the failure's first frame to its pause (the "
            "simulated owner resumes each pause, so a good print paused before the failure "
            "learns its look again), now and before a dim look was matched:\n",
            _table(
                [
                    "print",
                    "start",
                    f"frames to pause ({', '.join(names)})",
                    "good print paused before it",
                    "before: frames to pause",
                    "before: good print paused before it",
                ],
                rows,
            ),
            f"\nFailures paused after a start {totals}. "
            "Matched to a dim look, a failure in the lit room is seen as dim as that look, and "
            "a failure that a normal start would pause can be missed; before, the pause at the "
            "light and the owner's resume learnt the lit room, with the failure's first frames "
            "in that new start. The shipped bundle saw these prints: compare the rows, not the "
            "figures with held-out ones.\n",
        ]
    )


def _lasting_table(lasting: Json) -> str:
    """Pauses before and after a lasting change, per print and change."""
    rows = [
        [
            r["print"],
            r["change"],
            str(r["pauses_before"]),
            f"{len(r['pauses_after_at'])} ({', '.join(map(str, r['pauses_after_at'])) or '-'})",
        ]
        for r in lasting["rows"]
    ]
    onset = lasting["rows"][0]["onset"] if lasting["rows"] else "?"
    return _table(
        ["print", f"change at frame {onset}", "pauses before it", "pauses after it (at frame)"],
        rows,
    )


def speed_and_memory(c: Json | None) -> str:
    if c is None:
        return _missing("speed and memory", COST_CMD)
    one = c["default_1_thread"]
    rows = [["shipped model, 1 thread", _f(one["median_ms"], 1), _f(one["p95_ms"], 1)]]
    if "seed_1_thread" in c:
        rows.append(
            [
                "the seed post's model (400x400), 1 thread",
                _f(c["seed_1_thread"]["median_ms"], 1),
                _f(c["seed_1_thread"]["p95_ms"], 1),
            ]
        )
    out = [
        _table(["per frame (decode, detector, heatmap, two JPEGs)", "median ms", "p95 ms"], rows)
    ]
    if "ratio_default_to_seed_1_thread" in c:
        out.append(
            f"\nRatio shipped / seed, same run: {c['ratio_default_to_seed_1_thread']:.2f}. Milliseconds depend on "
            "what else the machine runs (this run: "
            + (f"load average {c['load_average']:.1f} on " if "load_average" in c else "")
            + "a shared 2-core machine); the ratio, measured in the same run, "
            "is the figure to compare. Budget: 50 ms per frame on one core."
        )
    if "ratio_start_judged_to_unjudged" in c:
        out.append(
            "\nWhile a print's start is judged against its first frames (one thread, the same "
            f"run): {c['start_judged_1_thread_median_ms']:.1f} ms per frame against "
            f"{c['start_unjudged_1_thread_median_ms']:.1f} ms with that judgement off "
            f"(ratio {c['ratio_start_judged_to_unjudged']:.2f})."
        )
    d = c["daemon"]
    out.append(
        f"\nThe daemon (`python -m watchdog run`, one printer, a real HTTP camera at full speed): peak RSS "
        f"{d['peak_rss_mb']:.1f} MB (budget 150 MB). Model file: {c['model_bytes'] / 1e6:.2f} MB."
    )
    r = c.get("replay_demo")
    if r:
        out.append(
            f"\nThe demo's sequence replayed: {r['pauses_during_normal']} pauses during the normal frames, "
            f"pause {r['frames_from_onset_to_pause']} frames after the failure appears."
        )
    out.append(f"\nCommand: `{COST_CMD}`")
    return "\n".join(out) + "\n"


MEMORY_CMD = (
    "PYTHONPATH=. .venv/bin/python benchmarks/memory.py --baseline <ref> [--size 1280x720] "
    "--json benchmarks/results/memory-<size>.json"
)


def memory_per_printer(results: dict[str, Json | None]) -> str:
    """Peak RSS of the daemon by number of printers, this code against a baseline in the same run."""
    rows = []
    for size, m in results.items():
        if m is None:
            continue
        codes = [("now", m["current"])]
        if "baseline" in m:
            codes.insert(0, (f"before ({m['baseline']['ref']})", m["baseline"]))
        for name, c in codes:
            rows.append(
                [size, name]
                + [f"{r['peak_rss_mb']:.1f} MB" for r in c["daemon"]]
                + [f"{c['mb_per_extra_printer']:.1f} MB"]
            )
    if not rows:
        return _missing("memory per printer", MEMORY_CMD)
    first = next(m for m in results.values() if m is not None)
    counts = [str(n) for n in first["settings"]["printers"]]
    out = [
        _table(
            ["frame size", "code", *(f"{n} printer{'s' if n != '1' else ''}" for n in counts)]
            + ["per extra printer"],
            rows,
        )
    ]
    ratios = [
        f"{size}: {m['ratio']['peak_rss_1_printer']:.2f} for one printer, "
        f"{m['ratio']['mb_per_extra_printer']:.2f} per extra printer"
        for size, m in results.items()
        if m is not None and "ratio" in m
    ]
    if ratios:
        out.append("\nRatio now / before, same run: " + "; ".join(ratios) + ".")
    out.append(
        "\nPeak RSS (VmHWM) of `python -m watchdog run`, each printer with its own real HTTP "
        f"snapshot camera, {first['settings']['interval_s']:g} s interval for "
        f"{first['settings']['seconds']:g} s (every print's start learnt); per extra printer: "
        "the least-squares slope. Goals: 90 MB for one printer, 2 MB per extra printer. "
        "Where the memory goes: [capacity.md](capacity.md)."
    )
    ladder = first["current"]["imports"]
    out += [
        "\nWhere one printer's memory goes: RSS of a fresh interpreter after each import the "
        "daemon does, in its order (this code), then what the model's interpreter adds once it "
        "has run:\n",
        _table(
            ["after importing", "RSS", "added"],
            [[i["module"], f"{i['rss_mb']:.1f} MB", f"+{i['added_mb']:.1f} MB"] for i in ladder],
        ),
    ]
    scorers = first["current"]["scorers"]
    if len(scorers) > 1:
        out.append(
            f"\nMaking and running the default bundle's TFLite interpreter once, in a process "
            f"that has not imported LiteRT yet: +{scorers[1]['rss_mb'] - scorers[0]['rss_mb']:.1f} MB "
            "(the import, LiteRT's runtime pages, XNNPACK's packed weights and arena); each "
            "further printer shares it: "
            f"+{first['current']['mb_per_extra_scorer']:.2f} MB."
        )
    out.append(f"\nCommand: `{MEMORY_CMD}`")
    return "\n".join(out) + "\n"


CAPACITY_CMD = (
    "PYTHONPATH=. .venv/bin/python benchmarks/capacity.py --json benchmarks/results/capacity.json"
)


def _measured_on(c: Json) -> str:
    """``; measured <date>`` where the run recorded its date (runs before it did not)."""
    when = c.get("measured")
    return f"; measured {when}" if isinstance(when, str) else ""


def printers_per_daemon(c: Json | None) -> str:
    """The capacity runs (one daemon, N printers) and the Pi estimate made from them."""
    if c is None:
        return _missing("printers per daemon", CAPACITY_CMD)
    # the baseline of each row: one printer on the same cores and frame size, same run
    one = {(r["cores"], r["size"]): r for r in c["runs"] if r["printers"] == 1}

    def ratio(r: Json, key: str) -> str:
        base = one.get((r["cores"], r["size"]))
        return f" (x{r[key] / base[key]:.2f})" if base and base[key] else ""

    rows = [
        [
            str(r["cores"]),
            r["size"],
            str(r["printers"]),
            f"{100 * r['cpu_share']:.2f} %",
            f"{1000 * r['cpu_s_per_frame']:.1f} ms{ratio(r, 'cpu_s_per_frame')}",
            f"{r['peak_rss_mb']:.1f} MB{ratio(r, 'peak_rss_mb')}",
            f"{r['latency_p50_s']:.2f} s / {r['latency_p99_s']:.2f} s",
            f"{r['frames_scored']} / {r['frames_expected']} ({r['frames_skipped']})",
        ]
        for r in c["runs"]
    ]
    out = [
        _table(
            [
                "cores",
                "frame size",
                "printers",
                "daemon CPU (share of its cores)",
                "CPU per frame (x 1 printer)",
                "peak RSS (x 1 printer)",
                "latency p50 / p99",
                "scored / expected (skipped)",
            ],
            rows,
        ),
        f"\nOne daemon, each printer with its own real HTTP snapshot camera and a real Moonraker, "
        f"{c['settings']['interval_s']:g} s interval, {c['settings']['ticks']} intervals measured "
        "after a warm-up (the runs end before a print's start is learnt: the memory per printer "
        "is in the next section). Latency: the camera receiving the snapshot request to the "
        "frame's score on MQTT. In brackets: the row's figure over the one printer's on the "
        f"same cores and frame size, in the same run{_measured_on(c)}.",
    ]
    boards = c.get("estimate", {}).get("boards", {})
    est = [
        [
            board,
            size,
            f"{e['printers_by_cpu']} ({1000 * e['cpu_s_per_frame_estimated']:.0f} ms a frame)",
            f"{e['printers_by_ram']} ({e['rss_mb_1_printer']:.0f} MB + "
            f"{e['rss_mb_per_extra_printer']:.1f} MB each)",
            f"**{e['printers']}**",
        ]
        for board, sizes in boards.items()
        for size, e in sizes.items()
    ]
    if est:
        out += [
            "\nEstimate for a Pi (not measured on one; the basis is in [capacity.md](capacity.md) "
            "and `estimate()` in benchmarks/capacity.py):\n",
            _table(["board", "frame size", "by CPU", "by memory", "estimate"], est),
        ]
    out.append(
        f"\nCommand: `{CAPACITY_CMD}` (about 16 minutes; the estimate reads benchmarks/results/memory-<size>.json)"
    )
    return "\n".join(out) + "\n"


def three_runs(d: Json | None) -> str:
    if d is None:
        return _missing("three training runs", RUNS_CMD)
    from benchmarks.quality import summary_tables

    t = summary_tables(d["summary"])
    return (
        "Three training runs (seeds 0, 1, 2) of the shipped preset, each leave-one-print-out: 9 fold-runs. "
        "Every print is replayed through the daemon's `Detector` and `decide`. A seed gives the "
        "same figures again on this machine (seed 0 run alone gave every fold's threshold and "
        "recall to the last digit; the failure material pasted into the good prints is one draw, "
        "the same in every run); the spread between seeds is the training's.\n\n"
        "**A print that fails from its first frame.** The start guard (the bundle's `adaptation.guard`, "
        "see [decisions/start-guard.md](decisions/start-guard.md)) judges the frames of a print's start "
        "by the absolute score. Per fold-run, the guard, the highest start frame of the held-out good "
        "print, and frames to pause of each failed print replayed from its own first frame:\n\n"
        f"{t['first_minutes']}\n\n"
        + (
            "A fold-run cross-fits its two training prints: too few to set a start guard (it "
            "takes three), so no fold-run judges a start by it; the shipped bundle, cross-fitted "
            "on all three prints, has one. "
            if not any(r["guard"] for r in d["summary"]["fold_runs"])
            else ""
        )
        + "The Kaggle failed prints start like good prints (their first frames score like normal "
        "starts).\n\n"
        + starts_caught(_load("start_guard.json"))
        + failure_in_start(d, t)
        + "**Failures inside a print**, per fold-run (real failure material pasted into the held-out good "
        f"print from frame 50 on):\n\n{t['inscene']}\n\nSpread over the fold-runs:\n\n{t['spread']}\n\n"
        + (
            "The same in-scene frames of every fold-run by how large the failure is as the model "
            "sees it: the share of the model input's pixels (128x64 of the watched region) the "
            "pasted material changed by more than 40 grey levels in some colour:\n\n"
            f"{t['by_size']}\n\n" + _visible_recall(d["summary"].get("inscene_by_size"))
            if "by_size" in t
            else ""
        )
        + f"Run: {d['date']}, {d['seconds'] / 60:.0f} minutes on the shared 2-core machine. Command: `{RUNS_CMD}`.\n"
    )


def _visible_recall(sizes: Json | None) -> str:
    """What the in-scene recall above counts: every frame from the onset on, also those whose
    pasted material changed almost nothing (a frame of a failed print with little of it)."""
    if not sizes:
        return ""
    frames, caught = sizes["frames"], sizes["caught"]
    return (
        f"The in-scene recall above counts every frame from the onset on: {frames[0]} of "
        f"{sum(frames)} changed less than 0.5% of the input (little or no material visible). "
        f"Over the others, {sum(caught[1:]) / sum(frames[1:]):.2f} of the frames were above the "
        f"threshold ({sum(caught) / sum(frames):.2f} of all of them pooled, where the recall above is a mean "
        "over the fold-runs).\n\n"
    )


def failure_in_start(d: Json, tables: dict[str, str]) -> str:
    """A failure that begins while the print's start is learnt (runs made before the start was
    judged have no such table), and the same on the same models without matching the start's
    light, where the run measured it."""
    if "failure_in_start" not in tables:
        return ""
    onset = d["summary"]["failure_in_start"]["onset_frame"]
    from benchmarks.quality import starts_sentence

    unmatched = d.get("summary_start_light_off")
    paired = (
        "On the same models, the start judged on its frames as the camera gave them (bundles "
        "without `adaptation.start_light`, its threshold cross-fitted that way too): "
        + starts_sentence(unmatched)[0].lower()
        + starts_sentence(unmatched)[1:]
        + "\n\n"
        if unmatched
        else ""
    )
    return (
        "**A failure that begins during the start.** The rest of a print's start is judged "
        "against its first frames (the bundle's `adaptation.early_frames`; its threshold "
        "cross-fitted on the fitting prints' starts, see "
        "[decisions/start-judgement.md](decisions/start-judgement.md)). Each failed print's "
        f"material is pasted into the held-out good print after the first {onset} frames of "
        "its start; "
        "frames from then to the pause, within the start (never: not paused before the start "
        "is learnt). And its cost: every stretch of the held-out print as long as a start, "
        "replayed as one: the share of its judged frames flagged, and the stretches paused; and "
        'a lasting change of the room\'s light (the four of "Lighting") from frame 15 of the '
        "held-out print's start, paused or not:\n\n"
        f"{tables['failure_in_start']}\n\n{paired}"
    )


def starts_caught(d: Json | None) -> str:
    """Which made-up abnormal starts the shipped bundle's guard catches."""
    if d is None:
        return _missing("abnormal starts", GUARD_CMD) + "\n"
    rows = [
        [r["start"], _f(r["highest"]), f"{r['above_guard']} of {d['prints']}"] for r in d["starts"]
    ]
    caught = [r for r in d["starts"][1:] if r["above_guard"]]
    verdict = (
        "No abnormal start made here reaches it: the absolute score does not tell these starts "
        "from good ones well enough, so the first minutes are judged by the guard in name only; "
        "watch the first layers yourself."
        if not caught
        else f"{len(caught)} of {len(d['starts']) - 1} kinds of abnormal start reach it."
    )
    return (
        f"**The shipped bundle's guard ({d['guard']:.3f})** against starts made from each good "
        "print's first frame, scored as the daemon scores a start (the absolute score):\n\n"
        + _table(["start", "highest absolute score", "above the guard"], rows)
        + f"\n\n{verdict} Run: {d['date']}. Command: `{GUARD_CMD}`.\n\n"
    )


FRAMING_CMD = ".venv/bin/python benchmarks/framing.py --json benchmarks/results/framing.json"


def framing(d: Json | None) -> str:
    if d is None:
        return _missing("framing", RUNS_CMD)
    from benchmarks.framing import table

    return (
        "The shipped bundle on the Kaggle prints seen through other framings (the picture moved, scaled or "
        "mirrored), through the daemon's `Detector`, with the bundle's region (the bottom half) and with "
        "`detection.region` set to where the bed now is:\n\n"
        f'{table(d["results"])}\n\nThe bundle was trained on these prints, so "as trained" is optimistic; '
        "compare the rows of each framing. Set `detection.region` (or draw it on the dashboard) when the "
        "bed is not in the bottom half of your picture.\n\n"
        f"Run: {d['date']}, {d['seconds'] / 60:.0f} minutes. Command: `{FRAMING_CMD}` (part of "
        "`make quality`).\n"
    )


ORDER_CMD = ".venv/bin/python benchmarks/frame_order.py --json benchmarks/results/frame_order.json"


def frame_order(d: Json | None) -> str:
    """How far the Kaggle prints' file order is from a timeline: it qualifies every figure
    that replays a print "from its first frame"."""
    if d is None:
        return _missing("the Kaggle data's frame order", ORDER_CMD)
    rows = [
        [
            name,
            str(int(v["frames"])),
            f"{v['consecutive']:.1f}",
            f"{v['random']:.1f}",
            f"{v['ratio']:.2f}",
        ]
        for name, v in d["prints"].items()
    ]
    return (
        "Every figure below that replays a print in order (its first 30 frames as its baseline, "
        "a failure pasted from frame 50 on, a failed print replayed from its first frame) takes "
        "the file numbers for time. They are a weak timeline. On a real one (a frame every few "
        "seconds) neighbouring frames are near-copies, far closer than two frames picked at random "
        "from the same print. Here they are almost as far apart (median mean absolute difference, "
        f"0-255, on the model input, {d['input']}):\n\n"
        + _table(
            [
                "print",
                "frames",
                "neighbouring frames",
                "random pairs",
                "ratio (1.0: no time order)",
            ],
            rows,
        )
        + "\n\nLooked at, `scratch` holds several prints of one small block, their frames "
        "interleaved: the block's height jumps up and down between neighbouring numbers. So a "
        'print\'s "first 30 frames" sample most of the print (its baseline has seen the part at '
        "every height, which flatters the per-print adaptation), and a failed print's first "
        "frames already show most of its failure (it is learnt as that print's normal). Real "
        "prints replayed in time order are what would settle these figures; this data has none.\n\n"
        f"Run: {d['date']}. Command: `{ORDER_CMD}`.\n"
    )


VARIANT_CMD = (
    ".venv/bin/python benchmarks/quality.py --seeds 0,1,2 [--scoring-topk K] [--std-floor Q] "
    "[--scoring-window W] [--nearest N] [--pixel-spread on|off] [--print-scale on|off] [--epochs E] [--batch-size B] "
    "[--patience P] [--denoise S] [--synthetic-parts S] [--clipped-light on|off] [--region X0,Y0,X1,Y1] [--target-fpr F] --json "
    "benchmarks/results/quality-variant-NAME.json"
)
# what runs that recorded nothing of it scored and trained with (before runs said so)
UNRECORDED_VARIANT = {
    "topk": 0.1,
    "window": 0,
    "std_floor": 0.5,
    "nearest": 10,
    "pixel_spread": True,
    "print_scale": False,
    "epochs": 30,
    "batch_size": 32,
    "patience": 5,
    "denoise": 0.0,
    "synthetic_parts": 0.0,
    "clipped_light": False,
    "threshold_rule": "cross-fitted",
    "order": "file",
    "region": [0.0, 0.5, 1.0, 1.0],
}


def _scored(variant: Json) -> Json:
    """The settings this table's figures depend on: how a start is judged (``start_light``)
    is the start's own table's."""
    return {k: v for k, v in variant.items() if k != "start_light"}


def _variant_label(d: Json, base: Json) -> str:
    """What a run scored differently from the shipped preset, in the bundle's words."""
    variant = {**UNRECORDED_VARIANT, **_scored(d.get("variant", {}))}
    if d["_name"].startswith("quality-topk-"):  # the first runs named their top-k fraction only
        variant["topk"] = float(d["_name"].removeprefix("quality-topk-"))
    changed = [f"{k} {str(v).lower()}" for k, v in variant.items() if base.get(k) != v]
    if d["target_fpr"] != base["target_fpr"]:
        changed.append(f"threshold aimed at {100 * d['target_fpr']:g}% of frames")
    if changed and d["_name"].startswith("quality-variant-shipped-"):
        # the preset shipped at the time, since changed: which run it was matters
        return f"{', '.join(changed)} (shipped then, run {d['date']})"
    # the same settings and seeds measured again (training here is deterministic): figures
    # that differ say the code changed between the runs, not the training's noise
    return ", ".join(changed) or f"as shipped, run again with the same seeds ({d['date']})"


GROWTH_FILE = "quality-variant-growth-order.json"
GROWTH_CMD = (
    ".venv/bin/python benchmarks/quality.py --seeds 0,1,2 --order growth --json "
    f"benchmarks/results/{GROWTH_FILE}"
)


def _folds(d: Json) -> list[Json]:
    """Every fold-run of a multi-run benchmark result."""
    return [r for folds in d["runs"].values() for r in folds]


def _inscene_paused(summary: Json) -> str:
    """In-scene failures paused within 10 frames of their onset, over all fold-runs."""
    paused = [
        sum(v is not None and v <= 10 for v in r["inscene_frames_to_pause"].values())
        for r in summary["fold_runs"]
    ]
    return f"{sum(paused)} of {len(paused) * len(summary['inscene_recall_by_print'])}"


def _order_row(order: str, d: Json) -> list[str]:
    s, folds = d["summary"], _folds(d)
    worst = max(folds, key=lambda r: r["false_alarm_rate"])
    return [
        order,
        f"{_pct(s['false_alarm_rate']['mean'])} ({_pct(worst['false_alarm_rate'])}, "
        f"`{worst['held_out']}`)",
        str(sum(r["false_pauses"] for r in folds)),
        _f(s["recall"]["mean"], 2),
        f"{_f(s['inscene_recall']['mean'], 2)} ({_f(s['inscene_recall']['min'], 2)}-"
        f"{_f(s['inscene_recall']['max'], 2)})",
        _inscene_paused(s),
        d["date"],
    ]


GROWING_CMD = (
    ".venv/bin/python benchmarks/growing_prints.py --json benchmarks/results/growing_prints.json"
)


def _shipped_growing(d: Json | None) -> str:
    """The shipped bundle on its own three prints, in both orders, through ``replay``."""
    if d is None:
        return _missing("the shipped bundle on growing prints", GROWING_CMD)
    rows = [
        [
            f"{r['print']} ({r['frames']} frames)",
            r["order"],
            f"{len(r['paused_at'])} ({', '.join(map(str, r['paused_at'])) or '-'})",
        ]
        for r in d["rows"]
    ]
    return (
        "The shipped bundle (it was fitted on these three prints) replayed on each through "
        "`python -m watchdog replay`, whose simulated owner resumes right after each pause "
        "(which learns the print's look again): every pause is a good print stopped.\n\n"
        + _table(["print", "order", "pauses (at frame, counted from 0)"], rows)
        + f"\n\nBundle trained {d['bundle_created']}. Command: `{GROWING_CMD}`.\n"
    )


def _replayed_in_growth_order(d: Json) -> bool:
    return bool(d.get("variant", {}).get("order") == "growth")


def growing_prints(shipped: Json | None, growth: Json | None, bundle: Json | None) -> str:
    """The shipped preset's three training runs with each good print replayed in file order
    and as its part grows, and the shipped bundle on its own prints the same two ways."""
    if growth is not None and shipped is not None:
        same = {**UNRECORDED_VARIANT, **_scored(growth["variant"]), "order": "file"}
        if not _replayed_in_growth_order(growth) or same != {
            **UNRECORDED_VARIANT,
            **_scored(shipped.get("variant", {})),
        }:
            raise ValueError(
                f"{GROWTH_FILE} is not the shipped preset's settings replayed in growth order: "
                "run the command of its section again"
            )
    if shipped is None or growth is None:
        return (
            _missing("prints replayed as their part grows", GROWTH_CMD)
            + "\n"
            + _shipped_growing(bundle)
        )
    return (
        "The file order flatters the per-print baseline: a print's first 30 frames already show "
        "its part at every height. Replayed as its part grows (`--order growth`: fewest yellow "
        "filament pixels first, so a print starts on a bare bed or a first layer and ends "
        "with its tallest part, as a real one does), a good print ends far from its first "
        "minutes. That order is no timeline either: sorted by filament, frames of the "
        "interleaved prints of `scratch` follow each other, and frames where the camera (beside "
        "the nozzle) shows little of the part sort early, together. A print longer than these "
        "moves further from its first five minutes than either order shows. The shipped "
        "preset, three training runs each, 9 fold-runs, the thresholds cross-fitted on the "
        "fitting prints in the same order:\n\n"
        + _table(
            [
                "order",
                "frames above the threshold, mean (worst)",
                "pauses of good prints (no resume between them)",
                "recall on Kaggle failures",
                "in-scene recall, frames pooled: mean (min-max)",
                "in-scene failures paused within 10 frames",
                "run",
            ],
            [
                _order_row("file (as every other figure here)", shipped),
                _order_row("growth", growth),
            ],
        )
        + "\n\nWhat it says: a print whose look moves far from its first five minutes (a part "
        "much taller or wider than its start showed) is judged as changed, and a good print can "
        "be paused. Where the fitting prints grow that way too, the threshold (the higher of "
        "the one cross-fitted on them and the one their own last frames give) rises out of reach and failures are missed (recall). Resuming a pause (or "
        "marking the alert not a failure) learns the print's look again. See "
        "[decisions/growing-prints.md](decisions/growing-prints.md). "
        f"Command: `{GROWTH_CMD}`.\n\n" + _shipped_growing(bundle)
    )


def scoring_experiments(shipped: Json | None) -> str:
    """The three training runs scored other ways, beside the shipped preset."""
    files = sorted(RESULTS.glob("quality-topk-*.json")) + sorted(
        RESULTS.glob("quality-variant-*.json")
    )
    if shipped is None or not files:
        return _missing("scoring experiments", VARIANT_CMD)
    base = {**UNRECORDED_VARIANT, **_scored(shipped.get("variant", {}))}
    runs = [("shipped: " + ", ".join(f"{k} {str(v).lower()}" for k, v in base.items()), shipped)]
    base["target_fpr"] = shipped["target_fpr"]
    for path in files:
        d = json.loads(path.read_text())
        # a growth-order run has its own section: replayed otherwise, not scored otherwise
        if _replayed_in_growth_order(d):
            continue
        d["_name"] = path.stem
        runs.append((_variant_label(d, base), d))
    rows = []
    for label, d in runs:
        s = d["summary"]
        cats = s["inscene_recall_by_print"]
        pauses = sum(r["false_pauses"] for r in _folds(d))
        rows.append(
            [
                label,
                f"{_f(s['false_alarm_rate']['mean'])} ({_f(s['false_alarm_rate']['max'])})",
                str(pauses),
                _f(s["recall"]["mean"]),
                f"{_f(s['inscene_recall']['mean'])} ({_f(s['inscene_recall']['min'])}-"
                f"{_f(s['inscene_recall']['max'])})",
                ", ".join(f"{v['mean']:.2f}" for v in cats.values()),
                _inscene_paused(s),
            ]
        )
    names = ", ".join(shipped["summary"]["inscene_recall_by_print"])
    return (
        "Other ways to score or to train the shipped preset, each three training runs, "
        "leave-one-print-out (9 fold-runs), the threshold set as the trainer sets it. Each "
        'row names what it changed; a row "run again with the same seeds" changed nothing but '
        "the code at its date (training here is deterministic: its figures differ from the "
        "shipped row's by the code, not by the training's noise). `epochs`, `batch_size`, `patience`: how each model is fitted "
        "(a smaller batch makes more updates per epoch); `denoise`: the share of training frames "
        "with a foreign blob pasted, the model asked for the clean frame back; "
        "`synthetic_parts`: the share of training frames with clean parts of other shapes, "
        "sizes and colours drawn on them (the model asked for them back as they are); "
        "`threshold_rule cross-fitted`: the "
        "threshold cross-fitted alone, as the trainer set it before; `topk`: the share of the "
        "watched region's highest error values a frame's score averages (smaller finds small "
        "failures); `pixel_spread false`: the change against the print's start is not divided by "
        "each pixel's spread; `print_scale true`: adapted scores are divided by the print's own "
        "typical one (its calibration frames judged against each other); `nearest 0`: each frame "
        "compared with the mean of all 30 start frames, not of the 10 most like it; `region`: the part "
        "of the frame (x0, y0, x1, y1) every model is fitted on and judges. See "
        "[decisions/scoring-experiments.md](decisions/scoring-experiments.md) and "
        "[decisions/training-length.md](decisions/training-length.md).\n\n"
        + _table(
            [
                "run",
                "FPR@thr mean (max)",
                "pauses of good prints",
                "recall@thr",
                "in-scene recall, frames pooled: mean (min-max)",
                f"in-scene recall by category ({names})",
                "in-scene failures paused within 10 frames",
            ],
            rows,
        )
        + "\n\n"
        + _pauses_note(runs)
        + f"Command: `{VARIANT_CMD}`.\n"
    )


def _pauses_note(runs: list[tuple[str, Json]]) -> str:
    """What the pauses of good prints say beside their frames above the threshold, from the
    runs themselves (a fixed sentence said 0 where a run paused good prints)."""
    pausing = [
        f"{label} ({sum(r['false_pauses'] for r in _folds(d))})"
        for label, d in runs
        if sum(r["false_pauses"] for r in _folds(d))
    ]
    said = (
        "Few good prints are paused even where several percent of a print's frames are above "
        'the threshold: in this data\'s weak time order ("Is file order time?") such frames '
        "seldom come three in a row, as they would on a real print. "
    )
    if pausing:
        return said + "Runs that paused good prints: " + "; ".join(pausing) + ".\n\n"
    return said + "No run paused a good print.\n\n"


# --------------------------------------------------------------------------- the page


INTRO = """# What the shipped model achieves

Generated by `benchmarks/qualitydoc.py` from `benchmarks/results/*.json`; do not edit by hand.
Each section says the command that regenerates its results. The design choices behind these
figures, and what was measured and rejected, are in [decisions/](decisions/).

**The data and the protocol.** The Kaggle "3D-Printer Defected Dataset": three good print
sessions (`scratch` 184 frames, `scratch_2` 282, `scratch_3` 210) and four failed prints (571
frames). Leave-one-print-out: for each good print, the model is fitted on the other two and
tested on the held-out print's frames against every failure frame. The threshold is chosen as
a user's training run chooses it (1% per-frame target: the higher of the threshold
cross-fitted on the fitting prints and the one the fitted model's own last frames of them
give), never on the test fold. The daemon's score is the per-print adapted score: the held-out print's
first frames are its baseline. A random split is never used: frames of one print are
near-duplicates. Three prints is little evidence: the variance between training runs is
about as large as the differences between close variants.
"""


MORE = """- [capacity.md](capacity.md): how many printers one daemon watches, CPU and latency per printer,
  memory per extra printer, and the estimate for a Pi 4 and a Pi Zero 2 W.
- [dashboard.md](dashboard.md): the daemon's memory and CPU with the web page open.
- [reliability.md](reliability.md): the soak, hostile inputs (image bombs, MQTT payloads, two
  daemons, reloads) and alert delivery.
"""


def render() -> str:
    q = _load("quality.json")
    sections: list[tuple[str, Callable[[], str]]] = [
        ("Is file order time?", lambda: frame_order(_load("frame_order.json"))),
        (
            "A print that grows past its first minutes",
            lambda: growing_prints(
                _load("quality-detection.json"), _load(GROWTH_FILE), _load("growing_prints.json")
            ),
        ),
    ]
    if q is None:
        body = _missing("detection quality", QUALITY_CMD)
        sections.append(("Prints the model has never seen", lambda: body))
    else:
        sections += [
            ("Prints the model has never seen", lambda: unseen_prints(q)),
            ("Time to pause", lambda: time_to_pause(q, _load("time_to_pause.json"))),
            (
                "First minutes: a print that fails from its start (this run, before the start guard)",
                lambda: first_minutes(q),
            ),
            ("Failures inside a print", lambda: inside_a_print(q)),
            (
                "Lighting",
                lambda: lighting(
                    q, _load("lasting_change.json"), _load("lasting_change_in_start.json")
                ),
            ),
            (
                "A camera that shows no movement during the start",
                lambda: still_start(
                    _load("still_start.json"),
                    _load("still_start_before.json"),
                    _load("still_start_before_dim_look.json"),
                    _load("still_start_before_first_frames_learnt_again.json"),
                    _load("still_start_before_moved_together.json"),
                ),
            ),
        ]
    sections.append(
        (
            "Three training runs: the first minutes and failures inside a print",
            lambda: three_runs(_load("quality-detection.json")),
        )
    )
    sections.append(("Any camera's framing", lambda: framing(_load("framing.json"))))
    sections.append(
        (
            "Scoring and training experiments",
            lambda: scoring_experiments(_load("quality-detection.json")),
        )
    )
    sections.append(("Speed and memory", lambda: speed_and_memory(_load("frame_cost.json"))))
    sections.append(("Printers per daemon", lambda: printers_per_daemon(_load("capacity.json"))))
    sections.append(
        (
            "Memory per printer",
            lambda: memory_per_printer(
                {size: _load(f"memory-{size}.json") for size in ("640x480", "1280x720")}
            ),
        )
    )
    sections.append(("More measurements", lambda: MORE))
    parts = [INTRO]
    if q is not None:
        parts.append(
            f"Run: {q['date']}, `--target-fpr {q['target_fpr']}`. Command: `{QUALITY_CMD}` "
            "(about 10 minutes on 2 idle cores, 30 on 2 shared ones; needs the `train` extra and the data).\n"
        )
    for title, make in sections:
        parts.append(f"## {title}\n\n{make()}")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="exit 1 if docs/quality.md is not current")
    args = p.parse_args(argv)
    text = render()
    if args.check:
        current = OUTPUT.read_text() if OUTPUT.is_file() else ""
        if current != text:
            print(
                f"{OUTPUT} is not current: run .venv/bin/python benchmarks/qualitydoc.py",
                file=sys.stderr,
            )
            return 1
        return 0
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
