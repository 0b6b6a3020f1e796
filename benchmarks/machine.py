"""What the benchmarks say about the machine and the code they ran on (helpers for every script's doc header), and
how they write a doc without losing what a person wrote below its marker."""
from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HAND_WRITTEN = "<!-- written by hand below: kept when the script rewrites this file -->"


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo, else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def code_version() -> str:
    """The short commit that runs, and whether tracked files differ from it ("abc1234 with uncommitted changes")."""
    git = lambda *a: subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True).stdout.strip()  # noqa: E731
    commit = git("rev-parse", "--short", "HEAD")
    return commit + (" with uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as "1.66 1.45 1.44"."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def run_header() -> dict:
    """What a report says of its run, taken when it starts: the command, the date, the code, the machine, the load."""
    return {"command": "python3 " + shlex.join([str(Path(sys.argv[0]).resolve().relative_to(REPO)), *sys.argv[1:]]),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "commit": code_version(), "machine": f"{cpu_name()}, {os.cpu_count()} logical cores",
            "load_before": load_average()}


def write_doc(path: Path, text: str, data: dict | None = None) -> None:
    """Write a script's doc, keeping what a person wrote below HAND_WRITTEN (reread it against the new numbers), and
    `data` beside it as JSON (the same name, .json)."""
    old = path.read_text().split(HAND_WRITTEN, 1) if path.is_file() else []
    kept = HAND_WRITTEN + (old[1].rstrip("\n") if len(old) == 2 else "")
    path.write_text(text.rstrip("\n") + "\n\n" + kept + "\n")
    if data is not None:
        path.with_suffix(".json").write_text(json.dumps(data, indent=1) + "\n")
