"""IoU tracking over keyframes on synthetic detections, interpolation, scene-cut signatures."""

from __future__ import annotations

import numpy as np
import pytest

from dfdetect.faces.detect import Detections
from dfdetect.faces.track import IouTracker, box_iou, cut_distance, frame_signature, interpolate
from tests.faces.conftest import read_frames


def _dets(*boxes: tuple[float, float, float, float]) -> Detections:
    b = np.array(boxes, np.float32).reshape(-1, 4)
    centre = (b[:, :2] + b[:, 2:]) / 2  # [N, 2]
    return Detections(b, np.repeat(centre[:, None], 5, axis=1), np.full(len(b), 0.99, np.float32))


def test_box_iou() -> None:
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])
    np.testing.assert_allclose(box_iou(a, b), [[1.0, 1 / 3, 0.0]])
    assert box_iou(np.zeros((0, 4)), b).shape == (0, 3)


def test_interpolate_is_linear_in_time() -> None:
    a, b = np.array([0, 0, 10, 10.0]), np.array([10, 20, 30, 40.0])
    np.testing.assert_allclose(interpolate(1.0, 2.0, a, b, 1.25), [2.5, 5, 15, 17.5])
    np.testing.assert_allclose(interpolate(1.0, 1.0, a, b, 1.0), a)


def test_two_moving_faces_keep_their_ids() -> None:
    tracker = IouTracker(smoothing=0.0)
    ids = []
    for k in range(6):
        found, ended = tracker.update(
            k * 3, k * 0.6, _dets((10 + 8 * k, 10, 110 + 8 * k, 130), (300 - 8 * k, 40, 380 - 8 * k, 140))
        )
        assert not ended
        ids.append(sorted((t.track_id, t.boxes[-1][0]) for t, _ in found))
    assert all([i for i, _ in row] == [0, 1] for row in ids)
    assert all(row[0][1] < row[1][1] for row in ids)  # face 0 stays the left one
    assert [k for k in tracker.active[0].keys] == [0, 3, 6, 9, 12, 15]


def test_fast_motion_links_but_a_different_size_does_not() -> None:
    tracker = IouTracker(smoothing=0.0)
    tracker.update(0, 0.0, _dets((100, 100, 200, 200)))
    found, _ = tracker.update(3, 0.6, _dets((160, 110, 260, 210)))  # IoU 0.25, shift 0.6 side
    assert found[0][1] == 0  # linked: previous key 0
    found, _ = tracker.update(6, 1.2, _dets((100, 100, 400, 400)))  # 3x bigger: another face
    assert found[0][1] is None and len(tracker.active) == 2


def test_tracks_survive_short_gaps_and_end_after_max_gap() -> None:
    tracker = IouTracker(max_gap=2, smoothing=0.0)
    face = (50, 50, 150, 170)
    tracker.update(0, 0.0, _dets(face))
    for k in (1, 2):  # missed twice: still active
        found, ended = tracker.update(k, k * 0.2, Detections.empty())
        assert not found and not ended and tracker.active[0].missed == k
    found, _ = tracker.update(3, 0.6, _dets(face))
    assert found[0][0].track_id == 0 and found[0][1] == 0  # re-found: fill keys 1..3 from key 0
    for k in (4, 5):
        tracker.update(k, k * 0.2, Detections.empty())
    _, ended = tracker.update(6, 1.2, Detections.empty())  # third miss in a row: ends
    assert [t.track_id for t in ended] == [0] and not tracker.active
    found, _ = tracker.update(7, 1.4, _dets(face))
    assert found[0][0].track_id == 1


def test_smoothing_damps_jitter() -> None:
    rng = np.random.default_rng(0)
    raw, smooth = IouTracker(smoothing=0.0), IouTracker(smoothing=0.5)
    for k in range(30):
        jitter = rng.normal(0, 4, 4)
        box = tuple(np.array([100, 100, 200, 220]) + jitter)
        raw.update(k, k * 0.2, _dets(box))
        smooth.update(k, k * 0.2, _dets(box))
    assert len(raw.active) == len(smooth.active) == 1
    spread = [np.std(np.stack(t.boxes[5:]), axis=0).mean() for t in (raw.active[0], smooth.active[0])]
    assert spread[1] < 0.8 * spread[0]
    with pytest.raises(ValueError):
        IouTracker(smoothing=1.0)


def test_cut_distance_separates_shots() -> None:
    a = read_frames("real/pcavs_Pose_Source_00067.mp4", fps=5, max_frames=3)
    b = read_frames("real/videoretalking_face_2.mp4", fps=5, max_frames=1)
    sig = [frame_signature(f.image) for f in a + b]
    assert cut_distance(sig[0], sig[1]) < 0.25 and cut_distance(sig[1], sig[2]) < 0.25
    assert cut_distance(sig[2], sig[3]) > 0.35
