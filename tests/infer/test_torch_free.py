"""Scans without torch: the packaged default (CLIP tower + head, both on onnxruntime) and the ONNX
EfficientNet model (``v2``), their ONNX speech judge, YuNet faces (the default's own; ``faces="yunet"``
for v2), silero-vad's ONNX model. ``import dfdetect`` and ``dfdetect scan --help`` import no torch; a
whole scan (video with speech) in a fresh process imports none either; the ONNX path and the torch path
give the same verdicts."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from dfdetect.infer.lookup import WEIGHTS_DIR, has_onnxruntime, resolve_model
from tests.conftest import media

pytestmark = pytest.mark.skipif(
    not all((WEIGHTS_DIR / f"{m}.onnx").is_file() for m in ("v2", "default")) or not has_onnxruntime(),
    reason="the packaged ONNX models (src/dfdetect/weights/{v2,default}.onnx) or onnxruntime are missing",
)
TALKING = "real/pcavs_Audio_Source_00015.mp4"  # a face and speech: every stage of a scan runs
SAME_P = 1e-3  # largest |p_fake(onnx) - p_fake(torch)| accepted


def _run(code: str, *args: str) -> str:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_import_and_scan_help_import_no_torch() -> None:
    code = (
        "import sys, contextlib, io; import dfdetect; assert 'torch' not in sys.modules\n"
        "from dfdetect.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main(['scan', '--help'])\n"
        "print(sorted(m for m in ('torch', 'torchvision', 'scipy', 'timm') if m in sys.modules))"
    )
    assert _run(code).strip() == "[]"


@pytest.mark.parametrize(("model", "faces"), [("default", "auto"), ("v2", "yunet")])
def test_a_whole_scan_imports_no_torch(model: str, faces: str) -> None:
    code = (
        "import sys, json, dfdetect\n"
        "detector = dfdetect.load_detector(sys.argv[2], device='cpu', max_duration=3.0, faces=sys.argv[3])\n"
        "p = detector.scan(sys.argv[1])\n"
        "print(json.dumps({'torch': 'torch' in sys.modules, 'status': str(p.status), 'p': p.p_fake,\n"
        "    'speech': detector.speech and detector.speech.name, 'audio': p.modality.get('audio'),\n"
        "    'faces': detector.prepare_config.detector, 'model': str(detector.checkpoint.path)}))"
    )
    got = json.loads(_run(code, str(media(TALKING)), model, faces).strip().splitlines()[-1])
    assert got["model"].endswith(f"{model}.onnx") and got["faces"] == "yunet"
    assert got["status"] == "ok" and got["p"] is not None
    judge = {"default": "whisper-speech", "v2": "aasist-l-ft"}[model]  # each checkpoint's companion
    assert got["speech"] == judge and got["audio"] is not None  # the voice was judged too
    assert got["torch"] is False


def test_names_prefer_the_onnx_form_unless_torch_is_asked_for() -> None:
    assert resolve_model("v2")[0].name == "v2.onnx"
    assert resolve_model("v2", onnx=False)[0].name == "v2.pt"
    assert resolve_model(None)[0].name == "default.onnx"
    assert resolve_model(None, onnx=False)[0].name == "default.pt"
    assert resolve_model("aasist-l-ft")[0].suffix == ".onnx"


@pytest.mark.parametrize("model", ["default", "v2"])
@pytest.mark.parametrize("rel", [TALKING, "fake/ffpp_Deepfakes_519_515.mp4", "images/two_people.jpg"])
def test_onnx_and_torch_paths_agree(rel: str, model: str) -> None:
    from dfdetect.infer.pipeline import load_detector

    fast = load_detector(model, device="cpu", max_duration=3.0)
    slow = load_detector(model, device="cpu", max_duration=3.0, onnx=False)
    assert fast.checkpoint.path.suffix == ".onnx" and slow.checkpoint.path.suffix == ".pt"
    a, b = fast.scan(media(rel)), slow.scan(media(rel))
    assert a.status == b.status and a.verdict == b.verdict
    assert abs(a.p_fake - b.p_fake) <= SAME_P
    for key in set(a.modality) | set(b.modality):
        assert abs(a.modality[key] - b.modality[key]) <= SAME_P, key
