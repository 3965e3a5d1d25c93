"""The benchmark scripts run (on tiny sizes): their figures go into README.md, so they must not rot.
Their numbers are not asserted here; timings belong to the benchmarks, not to tests."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_recording_benchmark_runs_and_prints_its_table():
    out = subprocess.run([sys.executable, "benchmarks/bench_recording.py", "--quick"], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("device: CPU") or lines[0].startswith("device: GPU")
    assert lines[2].split()[0] == "demo" and lines[2].endswith("%")
