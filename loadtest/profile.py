"""`--profile DIR`: sample the server processes with py-spy during the load phase.

py-spy attaches from outside (no code change in the server, a few percent of overhead) and writes
collapsed stacks; the report lists where the samples fall: the functions with the most samples
on top of the stack (self time) and the modules with the most samples anywhere (inclusive).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

TOP = 15


def py_spy() -> str | None:
    found = shutil.which("py-spy")
    if found:
        return found
    candidate = Path(sys.executable).with_name("py-spy")
    return str(candidate) if candidate.exists() else None


class Profiler:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.procs: list[tuple[str, Path, subprocess.Popen[bytes]]] = []

    def start(self, targets: dict[str, int], duration_s: float) -> None:
        exe = py_spy()
        if exe is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        for name, pid in targets.items():
            out = self.directory / f"{name}.folded"
            proc = subprocess.Popen(
                [exe, "record", "--pid", str(pid), "--duration", str(max(1, int(duration_s))),
                 "--rate", "200", "--format", "raw", "--nonblocking", "--output", str(out)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            self.procs.append((name, out, proc))

    def finish(self, timeout: float = 30.0) -> dict[str, Any]:
        summary: dict[str, Any] = {}
        for name, out, proc in self.procs:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.terminate()
                proc.wait(10)
            if out.exists():
                summary[name] = summarise(out.read_text())
                summary[name]["file"] = str(out)
        return summary


def summarise(folded: str) -> dict[str, Any]:
    """Collapsed stacks ("a;b;c 12") -> self-time functions and inclusive modules."""
    leaf: Counter[str] = Counter()
    modules: Counter[str] = Counter()
    total = 0
    for line in folded.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        leaf[frames[-1]] += n
        for module in {_module(f) for f in frames}:
            modules[module] += n
    share = (lambda n: round(n / total, 4)) if total else (lambda n: 0.0)
    # Entry frames (runpy, the CLI, uvicorn's runner) are in every sample and say nothing.
    outer = max(modules.values(), default=0)
    spread = [(m, share(n)) for m, n in modules.most_common() if n < 0.99 * outer]
    return {
        "samples": total,
        # A leaf in the loop's runner is time inside the event loop's C code (uvloop: polling,
        # socket I/O, callback dispatch), not Python.
        "self": [(f, share(n)) for f, n in leaf.most_common(TOP)],
        "inclusive_modules": spread[:TOP],
    }


def _module(frame: str) -> str:
    # py-spy frames look like "function (path/to/module.py:123)".
    start = frame.rfind("(")
    path = frame[start + 1:].split(":")[0] if start != -1 else frame
    for marker in ("site-packages/", "/work/main/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return path
