"""The benchmark harness end to end at tiny sizes: the raw app and Sonor (embedded, uvicorn),
20 sockets, one-second trials. Asserts that every metric is there and nothing was lost; never
a speed."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.e2e
def test_bench_smoke_run_measures_every_metric_without_loss(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "bench.run", "--profile", "smoke", "--servers",
         "raw,sonor-embedded-uvicorn", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-4000:]
    results = json.loads((tmp_path / "results.json").read_text())
    scenarios = results["scenarios"]
    assert results["servers"] == ["raw", "sonor-embedded-uvicorn"]

    for server in ("raw", "sonor-embedded-uvicorn"):
        chat = scenarios["chat"][server]
        assert "error" not in chat, chat
        for layout in ("rooms_of_10", "big_room"):
            fixed = chat[layout]["fixed"]
            assert fixed["delivered"] == fixed["expected"] > 0
            assert (fixed["lost"], fixed["unacked"], fixed["errors"]) == (0, 0, {})
            assert fixed["p50_ms"] is not None and fixed["p99_ms"] is not None
            search = chat[layout]["search"]
            assert search["steps"] and all(s["lost"] == 0 for s in search["steps"])
            assert "held_deliveries_per_s" in search
        saturation = chat["saturation"]
        assert saturation["lost"] == saturation["closed_too_slow"] == 0
        assert saturation["rss_before_kib"] > 0 and saturation["rss_peak_kib"] > 0

        connections = scenarios["connections"][server]
        assert connections["sockets"] == 40
        assert connections["connects_per_s_first"] > 0 and connections["connects_per_s_last"] > 0
        assert connections["kib_per_connection"] is not None
        assert connections["idle_cpu_percent"] >= 0

    agency = scenarios["agency"]["sonor-embedded-uvicorn"]
    assert "error" not in agency, agency
    fixed = agency["fixed"]
    assert fixed["posted"] == fixed["accepted"] == fixed["delivered"] > 0
    assert fixed["socket_p99_ms"] is not None and fixed["post_p99_ms"] is not None
    assert "raw" not in scenarios["agency"] and "raw" not in scenarios["storm"]

    storm = scenarios["storm"]["sonor-embedded-uvicorn"]
    assert "error" not in storm, storm
    assert storm["reconnected"] == storm["sockets"] == 20
    assert storm["seqs_checked"] > 0 and storm["misses"] == 0
    # Exactly the live messages: none lost, and no message resumed after the restart counted.
    assert storm["live_after"]["delivered"] == storm["live_after"]["expected"] > 0

    table = (tmp_path / "results.md").read_text()
    for heading in ("## Chat fan-out", "## Connections", "## Agency notifications",
                    "## Reconnect storm"):
        assert heading in table
    assert (tmp_path / "chat_p99.png").stat().st_size > 0
    assert (tmp_path / "connections.png").stat().st_size > 0
