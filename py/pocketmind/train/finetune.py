"""Fine-tuning a model's last blocks for a task (what `python -m pocketmind finetune` and the page's worker,
TaskService.start_finetune, both run).

The flow, all through the C API so that it runs the same natively and in the page's wasm (paths are files of the
runtime: in Pyodide, Emscripten's in-memory file system):
  1. the model file is converted to F32 (llama.cpp's quantizer, which dequantizes every tensor);
  2. that file is loaded with writable weights, and llama.cpp's optimizer (AdamW) trains the last `layers` blocks
     and the output norm; the rest stays frozen;
  3. each labelled row becomes the task's zero-shot chat prompt (tasks.Task.prompt_tokens, the prompt the task's
     label scoring reads) followed by the label's tokens and the end-of-turn token; the rows of an epoch, shuffled
     with the seed, are packed whole into windows of n_ctx + 1 tokens, and the loss counts only the answers'
     tokens (label and end of turn): the prompt is given, not learned (without that, measured on SmolLM2, the
     loss fell while the test accuracy on review sentiment fell from 49.6 % to 32.7 %: docs/finetune-all-tokens.md);
  4. after each epoch the mean loss per answer token over the dev rows' windows is measured; the weights with the
     lowest dev loss (the untrained ones included) are kept as a checkpoint, and a stop keeps them too;
  5. the kept weights are written into the F32 file and that file is quantized (Q8_0 by default) to `out`.

Splits: as for heads (train.run.split_rows): "test" rows are only measured; without "train" rows the other rows are
divided into train and dev, stratified, with the seed. Accuracy before and after is measured on the test rows by the
task's label scoring, on the model in memory (F32 weights: the quantized file can differ by a quantization step).
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..engine import Model, convert_model, default_backend
from ..tasks.evaluate import macro_f1
from ..tasks.task import DEFAULT_N_CTX
from . import HeadError
from .run import checked_split

WEIGHT_TYPES = ("Q8_0", "Q4_1", "Q4_0", "F16", "F32")
MAX_ROWS = 5_000  # training + dev rows: a few hundred tokens each, seconds per window in the page
MAX_EPOCHS = 50
WINDOW_GRANULE = 256  # llama.cpp rounds a context to a multiple of this, and a window fills its context
DEFAULTS = {"layers": 2, "epochs": 3, "lr": 2e-4, "weight_decay": 0.0, "n_ctx": 256, "weight_type": "Q8_0"}


class FinetuneError(HeadError):
    """Training data, options or a model that cannot be fine-tuned, with a message a person can act on."""


def check_options(seed: Any = 0, **options: Any) -> dict[str, Any]:
    """The options (seed and DEFAULTS' keys), checked: FinetuneError naming a bad or unknown one."""
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise FinetuneError(f"unknown fine-tuning option(s): {', '.join(unknown)}; the options are: seed, "
                            f"{', '.join(DEFAULTS)}")
    o = {**DEFAULTS, **options}

    def whole(key: str, low: int, high: int) -> None:
        value = o[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise FinetuneError(f"{key} must be an integer from {low} to {high}, got {value!r}")

    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise FinetuneError(f"the seed must be a non-negative integer, got {seed!r}")
    whole("layers", 1, 1024)
    whole("epochs", 1, MAX_EPOCHS)
    whole("n_ctx", WINDOW_GRANULE, 4096)
    if o["n_ctx"] % WINDOW_GRANULE:
        raise FinetuneError(f"n_ctx must be a multiple of {WINDOW_GRANULE} (llama.cpp's context granule), "
                            f"got {o['n_ctx']}")
    for key, high in (("lr", 0.1), ("weight_decay", 0.5)):
        value = o[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 <= value <= high):
            raise FinetuneError(f"{key} must be a number from 0 to {high}, got {value!r}")
    if o["weight_type"] not in WEIGHT_TYPES:
        raise FinetuneError(f"weight_type must be one of {', '.join(WEIGHT_TYPES)}, got {o['weight_type']!r}")
    return {"seed": seed, **{k: o[k] for k in DEFAULTS}, "lr": float(o["lr"]),
            "weight_decay": float(o["weight_decay"])}


@dataclass(frozen=True)
class Example:
    """One training sequence: the task's zero-shot prompt, the label, the end of the turn; answer: where the label
    starts (the loss counts the label and the end of the turn, not the prompt)."""
    tokens: np.ndarray
    answer: int


@dataclass(frozen=True)
class Window:
    """What one training step reads: n_ctx + 1 tokens, and per prediction (of tokens[i + 1]) whether it counts."""
    tokens: np.ndarray
    counted: np.ndarray

    @property
    def n_counted(self) -> int:
        return int(self.counted.sum())


def example_tokens(model: Model, task, text: str, label: str) -> Example:
    """A labelled row as the model reads it in training."""
    end = model.eot if model.eot >= 0 else model.eos
    prompt = task.prompt_tokens(model, text)
    tokens = np.concatenate([prompt, model.tokenize(label, add_special=False),
                             np.array([end] if end >= 0 else [], dtype=np.int32)]).astype(np.int32)
    return Example(tokens, len(prompt))


def windows(examples: Sequence[Example], n_ctx: int, pad: int = 0) -> list[Window]:
    """The examples packed whole, in order, into windows of n_ctx + 1 tokens, the rest of a window filled with
    `pad`; only the answers' tokens count. An example longer than a window keeps its end (the answer and as much of
    the prompt as fits)."""
    out: list[Window] = []
    tokens: list[np.ndarray] = []
    answers: list[tuple[int, int]] = []  # [start, end) of each answer in the window
    used = 0

    def flush() -> None:
        window = np.full(n_ctx + 1, pad, dtype=np.int32)
        window[:used] = np.concatenate(tokens)
        counted = np.zeros(n_ctx, dtype=bool)
        for start, end in answers:
            counted[max(start, 1) - 1:end - 1] = True  # counted[i]: the prediction of token i + 1
        out.append(Window(window, counted))

    for ex in examples:
        seq, answer = ex.tokens, ex.answer
        if seq.size > n_ctx + 1:
            answer = max(1, answer - (seq.size - n_ctx - 1))
            seq = seq[-(n_ctx + 1):]
        if used + seq.size > n_ctx + 1:
            flush()
            tokens, answers, used = [], [], 0
        tokens.append(seq)
        answers.append((used + answer, used + seq.size))
        used += seq.size
    if tokens:
        flush()
    return out


def mean_loss(losses: Sequence[float], windows_: Sequence[Window]) -> float:
    """The mean loss per counted token over windows whose step() losses are per counted token each."""
    counts = np.array([w.n_counted for w in windows_], dtype=np.float64)
    return float(np.dot(losses, counts) / counts.sum())


# Architectures llama.cpp (at the pinned version) cannot train, and why: measured, each fails its first training
# step (tests/test_finetune.py); refused before any work instead.
UNTRAINABLE = {arch: "its backward pass has no GEGLU, the activation of Gemma's feed-forward blocks"
               for arch in ("gemma", "gemma2", "gemma3", "gemma3n")}


def check_trainable(model: Model) -> None:
    arch = model.meta("general.architecture") or "?"
    if arch in UNTRAINABLE:
        raise FinetuneError(f"llama.cpp cannot fine-tune {arch} models: {UNTRAINABLE[arch]}; train a head for "
                            "this model instead, or fine-tune a llama-architecture model such as SmolLM2")


def training_bytes(model: Model, layers: int, n_ctx: int) -> int:
    """About how much memory fine-tuning takes besides the model itself: its weights in F32, and for the trained
    blocks four more copies (gradients, AdamW's two moments, the checkpoint), plus the window's activations, of
    which the output's (n_ctx x n_vocab floats, several times over: logits, softmax, their gradients) dominate for
    small models. Against the wasm heap's growth while training SmolLM2-135M (2 blocks, 256 tokens: 1,112 MiB,
    tests/test_finetune.py::test_the_pages_memory_estimate_covers_training_smollm2_in_wasm) this says 1,371 MiB:
    about 23 % to spare."""
    arch = model.meta("general.architecture") or ""
    n_layer = int(model.meta(f"{arch}.block_count") or 1)
    per_block = max(0, model.n_params - model.n_vocab * model.n_embd) / max(1, n_layer)
    trained = per_block * min(layers, n_layer)
    activations = n_ctx * (10 * model.n_vocab + 16 * model.n_embd * n_layer) * 4
    return int(4 * model.n_params + 4 * 4 * trained + activations)


def check_memory(model: Model, options: dict) -> None:
    """Refuse, before any work, a fine-tuning the backend's memory cannot hold (the page's wasm heap; natively
    the OS decides)."""
    room = getattr(model.backend, "heap_room", None)
    if room is None:
        return
    need, left = training_bytes(model, options["layers"], options["n_ctx"]), room()
    if need > left:
        mb = 1 << 20
        raise FinetuneError(f"fine-tuning this model needs about {need / mb:,.0f} MB of the page's memory (its "
                            f"weights in F32 are {4 * model.n_params / mb:,.0f} MB), and {left / mb:,.0f} MB are left "
                            "of the 4 GB a page's engine may use: train fewer layers, a shorter window, or a smaller "
                            "model (or fine-tune it with `python -m pocketmind finetune`)")


class FinetuneRun:
    """Fine-tune the GGUF at `source` for `task` on `rows` (tasks.data.Row); the result is written to `out`.
    Iterating yields JSON-ready events:
      {"type": "progress", "phase": "convert" | "measure" | "dev" | "quantize", "done", "total"}
      {"type": "step", "epoch", "step", "steps", "loss", "tokens_per_s"}   after each training window
      {"type": "epoch", "epoch", "train_loss", "dev_loss", "best"}         after each epoch (epoch 0: untrained)
    stop(): checked between windows (a stop keeps the best weights so far and still writes `out`) and between
    measured rows. `work_dir`, an existing folder, holds the F32 file while training (removed after). Paths are
    of the backend's file system (in Pyodide the engine module's MEMFS: see capi.Backend). Options: see DEFAULTS."""

    def __init__(self, task, rows: Sequence, source: str | os.PathLike, out: str | os.PathLike,
                 work_dir: str | os.PathLike, backend=None, n_threads: int = 1, seed: int = 0, measure: bool = True,
                 stop: Callable[[], bool] | None = None, **options):
        if task.labels is None:
            raise FinetuneError("fine-tuning needs a task with labels; JSON-output tasks have no label set")
        self.task, self.n_threads, self.measure = task, n_threads, measure
        self.backend = backend or default_backend()
        self.options = check_options(seed, **options)
        self.stop = stop or (lambda: False)
        self.source, self.out, self.work_dir = Path(source), Path(out), Path(work_dir)
        self.train, self.dev, self.test = checked_split(
            task, rows, seed, who="fine-tuning", max_rows=MAX_ROWS,
            why_max="each row is a few hundred tokens of forward and backward passes")
        self.epochs: list[dict] = []
        self.accuracy: dict[str, float | None] = {"before": None, "after": None}
        self.macro_f1: dict[str, float | None] = {"before": None, "after": None}
        # training: the epochs' wall time (their dev losses included); steps: the training windows' alone
        self.seconds = {"convert": 0.0, "training": 0.0, "steps": 0.0, "measure": 0.0, "quantize": 0.0}
        self.tokens_trained = 0
        self.n_params_trained = 0
        self.stopped = False
        self.written = False

    def __iter__(self) -> Iterator[dict]:
        f32 = self.work_dir / f"finetune-{os.getpid()}-{id(self)}.f32.gguf"
        t = time.perf_counter()
        yield {"type": "progress", "phase": "convert", "done": 0, "total": 1}
        convert_model(self.source, f32, "F32", self.n_threads, self.backend)
        self.seconds["convert"] = time.perf_counter() - t
        model = None
        try:
            model = Model.trainable(f32, self.backend)
            check_trainable(model)  # the CLI's first look at the model (the page's service looked before)
            yield {"type": "progress", "phase": "convert", "done": 1, "total": 1}
            yield from self._train(model, f32)
        finally:
            if model is not None:
                model.close()
            self.backend.remove_file(str(f32))

    def _train(self, model: Model, f32: Path) -> Iterator[dict]:
        o = self.options
        if self.measure:
            yield from self._measure(model, "before")
        if self.stop():  # stopped before training: nothing to write
            self.stopped = True
            return
        rng = np.random.default_rng(o["seed"])
        pad = model.eos if model.eos >= 0 else 0
        train_examples = [example_tokens(model, self.task, r.text, r.label) for r in self.train]
        dev_windows = windows([example_tokens(model, self.task, r.text, r.label) for r in self.dev], o["n_ctx"], pad)
        with model.trainer(o["n_ctx"], o["layers"], self.n_threads) as trainer:
            self.n_params_trained = trainer.n_params
            best = yield from self._dev_loss(trainer, dev_windows, 0)
            trainer.checkpoint()
            self.epochs.append({"epoch": 0, "train_loss": None, "dev_loss": best, "best": True})
            yield {"type": "epoch", **self.epochs[-1]}
            t = time.perf_counter()
            for epoch in range(1, o["epochs"] + 1):
                order = rng.permutation(len(train_examples))
                batch = windows([train_examples[i] for i in order], o["n_ctx"], pad)
                losses = []
                for step, window in enumerate(batch, 1):
                    if self.stop():
                        self.stopped = True
                        break
                    started = time.perf_counter()
                    losses.append(trainer.step(window.tokens, train=True, lr=o["lr"],
                                               weight_decay=o["weight_decay"], counted=window.counted))
                    self.seconds["steps"] += time.perf_counter() - started
                    self.tokens_trained += o["n_ctx"]
                    yield {"type": "step", "epoch": epoch, "step": step, "steps": len(batch), "loss": losses[-1],
                           "tokens_per_s": self.tokens_trained / self.seconds["steps"]}
                if not losses:
                    break
                dev = yield from self._dev_loss(trainer, dev_windows, epoch)
                improved = dev < best
                if improved:
                    best = dev
                    trainer.checkpoint()
                self.epochs.append({"epoch": epoch, "train_loss": mean_loss(losses, batch[:len(losses)]),
                                    "dev_loss": dev,
                                    "best": improved, "partial": self.stopped})
                yield {"type": "epoch", **self.epochs[-1]}
                if self.stopped:
                    break
            self.seconds["training"] = time.perf_counter() - t
            if self.tokens_trained == 0:  # stopped before the first window: nothing was trained, nothing is written
                self.stopped = True
                return
            trainer.restore()  # the best weights: the last epoch's when it was the best
            trainer.write(f32)
        if self.measure:
            yield from self._measure(model, "after")
        t = time.perf_counter()
        yield {"type": "progress", "phase": "quantize", "done": 0, "total": 1}
        part = self.out.with_name(self.out.name + ".part")  # whole or not at all
        convert_model(f32, part, o["weight_type"], self.n_threads, self.backend)
        self.backend.rename_file(str(part), str(self.out))
        self.written = True
        self.seconds["quantize"] = time.perf_counter() - t
        yield {"type": "progress", "phase": "quantize", "done": 1, "total": 1}

    def _dev_loss(self, trainer, dev_windows: Sequence[Window], epoch: int) -> Iterator[dict]:
        """The mean loss per answer token over the dev windows (the generator's return value), with an event per
        window (each is one engine call: the page's worker answers its watchdog between them)."""
        losses = []
        for i, w in enumerate(dev_windows):
            losses.append(trainer.step(w.tokens, train=False, counted=w.counted))
            yield {"type": "progress", "phase": "dev", "epoch": epoch, "done": i + 1, "total": len(dev_windows)}
        return mean_loss(losses, dev_windows)

    def _measure(self, model: Model, when: str) -> Iterator[dict]:
        """Test accuracy and macro-F1 by the task's zero-shot label scoring, on the model in memory."""
        if not self.test:
            return
        t = time.perf_counter()
        pred = []
        with model.context(n_ctx=min(DEFAULT_N_CTX, model.n_ctx_train), n_threads=self.n_threads) as ctx:
            for i, row in enumerate(self.test):
                if self.stop() and when == "before":
                    break  # a stop before training ends the run's measuring, not the training it asked for
                pred.append(self.task.run(ctx, row.text).label)
                yield {"type": "progress", "phase": "measure", "when": when, "done": i + 1, "total": len(self.test)}
        self.seconds["measure"] += time.perf_counter() - t
        if len(pred) == len(self.test):
            gold = [r.label for r in self.test]
            self.accuracy[when] = float(np.mean([p == g for p, g in zip(pred, gold)]))
            self.macro_f1[when] = macro_f1(gold, pred, self.task.labels)

    def result(self) -> dict:
        best = min(self.epochs, key=lambda e: e["dev_loss"]) if self.epochs else None
        steps = self.seconds["steps"]
        return {"stopped": self.stopped, "written": self.written, "out": str(self.out) if self.written else None,
                "options": self.options, "accuracy": self.accuracy, "macro_f1": self.macro_f1,
                "n": {"train": len(self.train), "dev": len(self.dev), "test": len(self.test)},
                "n_params_trained": self.n_params_trained, "epochs": self.epochs,
                "best_epoch": None if best is None else best["epoch"], "seconds": self.seconds,
                "tokens_trained": self.tokens_trained,  # tokens_per_s: of the training windows' own time
                "tokens_per_s": self.tokens_trained / steps if steps > 0 else None}

    def table(self) -> str:
        """Loss per epoch and accuracy before/after, as a few lines of text (the CLI prints them)."""
        lines = [f"{'epoch':>5} {'train loss':>10} {'dev loss':>9}"]
        for e in self.epochs:
            train = "-" if e["train_loss"] is None else f"{e['train_loss']:.4f}"
            lines.append(f"{e['epoch']:>5} {train:>10} {e['dev_loss']:>9.4f}{'  *' if e['best'] else ''}")
        for when in ("before", "after"):
            acc, f1 = self.accuracy[when], self.macro_f1[when]
            if acc is not None:
                lines.append(f"test {when}: accuracy {acc:.3f}, macro-F1 {f1:.3f} ({len(self.test)} rows)")
        return "\n".join(lines)
