"""The ``brokerbench`` command line. Errors a user can fix print one line and exit 2."""

import json
import os
import re
import signal
import sys
import time
import traceback
import uuid
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from chaos import cli as chaos_cli
from harness import paths, redaction
from harness.errors import UserError
from harness.load.plan_file import redact_stderr
from harness.run.result_model import ANALYSIS_FILE, RESULT_FILE, RunResult
from harness.settings import load_settings
from harness.setup import artifacts
from harness.stack import cluster_network
from harness.stack.container_specs import container_name
from harness.stack.manager import ServiceStatus, Stack
from harness.stack.provider import Choice, StackProvider, existing_provider, open_provider
from harness.stack.provider_record import current_provider
from reports.cli import gate, report

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Benchmark and chaos-test event-driven systems on Kafka, SQS and Pub/Sub.",
)
app.add_typer(chaos_cli.app, name="chaos")
# Rich wraps at 80 columns when output is not a terminal (CI logs, files): tables need more.
console = Console(width=None if sys.stdout.isatty() else 140)
errors = Console(stderr=True)

OnlyOption = Annotated[
    str | None,
    typer.Option("--only", help="Comma-separated services (default: all), e.g. kafka,toxiproxy."),
]


ProviderOption = Annotated[
    Choice | None,
    typer.Option(
        "--provider",
        help="Who runs the stack: local processes, containers (testcontainers) or auto "
        "(up: containers when a Docker engine answers, else local; down/status: the one that "
        "started the stack).",
    ),
]


def _only(value: str | None) -> list[str] | None:
    return [name.strip() for name in value.split(",") if name.strip()] if value else None


@app.command()
def setup() -> None:
    """Fetch and cache Kafka, ElasticMQ, toxiproxy and build the schema registry; find the
    Pub/Sub emulator."""
    table = Table("component", "version", "result", "where", box=None)
    installed_here = (artifacts.kafka(), artifacts.elasticmq(), artifacts.toxiproxy())
    for artifact in (*installed_here, artifacts.schema_registry_server()):
        if artifact.installed:
            table.add_row(artifact.name, artifact.version, "cached", str(artifact.root))
            continue
        started = time.monotonic()
        with console.status(f"installing {artifact.name} {artifact.version} ..."):
            artifact.install()
        took = f"installed in {time.monotonic() - started:.1f} s"
        table.add_row(artifact.name, artifact.version, took, str(artifact.root))
    emulator = artifacts.pubsub_emulator()
    if emulator.installed:
        table.add_row("pubsub", emulator.version, "found", str(emulator.path))
    else:
        table.add_row("pubsub", "-", "[yellow]missing[/]", artifacts.PUBSUB_HOW_TO_GET)
    console.print(table)
    if not emulator.installed:
        errors.print(
            f"warning: Pub/Sub emulator not found; the other brokers work. To add it: "
            f"{artifacts.PUBSUB_HOW_TO_GET}"
        )
    _warn_when_nft_missing()


def _warn_when_nft_missing() -> None:
    hint = cluster_network.nft_missing_hint()
    if hint is not None:
        errors.print(f"warning: {hint}")


@app.command()
def up(only: OnlyOption = None, provider: ProviderOption = None) -> None:
    """Start the stack (idempotent) and wait until every service answers its protocol."""
    stack = open_provider(
        load_settings(),
        _only(only),
        provider or "auto",
        report=lambda line: console.print(line, markup=False),
    )
    started = time.monotonic()
    with console.status("starting ...") as spinner:
        statuses = stack.up(report=spinner.update)
    _print_status(stack)
    took = time.monotonic() - started
    healthy = sum(status.state == "healthy" for status in statuses)
    console.print(f"{healthy}/{len(statuses)} services healthy in {took:.1f} s")
    if any(status.namespace for status in statuses):
        _warn_when_nft_missing()


@app.command()
def down(only: OnlyOption = None, provider: ProviderOption = None) -> None:
    """Stop exactly the processes (or containers) `up` started."""
    existing_provider(load_settings(), _only(only), provider).down(report=console.print)


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    only: OnlyOption = None,
    provider: ProviderOption = None,
) -> None:
    """Health, version, pid, ports and log of each service, and the proxies. Exit 1 if any
    service is not healthy."""
    stack = existing_provider(load_settings(), _only(only), provider)
    statuses = stack.status()
    if as_json:
        proxies = {name: asdict(proxy) for name, proxy in stack.proxies().items()}
        document = {
            "home": str(paths.home()),
            "provider": stack.name,
            "services": [asdict(s) for s in statuses],
            "proxies": proxies,
        }
        console.print_json(json.dumps(document))
    else:
        _print_status(stack, statuses)
    if any(s.state != "healthy" for s in statuses):
        raise typer.Exit(1)


def _print_status(stack: StackProvider, statuses: list[ServiceStatus] | None = None) -> None:
    home = paths.home()
    table = Table("service", "state", "pid", "version", "ports", "log", box=None)
    table.columns[4].overflow = "fold"
    colours = {"healthy": "green", "unhealthy": "yellow", "crashed": "red", "stopped": "dim"}
    statuses = statuses or stack.status()
    for s in statuses:
        host = f"{s.address}:" if s.address else ""
        ports = " ".join(f"{name}={host}{port}" for name, port in s.ports.items())
        state = f"[{colours[s.state]}]{s.state}[/]"
        log = str(Path(s.log).relative_to(home)) if Path(s.log).is_relative_to(home) else s.log
        name = f"{s.name} (test double)" if s.test_double else s.name
        table.add_row(name, state, str(s.pid or "-"), s.version or "-", ports, log)
    console.print(f"home: {home}  provider: {stack.name}")
    console.print(table)
    for s in statuses:
        if s.detail:
            console.print(f"{s.name}: {s.detail}", markup=False)
    proxies = stack.proxies()
    if proxies:
        proxy_table = Table("proxy", "listen", "upstream", "enabled", "toxics", box=None)
        for proxy in proxies.values():
            toxics = ", ".join(t.name for t in proxy.toxics) or "-"
            proxy_table.add_row(
                proxy.name, proxy.listen, proxy.upstream, str(proxy.enabled).lower(), toxics
            )
        console.print(proxy_table)


@app.command()
def logs(
    name: Annotated[str, typer.Argument(help="Service name, e.g. kafka.")],
    lines: Annotated[int, typer.Option("--lines", "-n")] = 50,
    follow: Annotated[bool, typer.Option("--follow", "-f")] = False,
) -> None:
    """Print the end of a service's log (and follow it with -f)."""
    service = Stack(load_settings()).service(name)
    if current_provider() == "containers":
        raise UserError(f"{name} runs in a container: see `docker logs {container_name(name)}`")
    log = service.directory / "service.log"
    if not log.exists():
        raise UserError(f"{name} has no log yet at {log}: start it with `brokerbench up`")
    _print_tail(log, lines)
    if follow:
        with log.open("r", errors="replace") as handle:
            handle.seek(0, 2)
            while True:
                chunk = handle.read()
                if chunk:
                    sys.stdout.write(chunk)
                    sys.stdout.flush()
                else:
                    time.sleep(0.3)


def _print_tail(log: Path, lines: int) -> None:
    text = log.read_text(errors="replace").splitlines()
    for line in text[-lines:]:
        sys.stdout.write(line + "\n")


@app.command()
def check(
    target: Annotated[str, typer.Argument(help="Broker target, e.g. kafka, elasticmq, pubsub.")],
    via_proxy: Annotated[bool, typer.Option("--via-proxy", help="Go through toxiproxy.")] = False,
) -> None:
    """Round-trip one message through a broker target (create, send, receive, ack, delete)."""
    from harness.drivers.base import DestinationSpec, Received
    from harness.drivers.targets import open_driver

    driver = open_driver(target, load_settings(), via_proxy=via_proxy)
    started = time.monotonic()
    destination = driver.create_destination(DestinationSpec(f"bb-check-{uuid.uuid4().hex[:8]}"))
    try:
        producer = driver.producer(destination)
        results: list[object] = []
        producer.send("check", b"brokerbench check", results.append)
        producer.close()
        consumer = driver.consumer(destination, "default")
        received: list[Received] = []
        deadline = time.monotonic() + 30
        while not received and time.monotonic() < deadline:
            received = consumer.poll(1, 1.0)
        consumer.ack(received)
        consumer.close()
    finally:
        driver.delete_destination(destination)
        driver.close()
    if not received:
        raise UserError(f"{target}: sent one message but received nothing within 30 s")
    took_ms = (time.monotonic() - started) * 1000
    path = "through toxiproxy" if via_proxy else "direct"
    console.print(f"{target} ({path}): round trip ok in {took_ms:.0f} ms")


@app.command()
def run(  # noqa: PLR0917 - a typer command: its options are its parameters
    suite: Annotated[
        Path, typer.Argument(help="Suite file (YAML), e.g. workloads/suites/quick.yaml.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where run folders go.")] = Path(
        "runs"
    ),
    metrics_port: Annotated[
        int,
        typer.Option(help="Live Prometheus metrics on 127.0.0.1:PORT during runs (0: off)."),
    ] = 9464,
    broker_warmup: Annotated[
        bool,
        typer.Option(
            "--broker-warmup/--no-broker-warmup",
            help="Warm each broker up before its first run and after a restart (the suite's "
            "broker_warmup setting; --no-broker-warmup turns it off).",
        ),
    ] = True,
    fail_fast: Annotated[
        bool,
        typer.Option(
            "--fail-fast", help="Stop at the first run that fails (by default the suite goes on)."
        ),
    ] = False,
    master_bind: Annotated[
        str,
        typer.Option(
            help="A suite with distribution: where workers reach this master, HOST:PORT "
            "(docs/distributed.md; 0.0.0.0 for every interface)."
        ),
    ] = "127.0.0.1:5571",
) -> None:
    """Run a suite: every broker x workload x repeat, one folder with result.json each.

    Exit codes: 0 every run executed and none is invalid (a verdict of unknown is shown, not
    failed); 1 some run is invalid (a check failed); 2 user error (the suite, a flag or a
    target needs fixing; nothing more runs); 3 some run failed: it could not execute (its
    result.json has valid null and the error) and the suite went on; 4 brokerbench crashed
    (a bug); 130 interrupted. 3 wins over 1.
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from harness.run.broker_warmup import WarmupProgress
    from harness.run.single import Progress as RunProgress
    from harness.run.suite_runner import PlannedRun, plan_suite, run_suite

    settings = load_settings()
    suite_model, _ = plan_suite(suite, settings, output)  # validated before any broker I/O
    summary = Table(
        "broker",
        "workload",
        "scenario",
        "repeat",
        "sent msg/s",
        "e2e p50 ms",
        "e2e p99 ms",
        "lost",
        "dup",
        "order",
        "valid",
        "harness",
        box=None,
    )
    bound: list[str] = []
    bars = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=console,
    )
    tasks: dict[Path, object] = {}

    def task_of(planned: PlannedRun) -> Any:
        if planned.run_dir not in tasks:
            tasks[planned.run_dir] = bars.add_task(
                f"{planned.broker} / {planned.workload} / "
                f"{planned.scenario.name if planned.scenario else 'baseline'} / r{planned.repeat}",
                total=None,
                detail="",
            )
        return tasks[planned.run_dir]

    def on_warmup(planned: PlannedRun, reason: str, state: WarmupProgress) -> None:
        p50 = "" if state.window_p50_ms is None else f", e2e p50 {state.window_p50_ms:.1f} ms"
        detail = f"warming up {planned.broker} ({reason}): {state.seconds:.0f} s{p50}"
        bars.update(task_of(planned), detail=detail)

    def on_progress(planned: PlannedRun, state: RunProgress) -> None:
        done = state.entry_received
        detail = f"{state.phase}: sent {state.sent} received {done}/{state.expected}"
        if state.received != state.entry_received:
            detail += f" ({state.received} on all topics)"
        bars.update(task_of(planned), total=state.expected, completed=done, detail=detail)

    judged: list[bool | None] = []
    failed: list[str] = []

    def on_failure(planned: PlannedRun, error: str) -> None:
        failed.append(f"failed: {planned.run_dir}: {error}")
        console.print(failed[-1], style="red", markup=False, highlight=False, soft_wrap=True)

    def on_result(planned: PlannedRun, result: RunResult) -> None:
        judged.append(result.valid)
        summary.add_row(*_summary_row(planned.broker, planned.workload, planned.repeat, result))
        console.print(f"{planned.broker}: {planned.run_dir / RESULT_FILE}")
        if result.harness_bound is True:
            where = f"{planned.broker} / {planned.workload} / r{planned.repeat}"
            bound.extend(
                f"harness-bound: {where}: {reason}" for reason in result.harness_bound_reasons
            )

    if metrics_port:
        console.print(f"live metrics: http://127.0.0.1:{metrics_port}/metrics")
    with ExitStack() as cluster_scope, bars:
        cluster = None
        if suite_model.distribution is not None:
            from harness.distributed.cluster import open_cluster

            cluster = cluster_scope.enter_context(
                open_cluster(suite_model.distribution, master_bind, output, console.print)
            )
        run_suite(
            suite,
            settings,
            output,
            metrics_port=metrics_port or None,
            on_progress=on_progress,
            on_result=on_result,
            broker_warmup=broker_warmup,
            on_warmup=on_warmup,
            on_failure=on_failure,
            fail_fast=fail_fast,
            cluster=cluster,
        )
    console.print(summary)
    for line in bound:
        console.print(line, style="yellow", markup=False, highlight=False, soft_wrap=True)
    for line in failed:
        errors.print(line, style="red", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(run_exit_code(judged, failed=len(failed)))


@app.command()
def worker(
    master: Annotated[
        str, typer.Option(help="The master's HOST:PORT (its `brokerbench run --master-bind`).")
    ],
    name: Annotated[
        str | None,
        typer.Option(help="This worker's name in the run (default: host name and process id)."),
    ] = None,
) -> None:
    """Serve a master's runs on this load machine (docs/distributed.md): start the load
    processes it places here, with this machine's broker settings, and send their history
    back. Ends when the master quits."""
    from harness.distributed.placement import parse_bind
    from harness.distributed.worker_agent import default_name

    host, port = parse_bind(master)
    label = name or default_name()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}", label):
        raise UserError(f"--name {label!r}: use letters, digits, '_' and '-' (up to 63)")
    # A fresh interpreter: Locust's gevent must patch the process before anything is imported.
    argv = [sys.executable, "-m", "harness.distributed.worker_agent", host, str(port), label]
    os.execv(sys.executable, argv)


RUN_ALL_VALID, RUN_SOME_INVALID, RUN_SOME_FAILED = 0, 1, 3
"""``brokerbench run``'s exit codes (2, a user error, 4, a crash, and 130, interrupted, are
``main``'s)."""


def run_exit_code(judged: list[bool | None], *, failed: int) -> int:
    """3 if any run failed, else 1 if any finished run is invalid, else 0."""
    if failed:
        return RUN_SOME_FAILED
    return RUN_SOME_INVALID if any(valid is False for valid in judged) else RUN_ALL_VALID


HARNESS_WORD = {True: "[yellow]BOUND[/]", False: "ok", None: "unknown"}
"""The run summary's ``harness`` column: was the harness, not the broker, the limit?"""


def _summary_row(broker: str, workload: str, repeat: int, result: RunResult) -> list[str]:
    e2e = result.figures.latency.e2e.stats
    checks = {check.name: check for check in result.checks}

    def count(name: str, *keys: str) -> str:
        found = checks[name].counts if name in checks else {}
        return str(sum(int(found.get(key, 0)) for key in keys))

    def ms(value: float | None) -> str:
        return f"{float('nan') if value is None else value:.2f}"

    ordering = checks.get("ordering")
    valid = {True: "[green]yes[/]", False: "[red]NO[/]", None: "[yellow]unknown[/]"}
    test_double = result.environment.test_double is True
    return [
        f"{broker} (test double)" if test_double else broker,
        workload,
        result.scenario.name if "scenario" in result.model_fields_set else "-",
        str(repeat),
        f"{result.figures.throughput.sent.mean_msgs_per_s or 0:.0f}",
        ms(e2e.p50),
        ms(e2e.p99),
        count("lost", "lost"),
        count("duplicates", "duplicate_publish", "redelivery"),
        "ok" if ordering is None or ordering.valid is not False else "[red]violated[/]",
        valid[result.valid],
        HARNESS_WORD[result.harness_bound],
    ]


@app.command()
def analyze(
    run_dir: Annotated[Path, typer.Argument(help="A run folder holding result.json.")],
    write: Annotated[
        bool,
        typer.Option(
            "--write",
            help=f"Replace the run's {RESULT_FILE} (what report and gate read) instead of "
            f"writing {ANALYSIS_FILE} beside it.",
        ),
    ] = False,
) -> None:
    """Re-check a stored run from its history, without brokers. Writes RUN_DIR/analysis.json
    and leaves result.json as the run wrote it, unless --write. A run that did not finish
    (interrupted, failed) is checked as far as its history goes: valid at most unknown."""
    from harness.drivers.base import OrderingScope
    from harness.run.figures import Window
    from harness.run.interrupted import capped, result_from_state, unfinished, unfinished_note
    from harness.run.result import evaluate
    from harness.run.result_model import read_result, write_result
    from harness.run.run_state import read_state
    from harness.run.suite_runner import flow_checks

    result_file = run_dir / RESULT_FILE
    state = unfinished(read_state(run_dir))
    result = read_result(result_file) if result_file.is_file() else None
    if state is not None and (result is None or result.error is not None):
        result = result_from_state(run_dir, state)  # a failed run's result has no phases
    if result is None:
        raise UserError(f"{run_dir}: no {RESULT_FILE} here (give a run folder written by `run`)")
    phases, params = result.phases, result.workload.params
    if (
        phases.warmup_end_ns is None
        or phases.end_ns is None
        or result.ordering_scope is None
        or not result.run_id
        or "message_size" not in params
    ):
        raise UserError(
            f"{result_file}: lacks the phases, ordering scope, run id or message size a "
            "re-check needs"
        )
    result = result.evaluated(
        evaluate(
            run_dir,
            OrderingScope(result.ordering_scope),
            Window(phases.warmup_end_ns, phases.end_ns),
            params["message_size"],
            broker_lag=result.capabilities.lag_probe != "derived",
            flow_checks=flow_checks(result.workload.kind, params, run_dir, int(result.run_id, 16)),
            exactly_once=result.semantics == "exactly-once",
        )
    )
    if state is not None:
        result = capped(result, state)
    written = write_result(run_dir, result, RESULT_FILE if write else ANALYSIS_FILE)
    table = Table("check", "valid", "counts", box=None)
    for check in result.checks:
        table.add_row(check.name, str(check.valid), json.dumps(check.counts))
    console.print(table)
    if result.saturation is not None:
        verdict = result.saturation.harness_bound
        answer = {True: "yes", False: "no", None: "unknown"}[verdict.value]
        lines = [f"harness-bound: {answer}", *(f"  {r}" for r in verdict.reasons)]
        console.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)
    if state is not None:
        note = f"{unfinished_note(state)}: valid at most unknown"
        errors.print(f"warning: {note}", markup=False, highlight=False, soft_wrap=True)
    kept = "" if write else f" ({RESULT_FILE} unchanged: --write replaces it)"
    console.print(f"wrote {written}{kept}", markup=False, highlight=False, soft_wrap=True)


app.command()(report)
app.command()(gate)

INTERRUPTED = 130
CRASHED = 4
"""A bug in brokerbench: never 1 (``run``: some run invalid; ``gate``: a regression)."""


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _show_usage_error(exc: typer.TyperException) -> None:
    """Click's own rendering (usage line, then ``Error: ...``) where the exception has it."""
    show = getattr(exc, "show", None)
    if callable(show):
        show()
    else:
        errors.print(f"error: {exc.format_message()}", markup=False, highlight=False)


def main() -> None:
    """Entry point: run the app, turning user errors into one line and exit code 2, and a
    crash (a bug) into its traceback and exit code 4, never 1, which means a verdict.

    SIGTERM is handled like Ctrl-C, so the clean-up paths (stopping what a failed ``up``
    started) run for both.
    """
    signal.signal(signal.SIGTERM, _interrupt)
    redact_stderr()
    try:
        code = app(standalone_mode=False)
    except UserError as exc:
        message = redaction.scrub(str(exc))
        errors.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        errors.print("interrupted")
        sys.exit(INTERRUPTED)
    except typer.TyperException as exc:  # a usage error (typer carries its own click)
        _show_usage_error(exc)
        sys.exit(exc.exit_code)
    except Exception:  # a bug: its traceback, then an exit code no verdict uses
        traceback.print_exc()
        errors.print("error: brokerbench crashed (a bug: the traceback above); please report it")
        sys.exit(CRASHED)
    if code == INTERRUPTED:  # typer turns Ctrl-C into this exit code, after our clean-up ran
        errors.print("interrupted")
    sys.exit(code if isinstance(code, int) else 0)
