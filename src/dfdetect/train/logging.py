"""Training logs: TensorBoard scalars (``run_dir/tb``) and ``run_dir/metrics.jsonl`` for reports.

Validation metrics come from :mod:`dfdetect.metrics` (one home, shared with ``eval``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from dfdetect.metrics import binary_metrics  # noqa: F401 - the training loop's name for it


class RunLogger:
    """Writes scalars to TensorBoard and one JSON line per record to ``metrics.jsonl``.

    Only the logging rank (``enabled=True``) writes. On resume (``resume_step``), records after that
    step are dropped from ``metrics.jsonl`` and TensorBoard purges them, so a resumed run's logs read
    like an uninterrupted one's.
    """

    def __init__(self, run_dir: str | Path, enabled: bool = True, resume_step: int | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.path = self.run_dir / "metrics.jsonl"
        self._writer = None
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if resume_step is not None:
            self._truncate(resume_step)
        elif self.path.exists():
            self.path.unlink()
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=resume_step)

    def _truncate(self, step: int) -> None:
        if not self.path.exists():
            return
        keep = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    keep.append(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill
        self.path.write_text("".join(k + "\n" for k in keep), encoding="utf-8")

    def log(self, split: str, step: int, metrics: dict[str, Any], **context: Any) -> None:
        """Record ``metrics`` (numbers) of ``split`` (train/val/...) at optimizer step ``step``."""
        if not self.enabled:
            return
        clean = {k: _num(v) for k, v in metrics.items()}
        record = {"split": split, "step": step, **context, **clean}
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self._writer is not None:
            for key, value in clean.items():
                if value is not None and math.isfinite(value):
                    self._writer.add_scalar(f"{split}/{key}", value, step)

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _num(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """All records of ``run_dir/metrics.jsonl`` (for reports and tests)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
