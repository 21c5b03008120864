"""The executor and sharded ingest without Ray: shards give the one-pass trace, byte for byte,
and the one-pass errors, whatever the shard size and the order in which shards finish."""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zstandard

from kvern.infra.config import Config
from kvern.infra.errors import InputError, UsageError
from kvern.infra.executor import RAY_MISSING, ExecutorSpec, LocalExecutor, RayExecutor, open_executor
from kvern.ingest.pipeline import ingest
from kvern.ingest.trace import write_trace
from tests.trace_paths import CHAT_SAMPLE, MOONCAKE


class Reversed:
    """An executor that finishes its tasks last to first, in this process."""

    name = "reversed"
    workers = 4

    def map(self, fn: Any, items: Iterable[Any], shared: Any = None, *,
            window: int | None = None) -> Iterator[tuple[int, Any]]:
        done = [(i, fn(shared, item)) for i, item in enumerate(items)]
        return (d for d in done[::-1])


def _cfg(shard_kb: float = 20) -> Config:
    cfg = Config()
    return cfg.model_copy(update={"executor": cfg.executor.model_copy(update={"shard_mb": shard_kb / 1024})})


def _bytes(trace: Any, path: Path) -> bytes:
    write_trace(trace, path)
    return path.read_bytes()


def _chat_lines(n: int) -> list[str]:
    return CHAT_SAMPLE.read_text(encoding="utf-8").splitlines()[:n]


def _same(log: Path, tmp_path: Path, executor: Any = None, **kw: Any) -> None:
    one = _bytes(ingest(log, _cfg(), **kw), tmp_path / "one.parquet")
    many = _bytes(ingest(log, _cfg(), executor=executor or Reversed(), **kw), tmp_path / "many.parquet")
    assert one == many


def test_shards_give_the_one_pass_trace_byte_for_byte(tmp_path: Path) -> None:
    lines = _chat_lines(60)
    for i in range(0, 60, 3):  # missing timestamps take the line before's, across shard boundaries
        obj = json.loads(lines[i])
        obj.pop("timestamp", None)
        lines[i] = json.dumps(obj)
    lines.insert(10, "")
    log = tmp_path / "chat.jsonl"
    log.write_bytes(b"\xef\xbb\xbf" + ("\n".join(lines)).encode())  # a BOM, no final newline
    _same(log, tmp_path)
    zst = tmp_path / "chat.jsonl.zst"
    zst.write_bytes(zstandard.ZstdCompressor().compress(log.read_bytes()))
    _same(zst, tmp_path)


def test_the_first_error_in_the_file_wins_and_skipped_lines_add_up(tmp_path: Path) -> None:
    lines = _chat_lines(40)
    lines[30] = "{not json"
    lines[12] = json.dumps({"unknown": 1})
    log = tmp_path / "bad.jsonl"
    log.write_text("\n".join(lines) + "\n")
    errors = []
    for ex in (None, Reversed()):
        with pytest.raises(InputError) as e:
            ingest(log, _cfg(), executor=ex)
        errors.append(e.value.message)
    assert errors[0] == errors[1] and ":13: " in errors[0]
    _same(log, tmp_path, skip_invalid=True)


def test_a_log_that_breaks_off_fails_after_its_earlier_bad_lines(tmp_path: Path) -> None:
    lines = _chat_lines(8)
    lines[3] = "[1]"
    rng = random.Random(0)  # incompressible lines, so that the cut lies past the first chunk read
    lines += [json.dumps({"pad": rng.randbytes(1500).hex()}) for _ in range(150)]
    data = zstandard.ZstdCompressor().compress(("\n".join(lines) + "\n").encode())
    log = tmp_path / "cut.jsonl.zst"
    log.write_bytes(data[: len(data) - 50])
    messages = []
    for ex in (None, Reversed()):
        with pytest.raises(InputError) as e:
            ingest(log, _cfg(), executor=ex)
        messages.append(e.value.message)
    assert messages[0] == messages[1] and ":4: " in messages[0]
    for ex in (None, Reversed()):
        with pytest.raises(InputError, match="truncated"):
            ingest(log, _cfg(), executor=ex, skip_invalid=True)


def test_a_folder_of_logs_is_sharded_file_by_file(tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    folder.mkdir()
    lines = _chat_lines(50)
    (folder / "a.jsonl").write_text("\n".join(lines[:30]) + "\n")
    (folder / "b.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(
        ("\n".join(lines[30:]) + "\n").encode()))
    _same(folder, tmp_path)
    (folder / "b.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(b"{oops\n"))
    errors = []
    for ex in (None, Reversed()):
        with pytest.raises(InputError) as e:
            ingest(folder, _cfg(), executor=ex)
        errors.append(e.value.message)
    assert errors[0] == errors[1] and "b.jsonl.zst:1: " in errors[0]


def test_hash_id_traces_are_read_in_one_pass(tmp_path: Path) -> None:
    log = tmp_path / "moon.jsonl"
    log.write_text("\n".join(MOONCAKE.read_text().splitlines()[:200]) + "\n")
    _same(log, tmp_path)


def test_local_processes_give_the_same_trace(tmp_path: Path) -> None:
    log = tmp_path / "chat.jsonl"
    log.write_text("\n".join(_chat_lines(40)) + "\n")
    _same(log, tmp_path, executor=LocalExecutor(2))


def test_local_executor_maps_with_a_shared_object() -> None:
    got = dict(LocalExecutor(2).map(_scaled, range(7), shared=10, window=3))
    assert got == {i: 10 * i for i in range(7)}
    assert list(open_executor(ExecutorSpec()).map(_scaled, [1, 2], shared=3)) == [(0, 3), (1, 6)]


def _scaled(shared: int, item: int) -> int:
    return shared * item


def test_without_ray_the_message_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(UsageError, match=r"pip install 'kvern\[ray\]'"):
        RayExecutor()
    from typer.testing import CliRunner

    from kvern.cli import app

    res = CliRunner().invoke(app, ["compare", str(MOONCAKE), "--executor", "ray"])
    assert res.exit_code == 2 and RAY_MISSING in res.output


def test_flags_and_config() -> None:
    cfg = Config().executor
    assert ExecutorSpec.of(None, None, cfg) == ExecutorSpec()
    assert ExecutorSpec.of("ray", "10.0.0.1:6379", cfg).ray_address == "10.0.0.1:6379"
    with pytest.raises(UsageError, match="--ray-address needs --executor ray"):
        ExecutorSpec.of(None, "10.0.0.1:6379", cfg)
    with pytest.raises(UsageError, match="local or ray"):
        ExecutorSpec.of("dask", None, cfg)
