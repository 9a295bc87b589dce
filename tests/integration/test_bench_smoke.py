"""A smoke run of ``bellad bench``: tiny windows, two clips, every figure present.

The benchmark itself is not part of the suite (``make bench``); this checks
that it runs end to end (real daemon, Mosquitto, PulseAudio when installed)
and that its JSON holds a number for every figure, and that ``--wer`` runs.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
from pathlib import Path

import pytest

from bellad.benchmark.figures import REQUIRED, TARGETS, lookup
from tests.support.cli import run_bellad


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return run_bellad("bench", *args, timeout=240)


@pytest.mark.timeout(300)
def test_quick_bench_writes_every_figure(tmp_path: Path, data: Path) -> None:
    done = bench("--quick", "--audio", str(data / "audio"), "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "bench.json").read_text())
    figures = result["figures"]
    missing = [key for key in REQUIRED if not isinstance(lookup(figures, key), int | float)]
    assert not missing, f"figures without a number: {missing}"
    assert all(math.isfinite(lookup(figures, key)) for key in REQUIRED)
    assert [t["key"] for t in result["targets"]] == [t.key for t in TARGETS]
    assert all(isinstance(t["value"], int | float) for t in result["targets"])
    assert figures["latency"]["same_text_as_model_only"] == "2/2"
    paired, found = figures["latency"]["model_only_paired"].split("/")
    assert found == "2" and int(paired) >= 1  # timed alone seconds after the daemon's run
    assert result["meta"]["daemon_exit_status"] == [0, 0]
    # holding freed memory spares a transcription its page faults (counts, not timings);
    # held, only blocks the heap has no room for fault: 100s to a few 1,000s against ~24,000
    alloc = figures["allocator"]
    faults = {p: alloc[p]["page_faults"]["median"] for p in ("glibc", "held", "released")}
    assert faults["held"] * 3 < faults["released"] < faults["glibc"], faults
    memory = figures["memory"]
    assert memory["floor"]["utterances"] == 2  # the file run's, through the libraries
    assert 0 < memory["idle_file_mb"] < memory["idle_rss_mb"] <= memory["peak_rss_mb"]
    for target in TARGETS:  # the table prints each figure beside its target
        assert f"<= {target.limit:g} {target.unit}" in done.stdout
    assert (tmp_path / "logs").is_dir()
    # matplotlib comes with the bench extra, which make test installs
    assert (tmp_path / "bench.png").stat().st_size > 10_000


@pytest.mark.timeout(120)
def test_wer_mode_scores_both_encoder_inputs(tmp_path: Path, data: Path) -> None:
    pairs = tmp_path / "pairs"
    pairs.mkdir()
    with (data / "audio" / "manifest.tsv").open(newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t") if r["path"].endswith(".wav")][:2]
    for n, row in enumerate(rows):
        shutil.copy(data / "audio" / row["path"], pairs / f"clip{n}.wav")
        (pairs / f"clip{n}.txt").write_text(row["reference_text"], encoding="utf-8")
    done = bench("--wer", str(pairs), "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "out" / "wer.json").read_text())
    assert result["pairs"] == 2
    for mode in ("padded", "trimmed"):
        assert result[mode]["wer"] >= 0.0  # random weights: high, but a number
        assert result[mode]["reference_words"] > 10
    assert "padded" in done.stdout and "trimmed" in done.stdout
