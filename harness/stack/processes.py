"""Start services as process-group leaders, remember them in pid files, stop exactly those.

A pid file holds the pid and the process's start time, so a pid reused by an unrelated
process is never mistaken for ours and never signalled. The start time that identifies it is
counted from the machine's boot (``since_boot``): a wall-clock start time moves when the system
clock is stepped (a virtual machine's clock synchronised after a pause), and a clock step then
made ``up`` take running services for crashed ones, drop their pid files and fail on their
ports. A record written before ``since_boot`` existed has only the wall-clock time: a process
whose start no longer matches it is still ours when its command line is exactly the recorded
one, since a stranger given the same pid does not run our service's command. A pid file that
is not one brokerbench wrote is a one-line error naming it (never guessed at: a wrong pid would
signal a stranger).
"""

import contextlib
import json
import os
import signal
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import psutil
from pydantic import Field, TypeAdapter, ValidationError

from harness.atomic import write_text_atomically
from harness.errors import UserError


@dataclass(frozen=True)
class ProcessRecord:
    pid: Annotated[int, Field(gt=1)]
    """Never 0 or 1: ``killpg(0)`` would signal brokerbench's own group."""
    started_at: Annotated[float, Field(allow_inf_nan=False)]
    argv: list[str]
    log: str
    since_boot: Annotated[float | None, Field(allow_inf_nan=False)] = None
    """Its start in seconds after the machine booted (``since_boot``); None in older files."""


_RECORD = TypeAdapter(ProcessRecord)


def _pid_file(service_dir: Path) -> Path:
    return service_dir / "pid.json"


def start(service_dir: Path, argv: list[str], env: dict[str, str] | None = None) -> ProcessRecord:
    """Start ``argv`` in its own session (so its whole group can be signalled), output to a log."""
    log = service_dir / "service.log"
    with log.open("ab") as output:
        process = subprocess.Popen(
            argv,
            cwd=service_dir,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    record = ProcessRecord(
        pid=process.pid,
        started_at=start_time(process.pid),
        argv=argv,
        log=str(log),
        since_boot=since_boot(process.pid),
    )
    write_text_atomically(_pid_file(service_dir), json.dumps(asdict(record)))
    return record


def recorded(service_dir: Path) -> ProcessRecord | None:
    """The pid file's record; None without one; UserError if it cannot be read or is not one
    brokerbench wrote."""
    path = _pid_file(service_dir)
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from exc
    try:
        return _RECORD.validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "file"
        raise UserError(
            f"{path}: not a pid file brokerbench wrote ({field}: {first['msg']}): stop the "
            "service's process yourself if one still runs, then delete this file"
        ) from exc


def is_running(pid: int, started_at: float, started_since_boot: float | None = None) -> bool:
    """The process ``pid`` runs and is the one that started at ``started_at`` (or, when
    given, ``started_since_boot`` seconds after the boot): not a stranger that was given the
    same pid later."""
    return pid > 1 and is_alive(ProcessRecord(pid, started_at, [], "", started_since_boot))


def start_time(pid: int) -> float:
    """When process ``pid`` started, wall-clock (the ``started_at`` of its records)."""
    return psutil.Process(pid).create_time()


def since_boot(pid: int) -> float:
    """When process ``pid`` started, in seconds after the machine booted: unlike the
    wall-clock start time, unchanged by a step of the system clock (both terms move with it)."""
    return psutil.Process(pid).create_time() - psutil.boot_time()


START_TIME_TOLERANCE = 1.0
"""Seconds a recomputed start time may differ from the recorded one (rounding, clock slew)."""


def _process(record: ProcessRecord) -> psutil.Process | None:
    try:
        process = psutil.Process(record.pid)
        if not _same_start(process, record):
            return None
        if process.status() == psutil.STATUS_ZOMBIE:
            _reap(process)
            return None
    except psutil.Error:
        return None
    return process


def _same_start(process: psutil.Process, record: ProcessRecord) -> bool:
    if record.since_boot is not None:
        started = process.create_time() - psutil.boot_time()
        return abs(started - record.since_boot) <= START_TIME_TOLERANCE
    if abs(process.create_time() - record.started_at) <= START_TIME_TOLERANCE:
        return True
    return bool(record.argv) and process.cmdline() == record.argv


def _reap(process: psutil.Process) -> None:
    """Collect an exited child of this process so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(process.pid, os.WNOHANG)


def is_alive(record: ProcessRecord) -> bool:
    return _process(record) is not None


def exit_code(record: ProcessRecord) -> int | None:
    """The exit status if the process was our child and has exited, else None."""
    try:
        pid, status = os.waitpid(record.pid, os.WNOHANG)
    except ChildProcessError:
        return None
    return os.waitstatus_to_exitcode(status) if pid else None


def stop(service_dir: Path, grace_seconds: float = 15.0) -> bool:
    """Stop one recorded process group; see ``stop_all``."""
    return bool(stop_all([service_dir], grace_seconds))


def stop_all(service_dirs: list[Path], grace_seconds: float = 15.0) -> list[Path]:
    """Stop the recorded process groups together: SIGTERM to all, then SIGKILL to whatever is
    left after the grace period. Pid files are removed either way.

    Returns the folders whose process was running.
    """
    running: list[tuple[Path, psutil.Process]] = []
    members: list[psutil.Process] = []
    for service_dir in service_dirs:
        record = recorded(service_dir)
        process = _process(record) if record is not None else None
        if process is not None:
            running.append((service_dir, process))
            members.extend(_group_members(process.pid))
            _signal_group(process.pid, signal.SIGTERM)
    _, alive = psutil.wait_procs(members, timeout=grace_seconds)
    if alive:
        for _, process in running:
            _signal_group(process.pid, signal.SIGKILL)
        psutil.wait_procs(alive, timeout=5)
    for _, process in running:
        _reap(process)
    for service_dir in service_dirs:
        _pid_file(service_dir).unlink(missing_ok=True)
    return [service_dir for service_dir, _ in running]


def _group_members(pgid: int) -> list[psutil.Process]:
    members = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == pgid:
                members.append(process)
        except (ProcessLookupError, psutil.Error):
            continue
    return members


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)
