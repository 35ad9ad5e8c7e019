"""Metrics to `metrics.jsonl` and TensorBoard event files (tensorboardX: no TensorFlow needed)."""

from __future__ import annotations

import json
import math
import os

import numpy as np


def _scalar(v):
    v = float(np.asarray(v))
    return v if math.isfinite(v) else str(v)


def read_jsonl(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


class MetricWriter:
    """Appends {'step': n, ...} records; on resume drops records past the restored step, which
    belong to work after the last checkpoint that will be redone."""

    def __init__(self, workdir: str, resume_step: int, enabled: bool = True):
        self.enabled = enabled
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.tb = None
        if not enabled:
            return
        kept = [r for r in read_jsonl(self.path) if r["step"] <= resume_step]
        with open(self.path + ".tmp", "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in kept)
        os.replace(self.path + ".tmp", self.path)
        from tensorboardX import SummaryWriter

        self.tb = SummaryWriter(os.path.join(workdir, "tensorboard"), purge_step=resume_step + 1)

    def write(self, step: int, metrics: dict) -> None:
        if not self.enabled:
            return
        record = {"step": int(step), **{k: _scalar(v) for k, v in metrics.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        for k, v in record.items():
            if k != "step" and isinstance(v, float):
                self.tb.add_scalar(k, v, step)
        self.tb.flush()

    def records(self) -> list[dict]:
        return read_jsonl(self.path)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
