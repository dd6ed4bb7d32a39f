"""The dashboard's memory of a printer stays bounded however long the daemon runs.

The timeline is a fixed ring (24 h at 10 s by default) and the lead-up keeps the last few
frames only; both are filled far beyond their size here and must keep the newest, in order.
"""

from __future__ import annotations

import json
from typing import Any

import cv2
import numpy as np
import pytest

from watchdog.history import History, Mark, Timeline


def test_timeline_ring_keeps_the_newest_points_in_order_and_does_not_grow() -> None:
    tl = Timeline(points=100)
    size = tl._t.nbytes + tl._s.nbytes + tl._th.nbytes + tl._f.nbytes
    for i in range(1, 1001):
        tl.add(float(i), i / 1000, 0.5, Mark.ANOMALOUS if i % 7 == 0 else Mark.NONE)
    assert len(tl) == 100
    points = tl.since(0)
    assert points["t"] == [float(i) for i in range(901, 1001)] and points["seq"] == 1000
    assert points["marks"] == [1 if i % 7 == 0 else 0 for i in range(901, 1001)]
    assert tl.since(990)["t"] == [float(i) for i in range(991, 1001)]  # what the page polls for
    assert tl.since(1000)["t"] == []
    assert tl._t.nbytes + tl._s.nbytes + tl._th.nbytes + tl._f.nbytes == size


def test_polling_with_the_last_sequence_number_brings_no_point_twice() -> None:
    tl = Timeline(points=10)
    for t in (1767000000.004, 1767000010.006, 1767000020.0049):
        tl.add(t, 0.1, 0.5, Mark.NONE)
    got = json.loads(json.dumps(tl.since(0)))  # as the page receives them
    assert len(got["t"]) == 3
    assert tl.since(got["seq"], got["clock"])["t"] == []  # the page asks with the last one
    tl.add(1767000030.0, 0.2, 0.5, Mark.NONE)
    assert tl.since(got["seq"], got["clock"])["t"] == [1767000030.0]


def test_a_clock_set_back_neither_hides_new_points_nor_breaks_their_order() -> None:
    """A Pi correcting its time an hour back: asked by time, the page got no new point (nor a
    new picture) for an hour, and a reload drew the old ones twice. New points still come;
    the kept ones are shifted onto the new clock and sent again whole, in order."""
    tl = Timeline(points=10)
    for t in (10_000.0, 10_010.0, 10_020.0):
        tl.add(t, 0.1, 0.5, Mark.NONE)
    page = tl.since(0)
    tl.add(6_430.0, 0.3, 0.5, Mark.NONE)  # the clock went back an hour
    tl.add(6_440.0, 0.4, 0.5, Mark.NONE)
    again = tl.since(page["seq"], page["clock"])
    assert again["reset"] and again["score"] == pytest.approx([0.1, 0.1, 0.1, 0.3, 0.4])
    assert again["t"] == sorted(again["t"]) and again["t"][-1] == 6_440.0
    later = tl.since(again["seq"], again["clock"])
    assert not later["reset"] and later["t"] == []


def test_an_action_is_on_its_point_as_soon_as_the_point_can_be_read() -> None:
    """The mark was added after the point: a poll between the two never showed the action."""
    history = History()
    jpeg = cv2.imencode(".jpg", np.full((48, 64, 3), 90, np.uint8))[1].tobytes()
    history.record(jpeg, 9.0, 3.0, True, False, False, jpeg, acted=True)
    assert history.timeline.since(0)["marks"] == [Mark.ANOMALOUS | Mark.ACTION]


def test_default_timeline_holds_a_day_at_ten_seconds_in_about_150_kb() -> None:
    tl = History().timeline
    assert tl.capacity == 24 * 3600 // 10
    assert tl._t.nbytes + tl._s.nbytes + tl._th.nbytes + tl._f.nbytes < 160_000


def test_lead_up_keeps_the_last_frames_and_the_camera_frame_only_of_anomalous_ones() -> None:
    history = History(lead_up=3)
    heat = cv2.imencode(".jpg", np.full((48, 64, 3), 90, np.uint8))[1].tobytes()
    frames = [
        cv2.imencode(".jpg", np.full((48, 64, 3), i, np.uint8))[1].tobytes() for i in range(10)
    ]
    for i in range(10):
        history.record(frames[i], float(i), 5.0, i >= 8, False, i == 0, heat)
    lead = history.lead_up()
    assert [f.score for f in lead] == [7.0, 8.0, 9.0]
    assert lead[0].frame_jpeg is None and lead[1].frame_jpeg == frames[8]
    assert lead[2].frame_jpeg == frames[9]
    assert history.latest_frame_jpeg() == frames[9]  # the newest frame, not the first


def _incident_after_two_anomalous_frames(store: Any) -> tuple[Any, History]:
    """An incident of printer ``ender3`` and the history before it: 6 frames, the last 2
    anomalous (4 kept as its lead-up)."""
    jpeg = cv2.imencode(".jpg", np.full((48, 64, 3), 90, np.uint8))[1].tobytes()
    history = History(lead_up=4)
    for i in range(6):
        history.record(jpeg, float(i), 3.0, i >= 4, False, False, jpeg)
    return store.save("ender3", {"score": 9.0}, jpeg, jpeg, pending=False), history


def test_lead_up_is_saved_with_the_incident_and_confirmed_failures_keep_the_anomalous_frames(
    tmp_path,
) -> None:
    from watchdog.incidents import IncidentStore, list_incidents, mark_failure

    store = IncidentStore(tmp_path)
    incident, history = _incident_after_two_anomalous_frames(store)
    store.add_lead_up("ender3", incident.id, history.lead_up())
    [view] = list_incidents(tmp_path, ["ender3"])
    assert view.lead_up == (
        "00-heatmap.jpg",
        "01-heatmap.jpg",
        "02-frame.jpg",
        "02-heatmap.jpg",
        "03-frame.jpg",
        "03-heatmap.jpg",
    )
    copies = mark_failure(tmp_path, "ender3", incident.id)
    assert sorted(p.name for p in copies) == sorted(
        [f"{incident.id}.jpg", f"{incident.id}-02.jpg", f"{incident.id}-03.jpg"]
    )
    assert all(p.parent == tmp_path / "collected" / "ender3" / "failures" for p in copies)


def test_a_failure_confirmed_before_its_lead_up_is_written_still_keeps_the_lead_up(
    tmp_path,
) -> None:
    """The owner answers the phone notification while the watcher is still writing the frames
    that led to the alert: the anomalous ones reach the failures folder all the same."""
    from watchdog.incidents import IncidentStore, failures_dir, mark_failure

    store = IncidentStore(tmp_path)
    incident, history = _incident_after_two_anomalous_frames(store)
    assert [p.name for p in mark_failure(tmp_path, "ender3", incident.id)] == [f"{incident.id}.jpg"]
    store.add_lead_up("ender3", incident.id, history.lead_up())
    kept = sorted(p.name for p in failures_dir(tmp_path, "ender3").iterdir())
    assert kept == sorted([f"{incident.id}.jpg", f"{incident.id}-02.jpg", f"{incident.id}-03.jpg"])
