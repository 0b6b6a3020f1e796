"""The command line:

    python -m pocketmind eval TASK.json DATA.csv --model M.gguf [...]
    python -m pocketmind index DIR --model M.gguf --out index.npz
    python -m pocketmind search index.npz "query" [--top 5]
    python -m pocketmind train-head TASK.json DATA.csv --model M.gguf [--seed S] [--out head.json]
    python -m pocketmind finetune TASK.json DATA.csv --model M.gguf [--layers N] [--epochs E] [--out M-task.gguf]

eval runs every model with every few-shot count as a voter on the test rows; with two or more voters, also the
ensembles (majority, mean, and weighted with weights from the dev rows) and a cascade (voters from the smallest
model up, thresholds from the dev rows): tasks.compare.Lineup, which the Evaluate page's worker runs too. It prints
a table (accuracy, macro-F1, ms per item, tokens/s), the cascade's savings, the recommended setup (--target) and
what the same items would cost through hosted models, and can write the whole report as JSON.

index reads the .txt/.md/.csv/.html files under DIR (skipping, with the reason, those it cannot use), cuts them into
overlapping paragraph chunks, embeds them with an embedding GGUF and saves the index; search embeds the query with
the same model (checked by sha256; the index remembers its path) and prints the best chunks with their scores,
files and character offsets.

train-head trains a task head (train.run.HeadRun, which the Tasks page's worker runs too): the model's pooled hidden
states of each row as features, a logistic regression on them (trained on the "train" rows, or on part of the dev
rows when there are none, stopped on the rest), and prints each split's accuracy and the seconds taken; --out saves
the head as JSON (it records the model's sha256 and the task's labels, checked when it is used).

finetune trains the model's last --layers blocks on the task's labelled rows (train.finetune.FinetuneRun, which the
Tasks page's worker runs too): the model dequantized to F32, llama.cpp's AdamW on the rows' prompts and labels, the
weights of the best dev loss kept, written as a quantized GGUF (--type, Q8_0 by default); it prints the loss per
epoch and the test accuracy before and after.

CLI-only packages (tqdm, the `cli` extra) are imported here and only when present: the
package itself also runs in Pyodide.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .engine import PocketmindError
from .search import SearchError
from .tasks import TaskError
from .tasks.data import eval_rows, parse_rows, read_bytes
from .tasks.compare import Lineup, parse_shots, recommend
from .tasks.task import DEFAULT_N_CTX, Task
from .search.chunk import DEFAULT_MAX_CHARS, DEFAULT_OVERLAP
from .search.embed import Embedder
from .search.index import Hit, Index, file_sha256
from .search.indexer import IndexBuild, folder_files, read_documents
from .train.head import DEFAULTS as HEAD_DEFAULTS
from .train.finetune import DEFAULTS as FINETUNE_DEFAULTS, WEIGHT_TYPES as FINETUNE_TYPES


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

    i = sub.add_parser("index", help="embed the text files of a folder into a search index")
    i.add_argument("folder", type=Path, help="a folder of .txt, .md, .csv and .html files (searched recursively)")
    i.add_argument("--model", type=Path, required=True, help="an embedding GGUF (e.g. all-MiniLM-L6-v2)")
    i.add_argument("--out", type=Path, required=True, help="the index file to write (.npz)")
    i.add_argument("--max-chars", type=int, default=DEFAULT_MAX_CHARS, help="largest chunk, in characters")
    i.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP, help="characters shared by neighbouring chunks")
    i.add_argument("--threads", type=int, default=1, help="CPU threads")
    i.add_argument("--no-progress", action="store_true", help="no progress bar")

    s = sub.add_parser("search", help="find the chunks of an index closest in meaning to a query")
    s.add_argument("index", type=Path, help="an index written by `index`")
    s.add_argument("query", help="what to look for")
    s.add_argument("--top", type=int, default=5, help="how many results")
    s.add_argument("--model", type=Path, default=None, help="the index's model (default: the path it was built with)")
    s.add_argument("--threads", type=int, default=1, help="CPU threads")
    s.add_argument("--json", action="store_true", help="print the results as JSON")

    h = sub.add_parser("train-head", help="train a task head (logistic regression on a model's features)")
    h.add_argument("task", type=Path, help="the task document (JSON), a label task")
    h.add_argument("data", type=Path, help="a labelled CSV (UTF-8) with a split column (train/dev/test)")
    h.add_argument("--model", type=Path, required=True, help="the GGUF model whose features the head reads")
    h.add_argument("--seed", type=int, default=0, help="the seed of the dev split and the initial weights")
    h.add_argument("--l2", type=float, default=HEAD_DEFAULTS["l2"], help="L2 penalty on the weights")
    h.add_argument("--max-epochs", type=int, default=HEAD_DEFAULTS["max_epochs"], help="at most this many epochs")
    h.add_argument("--patience", type=int, default=HEAD_DEFAULTS["patience"],
                   help="stop after this many epochs without a better dev loss")
    h.add_argument("--limit", type=int, default=None, help="only the first N rows of the file")
    h.add_argument("--out", type=Path, default=None, help="write the head here (JSON)")
    h.add_argument("--threads", type=int, default=1, help="CPU threads")
    h.add_argument("--json", action="store_true", help="print the result as JSON")
    h.add_argument("--no-progress", action="store_true", help="no progress bar")
    f = sub.add_parser("finetune", help="fine-tune a model's last blocks for a task (llama.cpp's optimizer)")
    f.add_argument("task", type=Path, help="the task document (JSON), a label task")
    f.add_argument("data", type=Path, help="a labelled CSV (UTF-8) with a split column (train/dev/test)")
    f.add_argument("--model", type=Path, required=True, help="the GGUF model to fine-tune (any weight type)")
    f.add_argument("--layers", type=int, default=FINETUNE_DEFAULTS["layers"], help="train the last N blocks")
    f.add_argument("--epochs", type=int, default=FINETUNE_DEFAULTS["epochs"], help="passes over the training rows")
    f.add_argument("--lr", type=float, default=FINETUNE_DEFAULTS["lr"], help="AdamW's learning rate")
    f.add_argument("--ctx", type=int, default=FINETUNE_DEFAULTS["n_ctx"],
                   help="tokens per training window (a multiple of 256)")
    f.add_argument("--type", default=FINETUNE_DEFAULTS["weight_type"], choices=FINETUNE_TYPES,
                   help="weight type of the written model")
    f.add_argument("--seed", type=int, default=0, help="the seed of the dev split and the rows' order")
    f.add_argument("--limit", type=int, default=None, help="only the first N rows of the file")
    f.add_argument("--out", type=Path, default=None, help="write the model here (default: M-TASK.gguf beside M)")
    f.add_argument("--no-measure", action="store_true", help="skip the test accuracy before and after")
    f.add_argument("--threads", type=int, default=1, help="CPU threads")
    f.add_argument("--json", action="store_true", help="print the result as JSON")
    f.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


class Progress:
    """A tqdm bar per setup when tqdm is installed (the `cli` extra), else nothing."""

    def __init__(self, enabled: bool, unit: str = "item"):
        self.bar, self.name, self.unit = None, None, unit
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
            self.bar, self.name = self.tqdm(total=total, desc=name, unit=self.unit, file=sys.stderr, leave=False), name
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


def _with_progress(steps, enabled: bool, unit: str = "item") -> None:
    progress = Progress(enabled, unit)
    try:
        for name, done, total in steps:
            progress(name, done, total)
    finally:
        progress.close()


def run_index(args: argparse.Namespace) -> Index:
    from .engine import Model

    files, skipped = folder_files(args.folder)
    documents, unreadable = read_documents(files)
    skipped += unreadable
    for s in skipped:
        print(f"skipped {s.message}", file=sys.stderr)
    if not documents:
        raise SearchError(f"{args.folder}: no file to index ({len(skipped)} skipped)")
    model = Model.from_file(args.model)
    try:
        with Embedder(model, n_threads=args.threads) as embedder:
            build = IndexBuild(embedder, file_sha256(args.model), _model_ref(args.model), args.max_chars,
                               args.overlap)
            t0 = time.perf_counter()
            _with_progress(build.add(documents), not args.no_progress, unit="chunk")
            seconds = time.perf_counter() - t0
    finally:
        model.close()
    for t in build.truncated:
        print(f"note: {t.chunk.source} [{t.chunk.start}:{t.chunk.end}] has {t.full_tokens} tokens; the model saw "
              f"the first {t.n_tokens} (lower --max-chars to avoid this)", file=sys.stderr)
    build.index.save(args.out)
    n = len(build.index)
    print(f"indexed {n} chunks from {len(documents)} files in {seconds:.1f} s ({n / max(seconds, 1e-9):.1f} chunks/s)"
          f"{f', skipped {len(skipped)} files' if skipped else ''}; wrote {args.out}")
    return build.index


def _model_ref(path: Path) -> str:
    """How the index names its model: the absolute path, so `search` finds it again from any folder."""
    return str(path.resolve())


def run_search(args: argparse.Namespace) -> list[Hit]:
    from .engine import Model

    index = Index.load(args.index)
    model_path = args.model or Path(index.model_name)
    if not model_path.is_file():
        raise SearchError(f"the index's model {model_path} is not there; pass it with --model")
    index.check_model(file_sha256(model_path))
    model = Model.from_file(model_path)
    try:
        with Embedder(model, n_threads=args.threads) as embedder:
            query = embedder.embed_one(args.query)
    finally:
        model.close()
    if query.truncated_from is not None:
        print(f"note: the query has {query.truncated_from} tokens; the model saw the first {query.n_tokens}",
              file=sys.stderr)
    hits = index.search(query.vector, args.top)
    if args.json:
        print(json.dumps([{"rank": h.rank, "score": round(h.score, 6), **h.chunk.to_json()} for h in hits],
                         indent=2, ensure_ascii=False))
    else:
        for h in hits:
            snippet = " ".join(h.chunk.text.split())
            snippet = snippet if len(snippet) <= 200 else snippet[:199] + "…"
            print(f"{h.rank}. {h.score:.4f}  {h.chunk.source} [{h.chunk.start}:{h.chunk.end}]\n   {snippet}")
    return hits


def _labelled_rows(args: argparse.Namespace, who: str) -> tuple[Task, list]:
    """The task (one with labels) and the first --limit rows of its labelled CSV, for training."""
    task = Task.load(args.task)
    if task.labels is None:
        raise TaskError(f"{who} needs a task with labels; JSON-output tasks have no label set to learn")
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be a positive number of rows, got {args.limit}")
    return task, parse_rows(read_bytes(args.data), task.text_column, task.label_column, task.labels)[:args.limit]


def run_train_head(args: argparse.Namespace) -> dict:
    from .engine import Model
    from .train.features import feature_extractor
    from .train.run import HeadRun

    task, rows = _labelled_rows(args, "a head")
    sha256 = file_sha256(args.model)
    model = Model.from_file(args.model)
    try:
        with feature_extractor(model, n_threads=args.threads) as embedder:
            run = HeadRun(task, rows, embedder, sha256, args.model.stem, args.seed, l2=args.l2,
                          max_epochs=args.max_epochs, patience=args.patience)
            _with_progress(_head_steps(run), not args.no_progress, unit="step")
    finally:
        model.close()
    if args.out:
        run.head.save(args.out)
    result = {"task": task.name, "model": str(args.model), "model_sha256": sha256, "out": str(args.out or ""),
              **run.result()}
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        s = run.result()["training"]
        print(run.table())
        print(f"features {run.seconds['features']:.1f} s ({len(run.train) + len(run.dev) + len(run.test)} rows), "
              f"training {run.seconds['training']:.2f} s ({s['epochs']} epochs, best dev loss at epoch "
              f"{s['best_epoch']}){f'; wrote {args.out}' if args.out else ''}")
    return result


def _head_steps(run):
    """HeadRun's events as (bar name, done, total) for the progress bar."""
    for event in run:
        if event["type"] == "progress":
            yield "features", event["done"], event["total"]
        else:
            yield "training", event["epoch"], run.options["max_epochs"]


def run_finetune(args: argparse.Namespace) -> dict:
    import tempfile

    from .train.finetune import FinetuneRun

    if not args.model.is_file():
        raise FileNotFoundError(f"no model file at {args.model}")
    task, rows = _labelled_rows(args, "fine-tuning")
    out = args.out or args.model.with_name(f"{args.model.stem}-{_slug(task.name)}.gguf")
    with tempfile.TemporaryDirectory(prefix="pocketmind-finetune-") as work:
        run = FinetuneRun(task, rows, args.model, out, work, n_threads=args.threads, seed=args.seed,
                          measure=not args.no_measure, layers=args.layers, epochs=args.epochs, lr=args.lr,
                          n_ctx=args.ctx, weight_type=args.type)
        _with_progress(_finetune_steps(run), not args.no_progress, unit="step")
    result = {"task": task.name, "model": str(args.model), **run.result()}
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        r = run.result()
        print(run.table())
        print(f"trained {r['n_params_trained']:,} parameters in {r['seconds']['training']:.1f} s "
              f"({r['tokens_per_s'] or 0:.0f} tokens/s); wrote {out}")
    return result


def _finetune_steps(run):
    """FinetuneRun's events as (bar name, done, total) for the progress bar."""
    for event in run:
        if event["type"] == "step":
            yield f"epoch {event['epoch']}", event["step"], event["steps"]
        elif event["type"] == "progress":
            yield event["phase"] + (f" ({event['when']})" if "when" in event else ""), event["done"], event["total"]


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-") or "task"


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "eval":
            run_eval(args)
        elif args.command == "index":
            run_index(args)
        elif args.command == "search":
            run_search(args)
        elif args.command == "train-head":
            run_train_head(args)
        elif args.command == "finetune":
            run_finetune(args)
    except (ValueError, FileNotFoundError, PocketmindError) as e:  # TaskError, DataError, SearchError: ValueErrors
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
