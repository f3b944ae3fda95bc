"""`make bench` on tiny sizes: every workload but the soak runs against real processes and the table and JSON are
produced. Figures are printed by the bench, never asserted (the machine is shared)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from bench.config import WORKLOADS
from bench.env import has_scheduler
from tests.support import ROOT

ENTRIES = ["raw", "floor", "submit-single", "submit-batch", "drain-default", "drain-tuned", "latency", "wait"]
ENTRIES += ["direct"]
ENTRIES += ["schedule"]
ENTRIES += ["memory"]
ENTRIES += ["cluster-drain"]
ENTRIES += ["otel"]
ENTRIES += ["workflows"]
ENTRIES += ["groups-drain-default", "groups-drain-tuned", "groups-held"]
SMOKED = [w for w in WORKLOADS if w != "soak"]  # the soak is long by nature: run by hand (bench/README.md)


@pytest.mark.e2e
@pytest.mark.timeout(210)
def test_make_bench_tiny_writes_table_and_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        # -o: the venv is already installed; PY: this interpreter (the one with the project installed)
        [
            "make",
            "-s",
            "-o",
            ".venv/.installed",
            "bench",
            f"PY={sys.executable}",
            f"BENCH_ARGS=--tiny --out {out} --only {','.join(SMOKED)}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=200,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    print(proc.stdout)

    lines = proc.stdout.splitlines()
    header = next(line for line in lines if line.startswith("workload"))
    assert "median of 1" in header and "ratio to raw RESP" in header and "ratio to redis-py loop" in header
    for entry in ENTRIES:
        assert any(line.startswith(entry + " ") for line in lines), f"no row for {entry}"
    assert f"written {out}" in proc.stdout

    report = orjson.loads(out.read_bytes())
    assert report["config"]["runs"] == 1 and report["config"]["only"] == SMOKED
    assert len(report["runs"]) == 1 and list(report["runs"][0]) == ENTRIES
    summary = report["summary"]
    for entry, figure in [
        ("raw", "xadd_per_s"),
        ("raw", "drain_per_s"),
        ("submit-single", "tasks_per_s"),
        ("submit-batch", "tasks_per_s"),
        ("drain-default", "tasks_per_s"),
        ("drain-tuned", "tasks_per_s"),
        ("floor", "latency_p50_ms"),
        ("floor", "schedule_p99_ms"),
        ("floor", "state_latency_p50_ms"),
        ("floor", "state_schedule_p99_ms"),
        ("latency", "started_p99_ms"),
        ("wait", "heard_p99_ms"),
        ("direct", "started_p99_ms"),
        ("direct", "submit_many_per_s"),
        ("memory", "bytes_per_task"),
        ("otel", "worker_cpu_ms_per_1k_off"),
        ("otel", "worker_cpu_ms_per_1k_on"),
        ("otel", "spans_per_task"),
    ]:
        value = summary[entry]["figures"][figure]
        assert value["min"] <= value["median"] <= value["max"] and value["min"] > 0, (entry, figure, value)
    for entry in ("submit-single", "submit-batch", "drain-default", "drain-tuned"):
        assert summary[entry]["figures"]["tasks_per_s_ratio"]["median"] > 0
        assert summary[entry]["figures"]["tasks_per_s_ratio_redispy"]["median"] > 0
    assert summary["latency"]["figures"]["started_p50_ms_ratio"]["median"] > 0  # to the floor
    assert summary["memory"]["figures"]["back_to_baseline"] in ("yes", "no")
    lateness = summary["schedule"]["figures"]["lateness_p99_ms"]
    if has_scheduler():
        assert isinstance(lateness, dict)
    else:
        assert lateness == "n/a (no scheduler)"
    assert report["machine"]["redis"] and report["machine"]["cores"]
