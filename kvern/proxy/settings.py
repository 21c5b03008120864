"""The proxy's settings: the ``proxy:`` config section with the command-line flags applied.

Checked here, before anything listens or writes, so a bad flag is one message and exit 2.
Everything in it is plain data: it is handed to the analytics worker process as JSON.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from kvern.infra.config import ProxyConfig
from kvern.infra.errors import UsageError

CONTENT_MODES = ("full", "hashes", "none")


@dataclass(frozen=True, slots=True)
class ProxySettings:
    upstream: str
    """The upstream server's root, e.g. ``http://127.0.0.1:8000`` (no trailing ``/v1``)."""
    host: str
    port: int
    log_dir: Path
    store: Path
    content: str
    profile: str
    policy: str
    capacity: str
    rotate_bytes: int
    rotate_s: float
    fsync_s: float
    queue_bytes: int
    connect_timeout_s: float
    read_timeout_s: float
    grace_s: float
    window_minutes: int
    hot_prefixes: int

    @property
    def public_upstream(self) -> str:
        """The upstream URL without any user:password, safe to print and store."""
        return public_url(self.upstream)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["log_dir"], d["store"] = str(self.log_dir), str(self.store)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ProxySettings:
        return cls(**{**d, "log_dir": Path(d["log_dir"]), "store": Path(d["store"])})


def resolve(pc: ProxyConfig, *, upstream: str | None = None, host: str | None = None,
            port: int | None = None, log_dir: Path | None = None, store: Path | None = None,
            content: str | None = None, profile: str | None = None, policy: str | None = None,
            capacity: str | None = None) -> ProxySettings:
    """The settings from the config section, each flag given overriding its key."""
    url = upstream or pc.upstream
    if not url:
        raise UsageError("--upstream is required (or proxy.upstream in the config), "
                         "e.g. --upstream http://127.0.0.1:8000")
    parts = urlsplit(url.rstrip("/"))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--upstream {public_url(url)}: expected an http:// or https:// URL")
    root = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/").removesuffix("/v1"), "", ""))
    mode = content or pc.content
    if mode not in CONTENT_MODES:
        raise UsageError(f"--content {mode!r}: choose one of {', '.join(CONTENT_MODES)}")
    port = pc.port if port is None else port
    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port}: not a TCP port")
    folder = Path(log_dir if log_dir is not None else pc.log_dir).expanduser()
    db = Path(store if store is not None else pc.store or folder / "analytics.sqlite").expanduser()
    return ProxySettings(
        upstream=root, host=host or pc.host, port=port, log_dir=folder, store=db, content=mode,
        profile=profile or pc.profile, policy=policy or pc.policy, capacity=capacity or pc.capacity,
        rotate_bytes=int(pc.rotate_mb * 2**20), rotate_s=pc.rotate_minutes * 60.0, fsync_s=pc.fsync_s,
        queue_bytes=int(pc.queue_mb * 2**20), connect_timeout_s=pc.connect_timeout_s,
        read_timeout_s=pc.read_timeout_s, grace_s=pc.grace_s, window_minutes=pc.window_minutes,
        hot_prefixes=pc.hot_prefixes)


def public_url(url: str) -> str:
    parts = urlsplit(url)
    netloc = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
