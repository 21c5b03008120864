"""The cluster benchmark runs what ``kvern cluster`` runs, in one process and in two, and times
the whole command (a small trace: the benchmark's code paths, not its numbers)."""

from __future__ import annotations

import sys

import pytest

from benchmarks import bench_cluster


def test_bench_cluster_runs_one_and_two_jobs_and_the_command(monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    for extra in (["--jobs", "1"], ["--jobs", "2", "--cli"]):
        monkeypatch.setattr(sys, "argv", ["bench_cluster", "--requests", "300", "--replicas", "2",
                                          "--capacity", "200", *extra])
        bench_cluster.main()
    out = capsys.readouterr().out
    assert out.count("run_cluster:") == 2 and "--jobs 2:" in out
    assert "CPU s" in out and "token hit rate" in out
    assert "kvern cluster (whole command):" in out
