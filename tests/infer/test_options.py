"""ScanOptions: defaults from dfdetect.constants, one validation with messages that say what to do,
frozen, overrides, JSON round trip; the Detector keeps it as its one source of options."""

from __future__ import annotations

import dataclasses
import json

import pytest

import dfdetect
from dfdetect.cli.options import UsageError, scan_options
from dfdetect.constants import VERDICT_BAND
from dfdetect.infer.options import FIELDS, ScanOptions, ScanOptionsError
from tests.conftest import media


def test_defaults_come_from_the_constants() -> None:
    opts = ScanOptions()
    assert opts.thresholds == VERDICT_BAND
    assert (opts.aggregation, opts.max_duration, opts.speech, opts.faces) == ("mean", None, "auto", "auto")
    assert (opts.uncertainty, opts.uncertainty_method, opts.explain, opts.thumbnails) == (
        0,
        "auto",
        False,
        False,
    )


@pytest.mark.parametrize(
    ("changes", "field", "hint"),
    [
        ({"thresholds": (0.8, 0.2)}, "thresholds", "0 <= LOW <= HIGH <= 1"),
        ({"thresholds": (0.2, 1.5)}, "thresholds", "the default is 0.35 0.65"),
        ({"thresholds": (0.5,)}, "thresholds", "two numbers"),
        ({"aggregation": "median"}, "aggregation", "choose one of mean, max, topk, attention"),
        ({"max_duration": 0}, "max_duration", "seconds > 0"),
        ({"speech": ""}, "speech", "speech model name or checkpoint path"),
        ({"uncertainty": 1}, "uncertainty", "at least 2 passes"),
        ({"uncertainty": -3}, "uncertainty", "0 (off)"),
        ({"uncertainty_method": "bayes"}, "uncertainty_method", "choose one of auto, dropout, tta"),
        ({"faces": "dlib"}, "faces", "choose one of auto, "),
        ({"explain": "yes"}, "explain", "True or False"),
        ({"colour": "red"}, "colour", "the options are thresholds"),
    ],
)
def test_a_bad_value_names_the_option_and_what_it_accepts(changes: dict, field: str, hint: str) -> None:
    with pytest.raises(ScanOptionsError) as err:
        ScanOptions().replace(**changes)
    assert err.value.field == field and hint in str(err.value) and isinstance(err.value, ValueError)


def test_frozen_and_normalised() -> None:
    opts = ScanOptions(thresholds=[0.2, 0.8], max_duration=3, uncertainty=4)
    assert opts.thresholds == (0.2, 0.8) and isinstance(opts.max_duration, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.thresholds = (0.0, 1.0)  # type: ignore[misc]
    assert hash(opts) == hash(ScanOptions(thresholds=(0.2, 0.8), max_duration=3.0, uncertainty=4))


def test_replace_overrides_and_checks_again() -> None:
    base = ScanOptions(speech=None)
    strict = base.replace(thresholds=(0.1, 0.9), uncertainty=8)
    assert strict.thresholds == (0.1, 0.9) and strict.uncertainty == 8 and strict.speech is None
    assert base.thresholds == VERDICT_BAND, "the original is unchanged"
    assert base.replace() is base
    with pytest.raises(ScanOptionsError, match="uncertainty"):
        strict.replace(uncertainty=1)
    assert ScanOptions.of(strict.to_dict(), explain=True) == strict.replace(explain=True)


def test_json_round_trip() -> None:
    opts = ScanOptions(
        thresholds=(0.3, 0.7), aggregation="topk", max_duration=4.5, speech=None, faces="yunet"
    )
    data = json.loads(json.dumps(opts.to_dict()))
    assert set(data) == set(FIELDS) and data["thresholds"] == [0.3, 0.7]
    assert ScanOptions.from_dict(data) == opts
    assert ScanOptions.from_dict({}) == ScanOptions()
    with pytest.raises(ScanOptionsError, match="not a scan option"):
        ScanOptions.from_dict({**data, "band": [0, 1]})


def test_the_cli_names_the_flag_of_a_bad_value() -> None:
    with pytest.raises(UsageError, match=r"^--threshold-band: needs 0 <= LOW <= HIGH <= 1"):
        scan_options(thresholds=(0.8, 0.2))
    with pytest.raises(UsageError, match=r"^--uncertainty: "):
        scan_options(uncertainty=1)


def test_the_detector_keeps_its_options_and_checks_per_call_overrides(tiny_checkpoint) -> None:
    det = dfdetect.load_detector(str(tiny_checkpoint), device="cpu", thresholds=(0.2, 0.8), speech=None)
    assert det.options == ScanOptions(thresholds=(0.2, 0.8), speech=None) and det.thresholds == (0.2, 0.8)
    with pytest.raises(AttributeError):
        det.thresholds = (0.0, 1.0)  # one source: detector.options
    same = dfdetect.load_detector(str(tiny_checkpoint), device="cpu", options=det.options)
    assert same.options == det.options
    with pytest.raises(ScanOptionsError, match="uncertainty"):
        det.scan(media("images/obama.jpg"), uncertainty=1)  # refused before any work


def test_with_options_copies_the_detector_without_touching_it(detector) -> None:
    strict = detector.with_options(thresholds=(0.1, 0.9), aggregation="max")
    assert strict.options == detector.options.replace(thresholds=(0.1, 0.9), aggregation="max")
    assert strict.model is detector.model and detector.options.thresholds == VERDICT_BAND
    with pytest.raises(ScanOptionsError, match="fixed when a detector loads"):
        detector.with_options(max_duration=2.0)


def test_a_scanner_process_loads_the_service_options(tiny_checkpoint) -> None:
    from dfdetect.serve.scanners import ModelSpec, ProcessScanner, job_options

    options = ScanOptions(thresholds=(0.2, 0.8), speech=None)
    scanner = ProcessScanner(ModelSpec(str(tiny_checkpoint), "cpu", 1, options.to_dict()))
    try:
        assert scanner.info["thresholds"] == [0.2, 0.8]
    finally:
        scanner.close()
    assert job_options(True, 0) == {"explain": True, "thumbnails": True}
    assert job_options(False, 4) == {"explain": False, "thumbnails": True, "uncertainty": 4}
