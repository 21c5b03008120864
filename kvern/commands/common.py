"""What the commands share: the report folder's name, ``--param`` parsing, the skeleton."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from kvern.infra.config import Config
from kvern.infra.console import Output
from kvern.infra.errors import Interrupted, UsageError

R = TypeVar("R")
_DOTTED = re.compile(r"^(?P<name>[a-z][a-z0-9_-]*)\.(?P<key>[a-z_0-9]+)=(?P<value>.+)$")


def parse_params(items: Sequence[str] | None, what: str = "POLICY",
                 example: str = "lfu.half_life=50") -> dict[str, dict[str, Any]]:
    """``--param`` items: ``["lfu.half_life=50"]`` -> ``{"lfu": {"half_life": "50"}}`` (the policy,
    or router, checks its keys)."""
    out: dict[str, dict[str, Any]] = {}
    for item in items or ():
        m = _DOTTED.match(item.strip())
        if not m:
            raise UsageError(f"--param {item!r}: expected {what}.KEY=VALUE, e.g. {example}")
        out.setdefault(m["name"], {})[m["key"]] = m["value"]
    return out


def check_policy_names(names: str | Sequence[str], flag: str) -> None:
    """Fail on an unknown policy with the flag the user typed (``--policy`` or ``--policies``)."""
    from kvern.sim.policies import POLICIES

    for name in names.split(",") if isinstance(names, str) else names:
        if name.strip() and name.strip() not in POLICIES:
            raise UsageError(f"{flag}: unknown policy {name.strip()!r} (one of {', '.join(POLICIES)})")


def run_folder(cfg: Config, command: str, trace_path: Path, profile: str, output: Path | None) -> Path:
    """``--output``, else ``<output_dir>/<command>-<trace name>-<profile>`` (same run, same folder)."""
    if output is not None:
        return output
    stem = trace_path.name.split(".")[0] or "trace"
    return Path(cfg.output_dir) / f"{command}-{stem}-{profile}"


def supported_policies(names: list[str], profile: str, out: Output) -> list[str]:
    """The configured policies narrowed to what ``profile`` runs, with a warning (a list from
    the config should not fail a command; one from a flag does, in the simulator)."""
    from kvern.sim.profiles import get_profile

    supported = get_profile(profile).policies
    kept = [p for p in names if supported is None or p in supported]
    if kept != names:
        out.warn(f"profile {profile} runs only {', '.join(kept) or 'none'} of the configured policies")
    return kept or names


def run_and_report(run: Callable[[], R], folder: Path, *, write: Callable[[R, Path], object],
                   show: Callable[[R], None], out: Output, what: str = "report") -> R:
    """The skeleton after loading: run → on Ctrl-C keep what finished → write → show.

    ``run`` raises an ``Interrupted`` carrying ``result`` (what finished, marked partial) on
    Ctrl-C; that result is written and shown like a whole one, then the command exits 130.
    Every folder written here also gets its ``report.html``, made from the files just written.
    """
    stopped: Interrupted | None = None
    try:
        result = run()
    except Interrupted as e:
        kept = getattr(e, "result", None)
        if kept is None:
            raise
        stopped, result = e, kept
    write_folder(folder, lambda staged: write(result, staged))
    if stopped is not None:
        out.warn(f"{stopped.message}: the {what} holds what finished, marked partial")
    out.info(f"{what} written to {folder}/")
    show(result)
    if stopped is not None:
        raise Interrupted(f"{stopped.message}; partial {what} written to {folder}/")
    return result


def write_folder(folder: Path, write: Callable[[Path], object]) -> None:
    """Write a report folder as one run: ``write`` fills a staging folder, ``report.html`` is
    made from it, then it replaces ``folder``'s files and removes what an earlier kvern run left
    there (``kvern.infra.files.replaced_folder``). Ctrl-C while writing leaves ``folder`` as it was."""
    from kvern.infra.files import replaced_folder
    from kvern.report.folder import is_report_file

    with replaced_folder(folder, is_report_file) as staged:
        write(staged)
        write_page(staged)


def clear_folder(folder: Path) -> list[str]:
    """Remove an earlier kvern run's files from ``folder`` (a run that writes as it goes, live
    replay, starts from a folder that holds only its own files)."""
    from kvern.infra.files import remove_stale
    from kvern.report.folder import is_report_file

    return remove_stale(folder, set(), is_report_file) if folder.is_dir() else []


def write_page(folder: Path) -> Path:
    """``report.html`` of a report folder, from the files in it."""
    from kvern.report.html import write_html

    return write_html(folder)
