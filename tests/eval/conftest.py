"""Fixtures of the eval tests: clips built from real frames, tiny untrained models."""

from __future__ import annotations

import av
import numpy as np
import pytest

from dfdetect.config import PreprocessConfig
from dfdetect.types import AudioStatus, Clip, FaceCrops, FaceTrack, VideoInfo
from tests.conftest import media  # noqa: F401  (re-exported for the eval tests)

# Approximate 5-point landmarks of a centred face in a square crop (fractions of the side).
_LANDMARKS = np.array([[0.38, 0.42], [0.62, 0.42], [0.5, 0.55], [0.4, 0.68], [0.6, 0.68]], np.float32)


def decode(rel: str, seconds: float, fps: float, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames ``[T, size, size, 3]`` at ``fps`` (nearest), their timestamps, and 16 kHz mono audio."""
    path = media(rel)
    frames, times = [], []
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        nxt = 0.0
        for f in c.decode(stream):
            t = float(f.time)
            if t > seconds:
                break
            if t + 1e-6 >= nxt:
                frames.append(f.to_ndarray(format="rgb24", width=size, height=size))
                times.append(t)
                nxt += 1.0 / fps
    audio = np.zeros(0, np.float32)
    with av.open(str(path)) as c:
        if c.streams.audio:
            rs = av.AudioResampler(format="flt", layout="mono", rate=16000)
            chunks = [r.to_ndarray().reshape(-1) for fr in c.decode(audio=0) for r in rs.resample(fr)]
            audio = np.concatenate(chunks)[: int(seconds * 16000)].astype(np.float32)
    return np.stack(frames), np.asarray(times), audio


def make_clip(
    rel: str = "real/pcavs_Audio_Source_00015.mp4",
    seconds: float = 3.0,
    fps: float = 5.0,
    size: int = 64,
    n_tracks: int = 1,
    audio: bool = True,
    faces: bool = True,
    second_scale: float = 0.3,
) -> Clip:
    """A Clip whose face crops are whole frames of a real face video (pcavs clips are face crops)."""
    frames, times, wav = decode(rel, seconds, fps, size)
    tracks = []
    for i in range(n_tracks if faces else 0):
        scale = 1.0 if i == 0 else second_scale  # extra tracks: small background faces by default
        n = len(times)
        box = np.array([0, 0, 200 * scale, 200 * scale], np.float32)
        track = FaceTrack(
            track_id=i,
            timestamps=times,
            boxes=np.tile(box, (n, 1)),
            landmarks=np.tile(_LANDMARKS * 200 * scale, (n, 1, 1)),
            scores=np.ones(n, np.float32),
            detected=np.ones(n, bool),
        )
        crops = frames if i == 0 else 255 - frames  # a visibly different face for the other tracks
        tracks.append(
            FaceCrops(
                track=track,
                crops=crops,
                crop_boxes=np.tile(box, (n, 1)),
                crop_landmarks=np.tile(_LANDMARKS * size, (n, 1, 1)),
                blur=np.full(n, 100.0, np.float32),
            )
        )
    has_audio = audio and wav.size > 0
    return Clip(
        path=str(media(rel)),
        info=VideoInfo(path=str(media(rel)), duration=seconds, fps=25.0, width=224, height=224, codec="h264"),
        faces=tracks,
        audio=wav if has_audio else np.zeros(0, np.float32),
        sample_rate=16000,
        audio_status=AudioStatus.OK if has_audio else AudioStatus.NO_STREAM,
        speech=[(0.2, seconds - 0.2)] if has_audio else [],
        params={"fps": fps, "size": size, "margin": 1.3, "detector": "mtcnn"},
    )


@pytest.fixture(scope="session")
def pre() -> PreprocessConfig:
    return PreprocessConfig(fps=5.0, size=64, clip_frames=5, segment_seconds=0.5, mouth_size=32)


@pytest.fixture(scope="session")
def clip() -> Clip:
    return make_clip()


class StubModel:
    """A deterministic stand-in with the model output contract, to test the scoring *rules* exactly.

    ``logit`` = 3 x mean of the normalised frames (so a brighter track is more "fake"); ``sync_logit``
    follows the frames too (the darker track agrees best with the audio).
    """

    name = "stub"
    modalities = {"video", "audio", "sync"}

    def __init__(self, num_segments: int) -> None:
        self.k = num_segments

    def eval(self):
        return self

    def __call__(self, frames, audio=None, audio_mask=None, mouths=None):
        import torch

        frame = 3.0 * frames.mean(dim=(2, 3, 4))  # [B, T]
        logit = frame.mean(1)  # [B]
        return {
            "logit": logit,
            "segment_logits": logit[:, None].repeat(1, self.k),  # [B, K]
            "frame_logits": frame,
            "frame_attention": torch.softmax(frame, 1),
            "video_logit": logit,
            "audio_logit": torch.where(audio_mask, audio.abs().mean(1), torch.full_like(logit, -9.0)),
            "sync_logit": logit,
        }
