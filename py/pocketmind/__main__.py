"""The command line: `python -m pocketmind eval TASK.json DATA.csv --model M.gguf [...]`.

eval runs every model with every few-shot count as a voter on the test rows; with two or more voters, also the
ensembles (majority, mean, and weighted with weights from the dev rows) and a cascade (voters from the smallest
model up, thresholds from the dev rows). It prints a table (accuracy, macro-F1, ms per item, tokens/s) and can
write the whole report as JSON. CLI-only packages (tqdm, the `cli` extra) are imported here and only when
present: the package itself also runs in Pyodide.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .engine import PocketmindError
from .tasks import Cascade, Ensemble, TaskError, Voter, evaluate, read_rows
from .tasks.task import DEFAULT_N_CTX, Task


def _shots(text: str) -> list[int]:
    try:
        shots = sorted({int(s) for s in text.split(",") if s.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shots takes numbers separated by commas, e.g. 0,3; got {text!r}")
    if not shots or shots[0] < 0:
        raise argparse.ArgumentTypeError("--shots needs non-negative numbers")
    return shots


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pocketmind", description="pocketmind on the command line")
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("eval", help="evaluate models, ensembles and a cascade on a labelled CSV")
    e.add_argument("task", type=Path, help="the task document (JSON)")
    e.add_argument("data", type=Path, help="a labelled CSV (UTF-8)")
    e.add_argument("--model", type=Path, action="append", required=True, help="a GGUF model; repeat for more")
    e.add_argument("--shots", type=_shots, default=[0], help="few-shot counts, comma-separated (default 0)")
    e.add_argument("--split", default="test", help="rows to evaluate, by the split column ('all': every row)")
    e.add_argument("--dev-split", default="dev", help="rows that fit ensemble weights and cascade thresholds")
    e.add_argument("--limit", type=int, default=None, help="only the first N rows of each split")
    e.add_argument("--threads", type=int, default=1, help="CPU threads per model")
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
    columns = dict(text_column=task.text_column, label_column=task.label_column, labels=task.labels)
    rows = read_rows(args.data, split=None if args.split == "all" else args.split, **columns)[:args.limit]
    models, voters, sizes = [], [], {}
    for path in args.model:
        model = Model.from_file(path)
        models.append(model)
        ctx = model.context(n_ctx=min(DEFAULT_N_CTX, model.n_ctx_train or DEFAULT_N_CTX), n_threads=args.threads)
        for k in args.shots:
            # cost: tokens times parameters, a deterministic stand-in for compute (the cascade minimises it)
            voter = Voter.from_task(task, ctx, k, name=f"{path.stem} {k}-shot",
                                    cost=lambda n, s, p=model.n_params: n * p)
            voters.append(voter)
            sizes[voter.name] = (model.n_params, k)
    setups: dict = {v.name: v for v in voters}
    fitted: dict = {}
    if len(voters) > 1:
        dev = None if args.split == "all" else read_rows(args.data, split=args.dev_split, **columns)[:args.limit]
        if dev is not None:
            progress = Progress(not args.no_progress)
            try:
                for voter in voters:  # voters cache their answers: the fits below reuse these
                    for done, row in enumerate(dev, 1):
                        voter(row.text)
                        progress(f"dev: {voter.name}", done, len(dev))
            finally:
                progress.close()
        for rule in ("majority", "mean", "weighted"):
            if dev is None and rule == "weighted":
                continue  # no dev rows to learn weights from
            ensemble = Ensemble(voters, rule)
            if dev is not None:
                ensemble.fit([r.text for r in dev], [r.label for r in dev])
            setups[f"ensemble {rule}"] = ensemble
            fitted[f"ensemble {rule}"] = {"temperature": ensemble.temperature,
                                          "weights": None if ensemble.weights is None else ensemble.weights.tolist()}
        if dev is not None:
            by_size = sorted(voters, key=lambda v: sizes[v.name])  # smallest model first, fewer shots first
            cascade = Cascade(by_size).fit([r.text for r in dev], [r.label for r in dev])
            setups["cascade"] = cascade
            fitted["cascade"] = {"voters": [v.name for v in by_size], "thresholds": list(cascade.thresholds),
                                 "dev": cascade.dev}
    progress = Progress(not args.no_progress)
    try:
        report = evaluate(task, rows, setups, progress=progress)
    finally:
        progress.close()
    print(report.table())
    by_name = {s.name: s for s in report.setups}
    if "cascade" in by_name:
        cascade, biggest = by_name["cascade"], by_name[fitted["cascade"]["voters"][-1]]
        print("cascade: answered by " + ", ".join(f"{k} {v}" for k, v in cascade.answered_by.items())
              + f"; {cascade.n_tokens} tokens and {cascade.seconds:.1f} s against {biggest.n_tokens} tokens and "
              f"{biggest.seconds:.1f} s for {biggest.name} alone (accuracy {cascade.accuracy:.3f} against "
              f"{biggest.accuracy:.3f})")
    out = {"task": task.name, "data": str(args.data), "split": args.split,
           "models": [{"path": str(p), "n_params": m.n_params, "size": m.size} for m, p in zip(models, args.model)],
           "fitted": fitted, "report": report.as_dict()}
    if args.json:  # whole or not at all: an interrupted run leaves no half-written report
        part = args.json.with_name(args.json.name + ".part")
        part.write_text(json.dumps(out, indent=2, ensure_ascii=False), encoding="utf-8")
        part.replace(args.json)
    for model in models:
        model.close()
    return out


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
