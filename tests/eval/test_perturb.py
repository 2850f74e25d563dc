"""Perturbations of cached clips: the H.264 one is the training augmentation's round trip."""

from __future__ import annotations

import numpy as np

from dfdetect.data.augment import h264 as augment_h264
from dfdetect.eval import perturb
from tests.data.clips import make_clip


def test_h264_perturbation_reencodes_every_track_like_the_augmentation():
    clip = make_clip(n_frames=6, size=48, tracks=2, audio=np.zeros(0, np.float32))
    out = perturb.apply(clip, "h264", 40)
    assert len(out.faces) == 2
    for before, after in zip(clip.faces, out.faces, strict=True):
        crops = np.asarray(before.crops)
        assert after.crops.shape == crops.shape and after.crops.dtype == np.uint8
        assert not np.array_equal(after.crops, crops)  # CRF 40 leaves visible codec loss
        assert np.abs(after.crops.astype(int) - crops).mean() < 20  # ... of the same faces
        np.testing.assert_array_equal(after.crops, augment_h264(crops, 40))  # one codec setting
