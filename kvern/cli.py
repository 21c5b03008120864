"""Command line: thin Typer commands that build a config, call one function, report.

Options shared by several commands are declared once below and reused, so a flag learned
once works everywhere (DESIGN.md §11). ``boundary`` turns every ``KvernError`` into one
message and its exit code; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from kvern.errors import EXIT_INTERRUPTED, KvernError

app = typer.Typer(
    name="kvern",
    help="Trace analyzer and replay simulator for LLM prefix (KV) caching.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# -- shared options ------------------------------------------------------------------------
TraceArg = Annotated[Path, typer.Argument(help="request log (JSONL, .gz/.zst) or an ingested Parquet trace",
                                          show_default=False)]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="config file (default ./config.yaml)")]
OutputDirOpt = Annotated[Path | None, typer.Option("--output", "-o", help="report folder (default reports/<run>)")]
FormatOpt = Annotated[str | None, typer.Option("--format", help="log format; auto-detected per file")]
SkipInvalidOpt = Annotated[bool, typer.Option("--skip-invalid", help="skip malformed lines, count them")]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="re-ingest even if a cached trace exists")]
NoNormalizeOpt = Annotated[bool, typer.Option("--no-normalize", help="do not apply normalization rules")]
ModelOpt = Annotated[str | None, typer.Option("--model", help="model name for logs that carry none")]
ProfileOpt = Annotated[str | None, typer.Option("--profile", help="engine profile: vllm, sglang, ideal, …")]
CapacityOpt = Annotated[str | None, typer.Option(
    "--capacity", help="cache size(s): 1000,10000 (blocks), '64k tok', 8GiB, or a range 1k:1M")]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable result on stdout")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="no progress or tables")]

F = TypeVar("F", bound=Callable[..., Any])


def boundary(fn: F) -> F:
    """Map kvern's errors to one message and an exit code; Ctrl-C to 130."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from kvern.report.console import Output

        try:
            return fn(*args, **kwargs)
        except KvernError as e:
            Output().error(e.message)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            Output().error("interrupted")
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return wrapper  # type: ignore[return-value]


def _output(json_mode: bool = False, quiet: bool = False) -> Any:
    from kvern.report.console import Output

    return Output(json_mode=json_mode, quiet=quiet)


# -- ingest (issue 2) ----------------------------------------------------------------------
TraceOutOpt = Annotated[Path | None, typer.Option("--output", "-o", help="write the trace here (Parquet)")]
BlockSizeOpt = Annotated[int | None, typer.Option("--block-size", help="tokens per block for tokenized logs")]
TraceBlockSizeOpt = Annotated[int | None, typer.Option(
    "--trace-block-size", help="tokens per hash id in Mooncake traces (default 512)")]


@app.callback()
def _commands() -> None:
    """Trace analyzer and replay simulator for LLM prefix (KV) caching."""
    # Keeps `kvern ingest …` a subcommand even while it is the only command.


@app.command()
@boundary
def ingest(log: TraceArg, output: TraceOutOpt = None, config: ConfigOpt = None, fmt: FormatOpt = None,
           model: ModelOpt = None, block_size: BlockSizeOpt = None,
           trace_block_size: TraceBlockSizeOpt = None,
           skip_invalid: SkipInvalidOpt = False, no_cache: NoCacheOpt = False,
           no_normalize: NoNormalizeOpt = False, json_mode: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """Read a request log into the canonical trace and show what any prefix cache could reach."""
    from kvern.config import load_config
    from kvern.ingest.pipeline import load_trace, with_block_sizes
    from kvern.ingest.stats import summarize
    from kvern.ingest.table import summary_table
    from kvern.ingest.trace import write_trace

    out = _output(json_mode, quiet)
    cfg = with_block_sizes(load_config(config), block_size=block_size, trace_block_size=trace_block_size)
    trace = load_trace(log, cfg, fmt=fmt, skip_invalid=skip_invalid, no_cache=no_cache,
                       no_normalize=no_normalize, model=model, out=out)
    if output is not None:
        write_trace(trace, output)
    summary = summarize(trace)
    out.result(summary_table(summary), summary.to_dict())

# -- replay / compare (issue 3; replay --backend: issue 5) ---------------------------------

# -- sweep (issue 4) -----------------------------------------------------------------------

# -- gate / analyze (issue 6) --------------------------------------------------------------


def main() -> None:
    app()


if __name__ == "__main__":
    main()
