"""Fixtures for the live-replay tests: a real llama-server serving a tiny random-weight model.

Without a llama-server binary (``KVERN_LLAMA_SERVER`` unset and none in the cache folder), the
tests that need it are skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from llama_proc import Server, llama_server_binary, start_server
from tiny_gguf import write_tiny_llama


@pytest.fixture(scope="session")
def llama_server_bin() -> Path:
    path = llama_server_binary()
    if path is None:
        pytest.skip("no llama-server: set KVERN_LLAMA_SERVER or run scripts/build_llama_server.sh")
    assert path.is_file(), f"KVERN_LLAMA_SERVER={path} is not a file"
    return path


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kvern.ingest.tokenizer import default_tokenizer_dir

    return write_tiny_llama(tmp_path_factory.mktemp("model") / "tiny.gguf", default_tokenizer_dir())


@pytest.fixture
def llama_server(llama_server_bin: Path, tiny_gguf: Path,
                 tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """``llama_server(slots=1, extra=(...))`` starts a fresh server; all are stopped at the end."""
    started: list[Server] = []

    def start(**kwargs: object) -> Server:
        server = start_server(llama_server_bin, tiny_gguf, tmp_path / f"server{len(started)}.log",
                              **kwargs)  # type: ignore[arg-type]
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
