"""Ctrl-C while the real tokenizer works on one huge prompt stops ``kvern ingest`` within a second
or two (issue 16): the call runs in a helper thread, and the process leaves without waiting
for it or freeing its heap. A real process, a real signal, the real tokenizer."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def test_ctrl_c_during_the_tokenizing_of_a_huge_line_stops_at_once(tmp_path: Path) -> None:
    words = ["alpha", "beta", "gamma", "delta", "prefix", "cache", "token", "request"]
    text = " ".join(words[(i * 7 + i // 5) % len(words)] for i in range(3_000_000))  # ~17 MB
    log = tmp_path / "huge.jsonl"
    log.write_text(json.dumps({"model": "m", "messages": [{"role": "user", "content": text}]}) + "\n")
    out = tmp_path / "out.parquet"
    proc = subprocess.Popen(
        [sys.executable, "-m", "kvern.cli", "ingest", str(log), "-o", str(out), "--no-cache"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        seen = []
        for line in proc.stderr:  # printed when the tokenizer is loaded, just before it runs
            seen.append(line)
            if "tokenizer" in line:
                break
        assert proc.poll() is None, "".join(seen)
        time.sleep(1.0)  # well inside the tokenizer's call (many seconds for this prompt)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        took = time.monotonic() - sent
        rest = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, rest
    assert "interrupted" in rest and "Traceback" not in rest, rest
    assert took < 3.0, f"exit took {took:.2f} s after Ctrl-C"  # 1–2 s asked; slack for a loaded CI
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["huge.jsonl"], "a temp file was left"
