"""Pictures and trackers of a training log: ``curves.png`` and optional TensorBoard event files."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from omnifield.errors import OmnifieldError
from omnifield.io.atomic import atomic_path

CURVE_KEYS = ("loss", "psnr")  # plotted when the log has them; evaluation lines get their own markers


def read_log(path: Path) -> list[dict[str, Any]]:
    """The records of a ``log.jsonl`` (lines that are not JSON objects — a line cut by a kill — are skipped)."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def write_curves(log_path: Path, out: Path) -> bool:
    """Plot loss and PSNR against training seconds from ``log_path`` into ``out`` (PNG, written atomically);
    evaluation records (``"eval": true``) are drawn as points. Returns whether there was anything to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_log(log_path)
    keys = [k for k in CURVE_KEYS if any(_finite(r.get(k)) for r in records)]
    if not keys:
        return False
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.5), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for evaluation, style in ((False, "-"), (True, "o")):
            points = [(r["elapsed"], r[key]) for r in records
                      if bool(r.get("eval")) == evaluation and _finite(r.get(key)) and _finite(r.get("elapsed"))]
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, style, label="held-out" if evaluation else "training batch")
        ax.set_xlabel("training seconds")
        ax.set_ylabel(key + (" (dB)" if key == "psnr" else ""))
        if key == "loss" and all(r.get(key, 1) > 0 for r in records if _finite(r.get(key))):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return True


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class TensorBoardLog:
    """Scalars of each log record into TensorBoard event files in ``folder`` (needs the ``tensorboard`` package)."""

    def __init__(self, folder: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise OmnifieldError("--log tensorboard needs the tensorboard package: pip install 'omnifield[tracking]'"
                                 ) from None
        self.writer = SummaryWriter(str(folder))

    def write(self, record: dict[str, Any]) -> None:
        prefix = "eval/" if record.get("eval") else "train/"
        for key, value in record.items():
            if key not in ("step", "eval") and _finite(value):
                self.writer.add_scalar(prefix + key, value, global_step=int(record["step"]))

    def close(self) -> None:
        self.writer.close()
