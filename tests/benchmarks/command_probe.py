"""One command (e.g. ``brokerbench analyze RUN``) measured end to end as a user runs it: its
wall time, the CPU time of it and every descendant it waited for, and the peak resident
memory of its whole process tree, printed as one JSON line.

    .venv/bin/python -m tests.benchmarks.command_probe [--records N] -- COMMAND [ARG ...]

``--records``: the records (sends + receives) the command reads, to print records/s.
Memory is the largest sum over the command's process tree (not this one's), sampled every
20 ms with psutil (``analysis_probe.TreeMemory``).
"""

import argparse
import json
import os
import subprocess
import sys
import time

from tests.benchmarks.analysis_probe import TreeMemory, children_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, help="records the command reads")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given (after --)")
    cpu, wall = children_cpu(), time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    with TreeMemory(root=child.pid) as memory:
        returncode = child.wait()
    wall, cpu = time.perf_counter() - wall, children_cpu() - cpu
    figures: dict[str, object] = {
        "command": " ".join(command[:2]),
        "exit": returncode,
        "wall_seconds": round(wall, 2),
        "cpu_seconds": round(cpu, 2),
        "peak_rss_mb": memory.peak >> 20,
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    if args.records:
        figures["records_per_second"] = round(args.records / wall)
    print(json.dumps(figures))
    sys.exit(returncode)


if __name__ == "__main__":
    main()
