"""What the benchmarks say about the machine and the code they ran on (helpers for every script's doc header), and
how they write a doc without losing what a person wrote below its marker."""
from __future__ import annotations

import platform
import subprocess
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


def write_doc(path: Path, text: str) -> None:
    """Write a script's doc, keeping what a person wrote below HAND_WRITTEN (reread it against the new numbers)."""
    old = path.read_text().split(HAND_WRITTEN, 1) if path.is_file() else []
    kept = HAND_WRITTEN + (old[1].rstrip("\n") if len(old) == 2 else "")
    path.write_text(text.rstrip("\n") + "\n\n" + kept + "\n")
