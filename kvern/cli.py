"""Command line: option declarations only; each command calls one function of ``kvern.commands``.

Options shared by several commands are declared once below and reused, so a flag learned
once works everywhere (docs/architecture.md §11). ``boundary`` turns every ``KvernError`` into one
message and its exit code, and an OS error on a named file (an unwritable `-o`) into
"file: reason", exit 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from kvern.infra.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, KvernError, UsageError

app = typer.Typer(
    name="kvern",
    help="Trace analyzer and replay simulator for LLM prefix (KV) caching.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# -- shared options ------------------------------------------------------------------------
TraceArg = Annotated[Path, typer.Argument(help="request log (JSONL, .gz/.zst), a folder of them (a "
                                          "kvern proxy log), or an ingested Parquet trace",
                                          show_default=False)]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="config file (default ./config.yaml)")]
OutputDirOpt = Annotated[Path | None, typer.Option(
    "--output", "-o", help="report folder (default reports/<run>)")]
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
NoChartsOpt = Annotated[bool, typer.Option("--no-charts", help="write the tables only (no PNG charts)")]

F = TypeVar("F", bound=Callable[..., Any])


def boundary(fn: F) -> F:
    """Map kvern's errors to one message and an exit code; Ctrl-C to 130."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from kvern.infra.console import Output
        from kvern.infra.files import forget_inputs
        from kvern.infra.startup import hold_back_unused_imports

        forget_inputs()
        hold_back_unused_imports()
        try:
            _check_text_args(kwargs)
            return fn(*args, **kwargs)
        except KvernError as e:
            Output().error(e.message)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            Output().error("interrupted")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except OSError as e:  # a file the user named (-o, --config) that cannot be written or read
            name = e.filename2 or e.filename
            if name is None:
                raise
            Output().error(f"{name}: {e.strerror or e}")
            raise typer.Exit(EXIT_BAD_INPUT) from None

    return wrapper  # type: ignore[return-value]


def _check_text_args(kwargs: dict[str, Any]) -> None:
    """An argument with bytes that are not UTF-8 (a lone surrogate once decoded) cannot be a
    model name, URL or key: one message, not a UnicodeEncodeError deep inside a run."""
    from kvern.infra.jsondata import has_surrogate

    for name, value in kwargs.items():
        values = value if isinstance(value, list) else [value]
        for v in values:
            if isinstance(v, str) and has_surrogate(v):  # a path may be any bytes: the OS decides
                flag = "--" + name.replace("_", "-")
                raise UsageError(f"{flag}: not valid UTF-8 text: {str(v).encode('utf-8', 'replace')!r}")


def _output(json_mode: bool = False, quiet: bool = False) -> Any:
    from kvern.infra.console import Output

    return Output(json_mode=json_mode, quiet=quiet)


# -- ingest ------------------------------------------------------------------------------
TraceOutOpt = Annotated[Path | None, typer.Option("--output", "-o", help="write the trace here (Parquet)")]
BlockSizeOpt = Annotated[int | None, typer.Option("--block-size", help="tokens per block for tokenized logs")]
TraceBlockSizeOpt = Annotated[int | None, typer.Option(
    "--trace-block-size", help="tokens per hash id in Mooncake traces (default 512)")]


ExecutorOpt = Annotated[str | None, typer.Option(
    "--executor", help="where shards and simulations run: local (default) or ray (pip install 'kvern[ray]')")]
RayAddressOpt = Annotated[str | None, typer.Option(
    "--ray-address", help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray for this run)")]


def _load(fmt: str | None, model: str | None, skip_invalid: bool, no_cache: bool, no_normalize: bool,
          block_size: int | None, trace_block_size: int | None, executor: Any = None) -> Any:
    from kvern.ingest.pipeline import LoadOptions

    return LoadOptions(fmt=fmt, skip_invalid=skip_invalid, no_cache=no_cache, no_normalize=no_normalize,
                       model=model, block_size=block_size, trace_block_size=trace_block_size,
                       executor=executor)


def _executor(kind: str | None, ray_address: str | None, cfg: Any) -> Any:
    from kvern.infra.executor import ExecutorSpec

    return ExecutorSpec.of(kind, ray_address, cfg.executor)


@app.command()
@boundary
def ingest(log: TraceArg, output: TraceOutOpt = None, config: ConfigOpt = None, fmt: FormatOpt = None,
           model: ModelOpt = None, block_size: BlockSizeOpt = None,
           trace_block_size: TraceBlockSizeOpt = None,
           skip_invalid: SkipInvalidOpt = False, no_cache: NoCacheOpt = False,
           no_normalize: NoNormalizeOpt = False, executor: ExecutorOpt = None,
           ray_address: RayAddressOpt = None, json_mode: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """Read a request log into the canonical trace and show what any prefix cache could reach."""
    from kvern.commands.ingest import ingest as run
    from kvern.infra.config import load_config

    cfg = load_config(config)
    run(log, cfg, _load(fmt, model, skip_invalid, no_cache, no_normalize, block_size, trace_block_size,
                        _executor(executor, ray_address, cfg)), output, _output(json_mode, quiet))

# -- replay / compare (replay --backend: live) ---------------------------------
PolicyOpt = Annotated[str, typer.Option(
    "--policy", help="eviction policy: lru, fifo, lfu, cost, s3fifo, arc, sieve, gdsf, mru, slru, "
                     "followup, belady")]
PoliciesOpt = Annotated[str | None, typer.Option(
    "--policies", help="policies side by side, e.g. lru,lfu,cost,belady (default: config)")]
ParamOpt = Annotated[list[str] | None, typer.Option(
    "--param", help="policy parameter POLICY.KEY=VALUE, e.g. lfu.half_life=50 (repeatable)")]
# live replay: with --backend, replay sends the trace to a server instead of simulating
BackendOpt = Annotated[str | None, typer.Option(
    "--backend", help="replay live against this OpenAI-compatible server, e.g. http://127.0.0.1:8080 "
    "(a trailing /v1 is dropped)")]
SpeedupOpt = Annotated[float | None, typer.Option("--speedup", help="live: log timestamps, X times faster")]
RateOpt = Annotated[str | None, typer.Option("--rate", help="live: R req/s, R:poisson (default), R:constant")]
ConcurrencyOpt = Annotated[int | None, typer.Option(
    "--concurrency", help="live: most requests in flight (alone: a closed loop of N)")]
MaxRequestsOpt = Annotated[int | None, typer.Option("--max-requests", help="live: send the first N requests")]
DurationOpt = Annotated[float | None, typer.Option("--duration", help="live: stop sending after S seconds")]
TimeoutOpt = Annotated[float | None, typer.Option("--timeout", help="live: seconds per attempt")]
RetriesOpt = Annotated[int | None, typer.Option("--retries", help="live: retries per request (config live)")]
ServedModelOpt = Annotated[str | None, typer.Option("--served-model", help="live: model name to send")]
ApiKeyOpt = Annotated[str | None, typer.Option(
    "--api-key", help="live: API key (default: the variable named by live.api_key_env)", show_default=False)]


@app.command()
@boundary
def replay(trace: TraceArg, policy: PolicyOpt = "lru", capacity: CapacityOpt = None,
           profile: ProfileOpt = None, param: ParamOpt = None, output: OutputDirOpt = None,
           config: ConfigOpt = None, fmt: FormatOpt = None, model: ModelOpt = None,
           skip_invalid: SkipInvalidOpt = False, no_cache: NoCacheOpt = False,
           no_normalize: NoNormalizeOpt = False, block_size: BlockSizeOpt = None,
           trace_block_size: TraceBlockSizeOpt = None, no_charts: NoChartsOpt = False,
           json_mode: JsonOpt = False, quiet: QuietOpt = False, backend: BackendOpt = None,
           speedup: SpeedupOpt = None, rate: RateOpt = None, concurrency: ConcurrencyOpt = None,
           max_requests: MaxRequestsOpt = None, duration: DurationOpt = None, timeout: TimeoutOpt = None,
           retries: RetriesOpt = None, served_model: ServedModelOpt = None,
           api_key: ApiKeyOpt = None) -> None:
    """Simulate one policy on a trace (or, with --backend, replay it live and reconcile)."""
    from kvern.infra.config import load_config

    live_only = {"--speedup": speedup, "--rate": rate, "--concurrency": concurrency,
                 "--max-requests": max_requests, "--duration": duration, "--timeout": timeout,
                 "--retries": retries, "--served-model": served_model, "--api-key": api_key}
    given = [flag for flag, value in live_only.items() if value is not None]
    if backend is None and given:
        raise UsageError(f"live-replay options without --backend URL ({', '.join(given)}); without "
                         "--backend, replay simulates and would ignore them")
    if backend is not None and param:
        raise UsageError("--param: simulation option; a live replay (--backend) does not use it")
    cfg, out = load_config(config), _output(json_mode, quiet)
    load = _load(fmt, model, skip_invalid, no_cache, no_normalize, block_size, trace_block_size)
    if backend is not None:
        from kvern.commands.live import default_folder, replay_live
        from kvern.live.replay import LiveOptions

        prof = profile or cfg.simulate.profile
        replay_live(trace, cfg, LiveOptions(
            backend=backend, output_dir=output or default_folder(cfg, trace, prof), speedup=speedup,
            rate=rate, concurrency=concurrency, max_requests=max_requests, duration_s=duration,
            timeout_s=timeout, retries=retries, served_model=served_model, api_key=api_key, profile=prof,
            policy=policy, capacity=capacity, load=load), out)
        return
    from kvern.commands.simulate import simulate

    simulate(trace, cfg, load, command="replay", policies=[policy], capacity=capacity, profile=profile,
             params=param, output=output, out=out, charts=not no_charts)


@app.command()
@boundary
def compare(trace: TraceArg, policies: PoliciesOpt = None, capacity: CapacityOpt = None,
            profile: ProfileOpt = None, param: ParamOpt = None, output: OutputDirOpt = None,
            config: ConfigOpt = None, fmt: FormatOpt = None, model: ModelOpt = None,
            skip_invalid: SkipInvalidOpt = False, no_cache: NoCacheOpt = False,
            no_normalize: NoNormalizeOpt = False, block_size: BlockSizeOpt = None,
            trace_block_size: TraceBlockSizeOpt = None, no_charts: NoChartsOpt = False,
            executor: ExecutorOpt = None, ray_address: RayAddressOpt = None,
            json_mode: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """Simulate several policies side by side; the table marks the best online one."""
    from kvern.commands.simulate import simulate
    from kvern.infra.config import load_config

    cfg = load_config(config)
    spec = _executor(executor, ray_address, cfg)
    load = _load(fmt, model, skip_invalid, no_cache, no_normalize, block_size, trace_block_size, spec)
    simulate(trace, cfg, load, command="compare", policies=policies or cfg.simulate.policies,
             capacity=capacity, profile=profile, params=param, output=output, out=_output(json_mode, quiet),
             policies_from_config=policies is None, charts=not no_charts, executor=spec)


# -- sweep -------------------------------------------------------------------------------
PointsOpt = Annotated[int, typer.Option("--points", help="log-spaced capacities per policy (a range)")]
JobsOpt = Annotated[int | None, typer.Option("--jobs", help="parallel simulations (default: all cores)")]


@app.command()
@boundary
def sweep(trace: TraceArg, policies: PoliciesOpt = None, capacity: CapacityOpt = None, points: PointsOpt = 20,
          profile: ProfileOpt = None, param: ParamOpt = None, jobs: JobsOpt = None,
          output: OutputDirOpt = None, config: ConfigOpt = None, fmt: FormatOpt = None,
          model: ModelOpt = None, skip_invalid: SkipInvalidOpt = False, no_cache: NoCacheOpt = False,
          no_normalize: NoNormalizeOpt = False, block_size: BlockSizeOpt = None,
          trace_block_size: TraceBlockSizeOpt = None, no_charts: NoChartsOpt = False,
          executor: ExecutorOpt = None, ray_address: RayAddressOpt = None,
          json_mode: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """Hit rate against capacity per policy, and the capacity that reaches 50/80/90/95% of it."""
    from kvern.commands.sweep import sweep as run
    from kvern.infra.config import load_config

    cfg = load_config(config)
    spec = _executor(executor, ray_address, cfg)
    load = _load(fmt, model, skip_invalid, no_cache, no_normalize, block_size, trace_block_size, spec)
    run(trace, cfg, load,
        policies=policies, capacity=capacity, points=points, profile=profile, params=param, jobs=jobs,
        output=output, out=_output(json_mode, quiet), charts=not no_charts, executor=spec)


# -- gate / analyze ----------------------------------------------------------------------
GatePolicyOpt = Annotated[str | None, typer.Option("--policy", help="policy to judge (default: gate.policy)")]
BaselineOpt = Annotated[Path | None, typer.Option(
    "--baseline", help="baseline JSON to compare with (written by --update-baseline)")]
MinHitRateOpt = Annotated[float | None, typer.Option(
    "--min-hit-rate", help="fail below this value of the metric, 0-1 (default: gate.min_hit_rate)")]
MaxDropOpt = Annotated[float | None, typer.Option(
    "--max-drop", help="fail if the metric fell by more, absolute: 0.02 = 2 points (default: gate.max_drop)")]
MetricOpt = Annotated[str | None, typer.Option(
    "--metric", help="token_hit_rate, request_hit_rate or savings (default: gate.metric)")]
GateOutputOpt = Annotated[Path | None, typer.Option(
    "--output", "-o", help="also write gate.json and report.html to this folder (a CI artifact)")]
UpdateBaselineOpt = Annotated[bool, typer.Option("--update-baseline", help="record this run as the baseline")]
ShowTextOpt = Annotated[bool, typer.Option("--show-text", help="show decoded prompt text in the report")]
TopOpt = Annotated[int, typer.Option("--top", min=1, help="cache breakers to show")]
TopPrefixesOpt = Annotated[int, typer.Option("--top-prefixes", min=0, help="hot prefixes to show")]
NoMeasureOpt = Annotated[bool, typer.Option("--no-measure", help="don't re-ingest to measure proposed rules")]


@app.command()
@boundary
def gate(trace: TraceArg, baseline: BaselineOpt = None, min_hit_rate: MinHitRateOpt = None,
         max_drop: MaxDropOpt = None, metric: MetricOpt = None, policy: GatePolicyOpt = None,
         capacity: CapacityOpt = None, profile: ProfileOpt = None, update_baseline: UpdateBaselineOpt = False,
         output: GateOutputOpt = None, config: ConfigOpt = None, fmt: FormatOpt = None,
         model: ModelOpt = None,
         skip_invalid: SkipInvalidOpt = False, no_cache: NoCacheOpt = False,
         no_normalize: NoNormalizeOpt = False, block_size: BlockSizeOpt = None,
         trace_block_size: TraceBlockSizeOpt = None,
         json_mode: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """CI gate: exit 1 when the hit rate regressed (and name the cache breakers), 0 when it holds."""
    from kvern.analysis.gate import Thresholds
    from kvern.analysis.measure import SimSetting
    from kvern.commands.gate import gate as run
    from kvern.infra.config import load_config

    cfg = load_config(config)
    run(trace, cfg, _load(fmt, model, skip_invalid, no_cache, no_normalize, block_size, trace_block_size),
        baseline=baseline, thresholds=Thresholds.from_config(cfg.gate, metric, min_hit_rate, max_drop),
        setting=SimSetting.from_config(cfg, policy, capacity, profile), update_baseline=update_baseline,
        output=output, out=_output(json_mode, quiet))


@app.command()
@boundary
def analyze(trace: TraceArg, top: TopOpt = 10, top_prefixes: TopPrefixesOpt = 20,
            show_text: ShowTextOpt = False, no_measure: NoMeasureOpt = False, policy: GatePolicyOpt = None,
            capacity: CapacityOpt = None, profile: ProfileOpt = None, output: OutputDirOpt = None,
            config: ConfigOpt = None, fmt: FormatOpt = None, model: ModelOpt = None,
            skip_invalid: SkipInvalidOpt = False, no_cache: NoCacheOpt = False,
            no_normalize: NoNormalizeOpt = False, block_size: BlockSizeOpt = None,
            trace_block_size: TraceBlockSizeOpt = None,
            json_mode: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """Profile a trace, name what breaks prefix caching (and the rule that fixes it), show hot prefixes."""
    from kvern.analysis.measure import SimSetting
    from kvern.commands.analyze import analyze as run
    from kvern.infra.config import load_config

    cfg = load_config(config)
    run(trace, cfg, _load(fmt, model, skip_invalid, no_cache, no_normalize, block_size, trace_block_size),
        setting=SimSetting.from_config(cfg, policy, capacity, profile), top=top, top_prefixes=top_prefixes,
        show_text=show_text, measure=not no_measure, output=output, out=_output(json_mode, quiet))


# -- proxy -------------------------------------------------------------------------------
UpstreamOpt = Annotated[str | None, typer.Option(
    "--upstream", help="OpenAI-compatible server to forward to, e.g. http://127.0.0.1:8000 "
    "(default: proxy.upstream)",
    show_default=False)]
ProxyHostOpt = Annotated[str | None, typer.Option(
    "--host", help="address to listen on (default: proxy.host)")]
ProxyPortOpt = Annotated[int | None, typer.Option(
    "--port", help="port to listen on; 0 = any (default: proxy.port)")]
LogDirOpt = Annotated[Path | None, typer.Option(
    "--log-dir", help="request log folder (default: proxy.log_dir)")]
StoreOpt = Annotated[Path | None, typer.Option(
    "--store", help="SQLite analytics store (default: in the log folder)")]
ContentOpt = Annotated[str | None, typer.Option(
    "--content", help="what the log keeps: full, hashes (no text) or none (default: proxy.content)")]
ProxyPolicyOpt = Annotated[str | None, typer.Option(
    "--policy", help="policy of the prediction (default: proxy.policy)")]


@app.command()
@boundary
def proxy(upstream: UpstreamOpt = None, host: ProxyHostOpt = None, port: ProxyPortOpt = None,
          log_dir: LogDirOpt = None,
          store: StoreOpt = None, profile: ProfileOpt = None, policy: ProxyPolicyOpt = None,
          capacity: CapacityOpt = None, content: ContentOpt = None, config: ConfigOpt = None) -> None:
    """Proxy an OpenAI-compatible server: record every completion, watch cache reuse live."""
    from kvern.commands.proxy import proxy as run
    from kvern.infra.config import load_config
    from kvern.proxy import resolve

    cfg = load_config(config)
    settings = resolve(cfg.proxy, upstream=upstream, host=host, port=port, log_dir=log_dir, store=store,
                       content=content, profile=profile, policy=policy, capacity=capacity)
    raise typer.Exit(run(settings, cfg, _output()))


# -- cluster -----------------------------------------------------------------------------
ReplicasOpt = Annotated[str | None, typer.Option(
    "--replicas", help="replica counts side by side, e.g. 1,2,4,8 (default: cluster.replicas)")]
RouterOpt = Annotated[str | None, typer.Option(
    "--router", help="routers: round-robin,random,session,least-loaded,prefix,dynamo,sglang,llm-d")]
OffloadOpt = Annotated[list[str] | None, typer.Option(
    "--offload", help="offload tiers per replica, cpu=64GiB[,disk=1TiB] (repeatable; none is always run)")]
ClusterJobsOpt = Annotated[int | None, typer.Option(
    "--jobs", help="local processes running settings side by side (default: executor.jobs, else 1)")]
RouterParamOpt = Annotated[list[str] | None, typer.Option(
    "--param", help="router parameter ROUTER.KEY=VALUE, e.g. sglang.cache_threshold=0.3 (repeatable)")]


@app.command()
@boundary
def cluster(trace: TraceArg, replicas: ReplicasOpt = None, router: RouterOpt = None,
            capacity: CapacityOpt = None, offload: OffloadOpt = None, profile: ProfileOpt = None,
            policy: PolicyOpt = "lru", param: RouterParamOpt = None, output: OutputDirOpt = None,
            config: ConfigOpt = None, fmt: FormatOpt = None, model: ModelOpt = None,
            skip_invalid: SkipInvalidOpt = False, no_cache: NoCacheOpt = False,
            no_normalize: NoNormalizeOpt = False, block_size: BlockSizeOpt = None,
            trace_block_size: TraceBlockSizeOpt = None, executor: ExecutorOpt = None,
            ray_address: RayAddressOpt = None, jobs: ClusterJobsOpt = None,
            json_mode: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """Simulate N replicas behind routers (with offload tiers): reuse kept and lost, imbalance, TTFT."""
    import dataclasses

    from kvern.commands.cluster import cluster as run
    from kvern.infra.config import load_config

    cfg = load_config(config)
    spec = _executor(executor, ray_address, cfg)
    if jobs is not None:
        spec = dataclasses.replace(spec, jobs=jobs)
    load = _load(fmt, model, skip_invalid, no_cache, no_normalize, block_size, trace_block_size, spec)
    run(trace, cfg, load,
        replicas=replicas, routers=router, capacity=capacity, offload=offload, profile=profile, policy=policy,
        params=param, output=output, out=_output(json_mode, quiet), executor=spec)


# -- report / dashboard ------------------------------------------------------------------------
FoldersArg = Annotated[list[Path], typer.Argument(help="report folder(s) any kvern command wrote",
                                                  show_default=False)]
ReportsDirsArg = Annotated[list[Path] | None, typer.Argument(
    help="folders holding report folders (default: output_dir, reports/)", show_default=False)]
PortOpt = Annotated[int, typer.Option("--port", help="port to serve the dashboard on")]
HostOpt = Annotated[str, typer.Option("--host", help="address to listen on (0.0.0.0: every interface)")]


@app.command()
@boundary
def report(folders: FoldersArg, json_mode: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """(Re)write report.html in existing report folders: one self-contained page to open."""
    from kvern.commands.common import write_page

    written = [str(write_page(f)) for f in folders]
    _output(json_mode, quiet).result("\n".join(f"written {p}" for p in written), {"written": written})


DashStoreOpt = Annotated[Path | None, typer.Option(
    "--store", help="a kvern proxy's SQLite store for the Live page (<log-dir>/analytics.sqlite, or the "
                    "log folder itself)", show_default=False)]


@app.command()
@boundary
def dashboard(reports_dirs: ReportsDirsArg = None, port: PortOpt = 8501, host: HostOpt = "127.0.0.1",
              store: DashStoreOpt = None, config: ConfigOpt = None) -> None:
    r"""Browse report folders, and a running proxy's store, in a local web app (needs: pip install
    'kvern\[dashboard]')."""  # \[ : a literal bracket in the rich help
    from kvern.dashboard.launch import launch
    from kvern.infra.config import load_config

    dirs = reports_dirs or [Path(load_config(config).output_dir)]
    if store is not None and not reports_dirs and not dirs[0].is_dir():
        dirs = []  # only the proxy's store to show
    raise typer.Exit(launch(dirs, port=port, host=host, store=store))


def _version(value: bool) -> None:
    if value:
        from kvern import __version__

        typer.echo(f"kvern {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="print the version and exit")] = False) -> None:
    """Trace analyzer and replay simulator for LLM prefix (KV) caching."""


def main() -> None:
    try:
        app()
    except SystemExit as e:
        if e.code == EXIT_INTERRUPTED:
            _exit_now_if_abandoned()
        raise


def _exit_now_if_abandoned() -> None:
    """After Ctrl-C, leave at once when a tokenizer call is still running in its thread: the
    interpreter's teardown waits for it and frees its heap, seconds for a 50 MB prompt. Every
    file was already written or removed by then; Ray, if this run started one, is stopped."""
    import os

    from kvern.infra.interrupt import abandoned_calls

    if not abandoned_calls():
        return
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    main()
