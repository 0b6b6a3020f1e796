"""Every model with every prompt variant, every ensemble rule and a cascade, on one label task: what `python -m
pocketmind eval` and the Evaluate page run, so the two give the same numbers on the same rows.

Lineup(task, models, shots): one voter per model and shot count, named "<model> <k>-shot" (or the task's own
"voters" when no shot counts are given). A voter's cost is its
model's parameters times the tokens it decoded: a deterministic measure of compute (the cascade minimises it, the
recommendation compares it). With two or more voters, `fit(dev_rows)` (or stepping through `fitting(dev_rows)`)
asks every voter every dev row (voters cache their answers, so nothing is asked twice), then fits the ensembles
(majority, mean, weighted: weights and calibration from the dev rows) and a cascade (voters ordered by parameters,
then shots: smallest first). Without dev rows: majority and mean, uncalibrated; no weighted rule and no cascade.
add_voter() adds a voter that is not a prompt (a trained task head) before fitting.

recommend(report, target): the setup with the least compute per item among those whose accuracy reaches the
target; with no target, among those within one point of the best accuracy (so a setup that is as good for much
less is preferred over a hair's better one). Ties: fewer model bytes, then the higher accuracy.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import SimpleNamespace

from .ensemble import Cascade, Ensemble, Voter
from .evaluate import Evaluation, Report
from .hosted import hosted_costs

RULES = ("majority", "mean", "weighted")
NEAR_BEST = 0.01  # with no target accuracy: "as good as the best" means within one point


@dataclass(frozen=True)
class Answers:
    """A model's answers computed elsewhere (another worker, in parallel): its size, and for each shot count each
    text's label probabilities, tokens and seconds. In a Lineup it stands where a model's Context would."""

    n_params: int
    size: int
    by_shots: Mapping[int, Mapping[str, Sequence]]  # shots -> text -> (probs, n_tokens, seconds)

    @classmethod
    def from_json(cls, name: str, doc: Mapping) -> Answers:
        try:
            return cls(int(doc["n_params"]), int(doc["size"]),
                       {int(k): dict(table) for k, table in doc["by_shots"].items()})
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"the answers of model {name!r} are malformed: {e}") from None

    def answer(self, name: str, shots: int):
        table = self.by_shots.get(shots)
        if table is None:
            raise ValueError(f"model {name!r} sent no {shots}-shot answers")

        def look_up(text: str) -> SimpleNamespace:
            if text not in table:
                raise ValueError(f"model {name!r} sent no {shots}-shot answer for {text[:60]!r}")
            probs, n_tokens, seconds = table[text]
            return SimpleNamespace(probs=probs, n_tokens=n_tokens, seconds=seconds)
        return look_up


@dataclass(frozen=True)
class LineupModel:
    """A model in the line-up: its name (voters are named after it), parameters and file size in bytes."""

    name: str
    n_params: int
    size: int


class Lineup:
    def __init__(self, task, models: Sequence[tuple[str, object]], shots: Sequence[int] | None = None,
                 partial: bool = False, tokenizer=None):
        """models: (name, Context or Answers) pairs, one per model; shots: the few-shot counts each model is asked
        with. With shots None: the task's own "voters" (each a model by name and a shot count), else every model
        0-shot. partial: the task's voters of models not given are left out (a worker answering for its models).
        tokenizer: the Model whose tokenizer counts the hosted tokens (default: the first model given here)."""
        if task.labels is None:
            raise ValueError("evaluation needs a task with labels; JSON-output tasks are not supported yet")
        if not models:
            raise ValueError("no models to evaluate: load at least one")
        names = [name for name, _ in models]
        if len(set(names)) != len(names):
            raise ValueError(f"model names must differ: {names}")
        self.task = task
        self.tokenizer = tokenizer
        self.models = [LineupModel(name, ctx.n_params, ctx.size) if isinstance(ctx, Answers)
                       else LineupModel(name, ctx.model.n_params, ctx.model.size) for name, ctx in models]
        self._contexts = [ctx for _, ctx in models]
        self.voters: list[Voter] = []
        self._uses: dict[str, tuple[LineupModel, ...]] = {}  # setup name -> the models it runs
        by_name = dict(zip(names, zip(self.models, self._contexts)))
        if shots is None and task.voters:
            pairs = []
            for v in task.voters:
                if v["model"] not in by_name and partial:
                    continue
                if v["model"] not in by_name:
                    raise ValueError(f"the task's voter {v['model']!r} is not loaded; the models are: "
                                     f"{', '.join(names)}")
                pairs.append((by_name[v["model"]], v["shots"]))
        else:
            pairs = [(entry, k) for entry in by_name.values() for k in sorted(set(shots or [0]))]
        self.shots: dict[str, int] = {}  # voter name -> its shot count
        for (model, ctx), k in pairs:
            name, cost = f"{model.name} {k}-shot", (lambda n, s, p=model.n_params: n * p)
            if isinstance(ctx, Answers):
                voter = Voter(name, ctx.answer(model.name, k), task.labels, cost, cache=True)
            else:
                voter = Voter.from_task(task, ctx, k, name=name, cost=cost)
            self.shots[voter.name] = k
            self.voters.append(voter)
            self._uses[voter.name] = (model,)
        self.setups: dict[str, object] = {v.name: v for v in self.voters}
        self.fitted: dict[str, dict] = {}

    def add_voter(self, voter: Voter, model: LineupModel) -> None:
        """One more voter that is not a prompt (a task head: train.run.head_voter), running `model` (one of the
        line-up's, by name, or another, e.g. an embedding model: then it joins the models). Before fitting: it then
        takes part in the ensembles and, as its model's cheapest voter, comes first among them in the cascade. A head
        trained on the dev rows is optimistic on them, so the weights and thresholds fitted there trust it more than
        its test accuracy would warrant."""
        if self.fitted:
            raise ValueError("add voters before fitting the line-up")
        if voter.labels != tuple(self.task.labels):
            raise ValueError(f"voter {voter.name!r} has labels {list(voter.labels)}; the task's are "
                             f"{list(self.task.labels)}")
        if voter.name in self.setups:
            raise ValueError(f"a setup named {voter.name!r} is already in the line-up")
        known = {m.name: m for m in self.models}
        if model.name not in known:
            self.models.append(model)
        self.voters.append(voter)
        self.setups[voter.name] = voter
        self._uses[voter.name] = (known.get(model.name, model),)

    # ---- fitting on the dev rows ----

    def fitting(self, dev_rows: Sequence | None) -> Iterator[tuple[str, int, int]]:
        """Ask every voter every dev row, yielding ("dev: <voter>", done, total) after each, then fit the ensembles
        and the cascade. A single voter needs no fitting (nothing is yielded)."""
        if len(self.voters) < 2:
            return
        if dev_rows:
            texts, gold = [r.text for r in dev_rows], [r.label for r in dev_rows]
            for name, done, total in self.answering(texts, [f"dev row {r.number}" for r in dev_rows]):
                yield f"dev: {name}", done, total
        everyone = tuple(self.models)
        for rule in RULES:
            if not dev_rows and rule == "weighted":
                continue  # no dev rows to learn weights from
            ensemble = Ensemble(self.voters, rule)
            if dev_rows:
                ensemble.fit(texts, gold)
            name = f"ensemble {rule}"
            self.setups[name], self._uses[name] = ensemble, everyone
            self.fitted[name] = {"temperature": ensemble.temperature,
                                 "weights": None if ensemble.weights is None else ensemble.weights.tolist()}
        if dev_rows:
            # smallest model first, fewer shots first; a head (no shots) before its model's prompts
            by_size = sorted(self.voters,
                             key=lambda v: (self._uses[v.name][0].n_params, self.shots.get(v.name, -1)))
            cascade = Cascade(by_size).fit(texts, gold)
            self.setups["cascade"], self._uses["cascade"] = cascade, everyone
            # a stage that never answers has threshold inf: null in JSON (JSON has no Infinity; JSON.parse refuses it)
            thresholds = [None if math.isinf(t) else t for t in cascade.thresholds]
            self.fitted["cascade"] = {"voters": [v.name for v in by_size], "thresholds": thresholds,
                                      "dev": cascade.dev}

    def fit(self, dev_rows: Sequence | None) -> Lineup:
        for _ in self.fitting(dev_rows):
            pass
        return self

    # ---- evaluating and reporting ----

    def evaluation(self, rows: Sequence) -> Evaluation:
        """The test rows through every setup (iterate it for progress; .report at the end, .partial() on a stop)."""
        return Evaluation(self.task, rows, self.setups)

    def summary(self, report: Report, rows: Sequence) -> dict:
        """The report as JSON-ready data, each setup with the models it runs (names, parameters, bytes), the fitted
        values, what the rows would cost hosted, and the recommendation for no target."""
        out = report.as_dict()
        for setup in out["setups"]:
            uses = self._uses[setup["name"]]
            setup.update(models=[m.name for m in uses], n_params=sum(m.n_params for m in uses),
                         model_bytes=sum(m.size for m in uses))
        n_input, n_output = self.hosted_tokens(rows[:report.n])
        out.update(models=[vars(m) for m in self.models], fitted=self.fitted,
                   hosted={"input_tokens": n_input, "output_tokens": n_output,
                           "models": hosted_costs(report.n, n_input, n_output)},
                   recommendation=recommend(out, None))
        out["notes"] = {"cascade": cascade_text(out), "hosted": hosted_text(out)}
        return out

    def answering(self, texts: Sequence[str], where: Sequence[str] | None = None) -> Iterator[tuple[str, int, int]]:
        """Ask every voter every text (the dev rows before fitting; another worker's Lineup: see answers()),
        yielding (voter, done, total). where: each text's place for an error message (default "text N")."""
        for voter in self.voters:
            for done, text in enumerate(texts, 1):
                try:
                    voter(text)
                except ValueError as e:  # e.g. a text too long for the context: say which voter and where
                    place = where[done - 1] if where else f"text {done}"
                    raise ValueError(f"voter {voter.name!r}, {place}: {e}") from e
                yield voter.name, done, len(texts)

    def answers(self, texts: Sequence[str]) -> dict:
        """What answering() found, as JSON-ready Answers per model (Answers.from_json reads it back)."""
        out = {m.name: {"n_params": m.n_params, "size": m.size, "by_shots": {}} for m in self.models}
        for voter in self.voters:
            if voter.name not in self.shots:
                continue  # not a prompt (a head): another worker cannot stand in for it
            table = out[self._uses[voter.name][0].name]["by_shots"].setdefault(str(self.shots[voter.name]), {})
            for text in texts:
                vote = voter(text)  # cached
                table[text] = [list(vote.probs), vote.n_tokens, vote.seconds]
        return out

    def hosted_tokens(self, rows: Sequence) -> tuple[int, int]:
        """(input, output) tokens the rows would take hosted, counted with the first loaded model's tokenizer: each
        zero-shot prompt, and the longest label per item."""
        local = [ctx.model for ctx in self._contexts if not isinstance(ctx, Answers)]
        model = self.tokenizer or (local[0] if local else None)
        if model is None:
            raise ValueError("at least one model must be loaded here: its tokenizer counts the hosted tokens")
        n_input = sum(int(self.task.prompt_tokens(model, r.text, 0).size) for r in rows)
        longest = max(len(model.tokenize(label, add_special=False)) for label in self.task.labels)
        return n_input, longest * len(rows)


def recommend(summary: dict, target: float | None) -> dict:
    """The cheapest setup reaching `target` accuracy (see the module's docstring), from a summary's setups:
    {"setup", "accuracy", "cost_per_item", "model_bytes", "target", "reached": True}, or, when none reaches the
    target, {"setup": None, "best": the most accurate setup, "accuracy", "target", "reached": False}."""
    setups = summary["setups"]
    if not setups:
        raise ValueError("no setups to recommend from")
    if target is not None and not 0 <= target <= 1:
        raise ValueError(f"the target accuracy is a fraction between 0 and 1, got {target!r}")
    best = max(setups, key=lambda s: s["accuracy"])
    bar = best["accuracy"] - NEAR_BEST if target is None else target
    good = [s for s in setups if s["accuracy"] >= bar - 1e-12]
    if not good:
        rec = {"setup": None, "best": best["name"], "accuracy": best["accuracy"], "target": target, "reached": False}
        return {**rec, "text": recommendation_text(rec)}
    pick = min(good, key=lambda s: (s["cost_per_item"], s.get("model_bytes", 0), -s["accuracy"]))
    rec = {"setup": pick["name"], "accuracy": pick["accuracy"], "cost_per_item": pick["cost_per_item"],
           "model_bytes": pick.get("model_bytes"), "target": target, "reached": True}
    return {**rec, "text": recommendation_text(rec)}


def parse_shots(text: str | Sequence[int]) -> list[int]:
    """Few-shot counts from "0,3" (or a list of counts): sorted, without repeats."""
    parts = text.split(",") if isinstance(text, str) else list(text)
    try:
        shots = sorted({int(s) if isinstance(s, str) else s for s in parts if not isinstance(s, str) or s.strip()})
    except ValueError:
        raise ValueError(f"give few-shot counts separated by commas, e.g. 0,3; got {text!r}") from None
    if not shots or any(isinstance(k, bool) or not isinstance(k, int) or k < 0 for k in shots):
        raise ValueError(f"few-shot counts are whole numbers from 0, e.g. 0,3; got {text!r}")
    return shots


# ---- the sentences under the table (the CLI prints them, the page shows them) ----

def recommendation_text(rec: dict) -> str:
    target = rec["target"]
    aim = "accuracy within a point of the best" if target is None else f"accuracy of at least {target:.3f}"
    if not rec["reached"]:
        return f"No setup reaches {aim}; the best is {rec['best']} at {rec['accuracy']:.3f}."
    mb = f", {rec['model_bytes'] / 1e6:.1f} MB of models" if rec.get("model_bytes") else ""
    return f"Recommended for {aim}, with the least compute: {rec['setup']} (accuracy {rec['accuracy']:.3f}{mb})."


def cascade_text(summary: dict) -> str:
    """What the cascade saved against its biggest voter alone ("" without a cascade)."""
    by_name = {s["name"]: s for s in summary["setups"]}
    fitted = summary["fitted"].get("cascade")
    if "cascade" not in by_name or not fitted or fitted["voters"][-1] not in by_name:
        return ""
    cascade, biggest = by_name["cascade"], by_name[fitted["voters"][-1]]
    answered = ", ".join(f"{k} {v}" for k, v in (cascade["answered_by"] or {}).items())
    return (f"Cascade: answered by {answered}; {cascade['n_tokens']} tokens and {cascade['seconds']:.1f} s against "
            f"{biggest['n_tokens']} tokens and {biggest['seconds']:.1f} s for {biggest['name']} alone (accuracy "
            f"{cascade['accuracy']:.3f} against {biggest['accuracy']:.3f}).")


def hosted_text(summary: dict) -> str:
    hosted = summary["hosted"]
    return (f"The same {summary['n']} items hosted ({hosted['input_tokens']} input and {hosted['output_tokens']} "
            "output tokens, counted with the first model's tokenizer; hosted tokenizers differ): "
            + "; ".join(f"{m['name']} {m['usd_text']} ({m['per_million_items_text']} per million items, "
                        f"prices of {m['as_of']})" for m in hosted["models"])
            + ". Here: no charge per item beyond the device's own power.")

