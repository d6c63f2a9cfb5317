"""What the bench's sections share: processes timed with their peak RSS, percentiles, a config
written to a file, synthetic words, the cold start of `bot.py --ask`, and the model synthetic
vectors are drawn from (in a module of its own so a build process can unpickle it)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from ..config import Config
from ..errors import TanyaError

ROOT = Path(__file__).resolve().parents[2]
COLD_QUESTION = "Siapa yang berjabat tangan dengan Kim Jong Un?"


# Runs argv[2:] and writes its peak RSS (KB) to argv[1]. A child forked straight from the
# bench inherits the bench's own high-water mark (Linux carries it across fork and exec: a
# bench that built a million passages made every child look 13 GB); forked from this small
# launcher it starts from the launcher's. It adds about 20 ms to the times measured.
LAUNCHER = (
    "import os,sys\npid=os.fork()\nif pid==0:\n    os.execv(sys.argv[2],sys.argv[2:])\n"
    "_,s,u=os.wait4(pid,0)\nopen(sys.argv[1],'w').write(str(u.ru_maxrss))\n"
    "sys.exit(os.waitstatus_to_exitcode(s))"
)


def measured(command: list[str]) -> tuple[list[str], Path]:
    """The command wrapped in the launcher, and the file it will write the peak RSS to."""
    fd, name = tempfile.mkstemp(prefix="tanya-rss-")
    os.close(fd)
    return [sys.executable, "-S", "-c", LAUNCHER, name, *command], Path(name)


def peak_rss_kb(path: Path) -> int:
    """The peak RSS the launcher wrote (and the file removed)."""
    try:
        return int(path.read_text() or 0)
    finally:
        path.unlink(missing_ok=True)


def percentiles(seconds: Sequence[float]) -> dict:
    """p50 and p95 in milliseconds."""
    if not seconds:
        return {"p50_ms": None, "p95_ms": None}
    ms = np.asarray(seconds) * 1000
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p95_ms": round(float(np.percentile(ms, 95)), 3),
    }


def write_config(config: Config, path: Path) -> Path:
    """Write a config file that loads back into `config` (JSON is valid YAML)."""
    data = {
        f.name: dataclasses.asdict(getattr(config, f.name))
        if dataclasses.is_dataclass(getattr(config, f.name))
        else getattr(config, f.name)
        for f in dataclasses.fields(config)
        if not f.metadata.get("internal")
    }
    path.write_text(json.dumps(data, indent=1), "utf-8")
    return path


def pseudo_words(n: int, rng: np.random.Generator) -> np.ndarray:
    """n distinct words of two to four Indonesian-looking syllables, in random order."""
    syllables = [c + v for c in "bcdgjklmnprstw" for v in "aiueo"]
    words: dict[str, None] = {}
    while len(words) < n:
        picks = rng.integers(0, len(syllables), (2 * n, 4))
        lengths = rng.integers(2, 5, 2 * n)
        for row, k in zip(picks, lengths, strict=True):
            words.setdefault("".join(syllables[i] for i in row[:k]))
    return np.array(list(words)[:n])


def measure_cold_start(config_file: Path, runs: int = 3, question: str = COLD_QUESTION) -> dict:
    """`bot.py --ask` as a new process: seconds until its first printed line, and peak RSS."""
    seconds, peak_kb = [], 0
    command = [sys.executable, "-m", "bot", "--config", str(config_file), "--ask", question]
    for _ in range(runs):
        wrapped, rss = measured(command)  # see LAUNCHER
        started = time.perf_counter()
        proc = subprocess.Popen(
            wrapped, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        first = ""
        while not first.strip():
            first = proc.stdout.readline()
            if not first:
                break
        seconds.append(time.perf_counter() - started)
        proc.stdout.read()
        err = proc.stderr.read()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
        peak_kb = max(peak_kb, peak_rss_kb(rss))
        if proc.returncode != 0:
            raise TanyaError(f"`{' '.join(command)}` failed ({proc.returncode}): {err.strip()}")
    return {
        "seconds_p50": round(float(np.median(seconds)), 3),
        "seconds_runs": [round(s, 3) for s in seconds],
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "command": "bot.py --ask (default backend)",
    }


@dataclass(frozen=True)
class VectorModel:
    """A Gaussian mixture in embedding space; `sample` draws normalised vectors from it."""

    name: str
    means: np.ndarray  # (components, d)
    bases: np.ndarray  # (components, d, d): standard noise @ basis has the component's covariance
    weights: np.ndarray  # (components,), summing to 1

    def sample(self, n: int, rng: np.random.Generator, batch: int = 100_000) -> np.ndarray:
        """n normalised float32 vectors."""
        dim = self.means.shape[1]
        out = np.empty((n, dim), dtype=np.float32)
        for i in range(0, n, batch):
            m = min(batch, n - i)
            picks = rng.choice(len(self.weights), size=m, p=self.weights)
            part = out[i : i + m]
            for c in np.unique(picks):
                rows = np.flatnonzero(picks == c)
                noise = rng.standard_normal((len(rows), dim), dtype=np.float32)
                part[rows] = noise @ self.bases[c] + self.means[c]
        faiss.normalize_L2(out)
        return out
