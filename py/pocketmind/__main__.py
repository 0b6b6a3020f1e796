"""The command line: `python -m pocketmind eval TASK.json DATA.csv --model M.gguf [...]`.

eval runs every model with every few-shot count as a voter on the test rows; with two or more voters, also the
ensembles (majority, mean, and weighted with weights from the dev rows) and a cascade (voters from the smallest
model up, thresholds from the dev rows): tasks.compare.Lineup, which the Evaluate page's worker runs too. It prints
a table (accuracy, macro-F1, ms per item, tokens/s), the cascade's savings, the recommended setup (--target) and
what the same items would cost through hosted models, and can write the whole report as JSON. CLI-only packages
(tqdm, the `cli` extra) are imported here and only when present: the package itself also runs in Pyodide.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .engine import PocketmindError
from .tasks import TaskError
from .tasks.data import eval_rows, read_bytes
from .tasks.compare import Lineup, parse_shots, recommend
from .tasks.task import DEFAULT_N_CTX, Task


def _shots(text: str) -> list[int]:
    try:
        return parse_shots(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"--shots: {e}") from None


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"--target is an accuracy between 0 and 1, e.g. 0.8; got {text!r}")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pocketmind", description="pocketmind on the command line")
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("eval", help="evaluate models, ensembles and a cascade on a labelled CSV")
    e.add_argument("task", type=Path, help="the task document (JSON)")
    e.add_argument("data", type=Path, help="a labelled CSV (UTF-8)")
    e.add_argument("--model", type=Path, action="append", required=True, help="a GGUF model; repeat for more")
    e.add_argument("--shots", type=_shots, default=None,
                   help="few-shot counts, comma-separated (default: the task's voters, else 0)")
    e.add_argument("--split", default="test", help="rows to evaluate, by the split column ('all': every row)")
    e.add_argument("--dev-split", default="dev", help="rows that fit ensemble weights and cascade thresholds")
    e.add_argument("--limit", type=int, default=None, help="only the first N rows of each split")
    e.add_argument("--threads", type=int, default=1, help="CPU threads per model")
    e.add_argument("--target", type=_fraction, default=None,
                   help="recommend the least compute reaching this accuracy (default: within a point of the best)")
    e.add_argument("--json", type=Path, default=None, help="write the report here")
    e.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


class Progress:
    """A tqdm bar per setup when tqdm is installed (the `cli` extra), else nothing."""

    def __init__(self, enabled: bool):
        self.bar, self.name = None, None
        self.tqdm = None
        if enabled:
            try:
                from tqdm import tqdm
                self.tqdm = tqdm
            except ImportError:
                pass

    def __call__(self, name: str, done: int, total: int) -> None:
        if self.tqdm is None:
            return
        if name != self.name:
            self.close()
            self.bar, self.name = self.tqdm(total=total, desc=name, unit="item", file=sys.stderr, leave=False), name
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar, self.name = None, None


def run_eval(args: argparse.Namespace) -> dict:
    from .engine import Model

    task = Task.load(args.task)
    if task.labels is None:
        raise TaskError("eval needs a task with labels; JSON-output tasks are not supported yet")
    rows, dev = eval_rows(read_bytes(args.data), task.text_column, task.label_column, task.labels, args.split,
                          args.dev_split, args.limit)
    models = []
    try:
        for path in args.model:
            model = Model.from_file(path)
            models.append((path.stem, model.context(n_ctx=min(DEFAULT_N_CTX, model.n_ctx_train or DEFAULT_N_CTX),
                                                     n_threads=args.threads)))
        lineup = Lineup(task, models, args.shots)
        _with_progress(lineup.fitting(dev), not args.no_progress)
        evaluation = lineup.evaluation(rows)
        _with_progress(evaluation, not args.no_progress)
        summary = lineup.summary(evaluation.report, rows)
    finally:
        for _, ctx in models:
            ctx.model.close()  # closes its context too
    if args.target is not None:
        summary["recommendation"] = recommend(summary, args.target)
    print(evaluation.report.table())
    for line in (summary["notes"]["cascade"], summary["recommendation"]["text"], summary["notes"]["hosted"]):
        if line:
            print(line)
    out = {"task": task.name, "data": str(args.data), "split": args.split,
           "models": [{"path": str(p), **m} for p, m in zip(args.model, summary["models"])],
           "fitted": summary["fitted"], "hosted": summary["hosted"], "recommendation": summary["recommendation"],
           "report": {k: summary[k] for k in ("task", "labels", "n", "setups")}}
    if args.json:  # whole or not at all: an interrupted run leaves no half-written report
        part = args.json.with_name(args.json.name + ".part")
        part.write_text(json.dumps(out, indent=2, ensure_ascii=False), encoding="utf-8")
        part.replace(args.json)
    return out


def _with_progress(steps, enabled: bool) -> None:
    progress = Progress(enabled)
    try:
        for name, done, total in steps:
            progress(name, done, total)
    finally:
        progress.close()


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "eval":
            run_eval(args)
    except (ValueError, FileNotFoundError, PocketmindError) as e:  # TaskError and DataError are ValueErrors
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
