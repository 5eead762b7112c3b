"""Run folders as a contract: the files a search and a training write, named once.

`python -m search.run --out DIR` writes a SearchRun, `python -m search.train --out DIR` a
TrainRun; every command and benchmark that reads one (a protocol, the demo, crossdevice) takes
the paths from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SearchRun:
    """A search's folder: its result, the argmax and sampled architectures, theta, the
    per-epoch log, the plots and the checkpoint --resume continues from."""

    root: Path

    FILES = ("result.json", "arch.json", "samples.json", "theta.json", "log.jsonl", "log.csv",
             "probs.png", "curves.png", "checkpoint.pt")

    @property
    def result(self) -> Path:
        return self.root / "result.json"

    @property
    def arch(self) -> Path:
        return self.root / "arch.json"

    @property
    def samples(self) -> Path:
        return self.root / "samples.json"

    @property
    def theta(self) -> Path:
        return self.root / "theta.json"

    @property
    def log_jsonl(self) -> Path:
        return self.root / "log.jsonl"

    @property
    def log_csv(self) -> Path:
        return self.root / "log.csv"

    @property
    def probs_plot(self) -> Path:
        return self.root / "probs.png"

    @property
    def curves_plot(self) -> Path:
        return self.root / "curves.png"

    @property
    def checkpoint(self) -> Path:
        return self.root / "checkpoint.pt"

    @property
    def reanchored_lut(self) -> Path:
        """`search.run --reanchor`: the LUT re-anchored to this machine, searched with."""
        return self.root / "lut.reanchored.json"

    def existing(self) -> list[str]:
        """The run files already in the folder."""
        return [name for name in self.FILES if (self.root / name).exists()]


@dataclass(frozen=True)
class TrainRun:
    """A training's folder: the checkpoint after every epoch, the architecture, the per-epoch
    log and the result."""

    root: Path

    FILES = ("checkpoint.pt", "arch.json", "log.jsonl", "result.json")

    @property
    def checkpoint(self) -> Path:
        return self.root / "checkpoint.pt"

    @property
    def arch(self) -> Path:
        return self.root / "arch.json"

    @property
    def log_jsonl(self) -> Path:
        return self.root / "log.jsonl"

    @property
    def result(self) -> Path:
        return self.root / "result.json"
