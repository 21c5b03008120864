"""What ``kvern dashboard`` does: check the extra is installed, then ``streamlit run`` the app.

Streamlit runs in a child process (its own server and event loop), headless: kvern prints the
URL and the user opens it; Ctrl-C stops both.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from kvern.infra.errors import InputError, UsageError

APP = Path(__file__).with_name("app.py")
INSTALL_HINT = "pip install 'kvern[dashboard]'"


def require_extra() -> None:
    """A ``UsageError`` (exit 2) naming the install command when the extra is missing."""
    missing = [m for m in ("streamlit", "altair") if importlib.util.find_spec(m) is None]
    if missing:
        raise UsageError(f"kvern dashboard needs {', '.join(missing)}: {INSTALL_HINT}")


def store_file(store: Path) -> Path:
    """``--store``: the SQLite file, or a proxy log folder meaning its default ``analytics.sqlite``.

    A store that does not exist yet is fine: the Live page waits for the proxy to create it."""
    store = store.expanduser()
    return (store / "analytics.sqlite" if store.is_dir() else store).resolve()


def streamlit_command(dirs: Sequence[Path], *, port: int, host: str, store: Path | None = None) -> list[str]:
    """The ``streamlit run`` command line (``--store`` and the report folders go after ``--`` to
    the app)."""
    return [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless=true",
            f"--server.port={port}", f"--server.address={host}", "--browser.gatherUsageStats=false",
            "--server.fileWatcherType=none", "--global.developmentMode=false", "--client.toolbarMode=viewer",
            "--", *(["--store", str(store_file(store))] if store is not None else []),
            *(str(d.resolve()) for d in dirs)]


def launch(dirs: Sequence[Path], *, port: int = 8501, host: str = "127.0.0.1",
           store: Path | None = None) -> int:
    """Serve the dashboard until Ctrl-C; return Streamlit's exit code."""
    require_extra()
    for d in dirs:
        if not d.is_dir():
            raise InputError("no such directory (the dashboard reads folders of reports)", d)
    if not 0 < port < 65536:
        raise UsageError(f"--port {port}: expected 1-65535")
    print(f"kvern dashboard on http://{host}:{port} (Ctrl-C stops it)", file=sys.stderr)
    return subprocess.call(streamlit_command(dirs, port=port, host=host, store=store))
