#!/usr/bin/env python3
"""Accuracy, macro-F1, speed and memory of SmolLM2-135M-Instruct and Gemma 3 270M on the shipped label tasks, each
model 0-shot and 3-shot (4 voters), every ensemble rule and the cascade, native backend.

Per task it runs `python -m pocketmind eval` once with both models and shots 0,3 on the test split (the dev split
fits the ensemble weights, calibration temperatures and cascade thresholds) and reads the JSON report it writes.
Peak memory: each model alone in a child process (a short eval), its VmHWM against a child that only imports
pocketmind. Constrained vs unconstrained tokens/s: benchmarks/constrained_speed.py, re-run here (it takes well
under a minute) with its output written to a temporary file, not over docs/constrained_speed.md. The run's numbers
go beside the doc (docs/task_accuracy.json).

    python3 benchmarks/task_accuracy.py [--limit N] [--threads 1] [--out docs/task_accuracy.md] [--json-dir DIR]
    python3 benchmarks/task_accuracy.py --from-json DIR/run.json   # the doc again from a kept run, no measuring
"""
from __future__ import annotations

import argparse
import csv
import datetime
import json
import math
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "wasm"))
sys.path.insert(0, str(REPO / "benchmarks"))

import build as wasm_build  # noqa: E402
import deps  # noqa: E402
import numpy as np  # noqa: E402
from machine import cpu_name  # noqa: E402

TASKS = ("support_tickets", "review_sentiment")
SHOTS = "0,3"
STUCK = 0.8  # a voter giving one label to this share of the items or more is called stuck on it
MEMORY_ITEMS = 5  # test rows the memory probe classifies (3-shot: the longest prompts)

# A child that runs one model alone through the CLI (or, with no model, only imports the package), then prints its
# own peak resident set size: VmHWM from /proc/self/status, else ru_maxrss (KiB on Linux).
MEMORY_PROBE = r"""
import contextlib, io, json, resource, sys
import pocketmind, pocketmind.__main__ as cli
argv = sys.argv[1:]
if argv:
    with contextlib.redirect_stdout(io.StringIO()):
        rc = cli.main(argv)
    if rc:
        sys.exit(rc)
kib = None
try:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            kib = int(line.split()[1])
except OSError:
    pass
print(json.dumps({"peak_kib": kib or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "source": "VmHWM" if kib else "ru_maxrss"}))
"""


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "py")] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


def machine() -> dict[str, str]:
    cpu = cpu_name()
    return {"cpu": cpu, "nproc": str(len(os.sched_getaffinity(0))), "python": platform.python_version(),
            "system": f"{platform.system()} {platform.release()}"}


def task_data(task_json: Path) -> Path:
    """The CSV a task document names (relative to the document)."""
    return (task_json.parent / json.loads(task_json.read_text(encoding="utf-8"))["data"]).resolve()


def gold_labels(task: dict, data: Path, split: str, limit: int | None) -> list[str]:
    """The gold labels of the rows the CLI evaluates (the split's rows in file order, the first `limit`)."""
    with data.open(encoding="utf-8", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("split") == split]
    return [r[task.get("label_column", "label")].strip() for r in rows][:limit]


def run_eval(task_json: Path, data: Path, models: list[Path], out: Path, args: argparse.Namespace) -> float:
    cmd = [sys.executable, "-m", "pocketmind", "eval", str(task_json), str(data), "--shots", SHOTS,
           "--split", "test", "--dev-split", "dev", "--threads", str(args.threads), "--json", str(out)]
    for m in models:
        cmd += ["--model", str(m)]
    if args.limit:
        cmd += ["--limit", str(args.limit)]
    print("$ " + shlex.join(cmd), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=child_env(), cwd=REPO)
    return time.perf_counter() - t0


def peak_rss(argv: list[str]) -> int:
    """Peak RSS in bytes of a child running MEMORY_PROBE with argv."""
    done = subprocess.run([sys.executable, "-c", MEMORY_PROBE, *argv], check=True, env=child_env(), cwd=REPO,
                          capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_kib"] * 1024


def constrained_speed(threads: int) -> dict | None:
    """Median constrained and unconstrained tokens/s from benchmarks/constrained_speed.py, or None if it fails."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, str(REPO / "benchmarks" / "constrained_speed.py"), "--threads", str(threads),
               "--out", str(Path(tmp) / "constrained_speed.md")]
        print("$ " + shlex.join(cmd), flush=True)
        done = subprocess.run(cmd, env=child_env(), cwd=REPO, capture_output=True, text=True)
    m = re.search(r"constrained ([\d.]+) tok/s / unconstrained ([\d.]+) tok/s = ([\d.]+)x", done.stdout)
    if done.returncode or not m:
        print(f"constrained_speed.py failed (rc {done.returncode}); the doc links its last committed result\n"
              + done.stderr[-2000:], file=sys.stderr)
        return None
    return {"constrained": float(m.group(1)), "unconstrained": float(m.group(2)), "ratio": float(m.group(3))}


def pts(x: float) -> str:
    """Accuracy points, signed."""
    return f"{100 * x:+.1f}"


def analyse(task: dict, result: dict, gold: list[str], seconds: float) -> dict:
    """Everything the doc says about one task, computed from the CLI's JSON and the gold labels."""
    setups = result["report"]["setups"]
    fitted = result["fitted"]
    by_name = {s["name"]: s for s in setups}
    voters = [s for s in setups if s["name"] not in fitted]
    labels = result["report"]["labels"]
    n = len(gold)
    # the gold labels read here must be the ones the CLI scored (same rows, same order)
    gold_counts = [sum(row) for row in voters[0]["confusion"]]
    if [gold.count(label) for label in labels] != gold_counts or n != result["report"]["n"]:
        raise SystemExit(f"{task['name']}: the test rows read here differ from the ones the CLI evaluated")
    for s in setups:
        if not math.isclose(np.mean([p == g for p, g in zip(s["predictions"], gold)]), s["accuracy"]):
            raise SystemExit(f"{task['name']}: recomputed accuracy of {s['name']} differs from the report")
    g = np.array(gold)
    right = {s["name"]: np.array(s["predictions"]) == g for s in setups}
    majority_label = max(labels, key=gold.count)
    base_acc = gold.count(majority_label) / n
    base_f1 = 2 * base_acc / (1 + base_acc) / len([c for c in gold_counts if c])  # one label predicted, F1 0 else
    best = max(voters, key=lambda s: (s["accuracy"], s["macro_f1"]))
    others = [s for s in voters if s is not best]
    others_right = np.sum([right[s["name"]] for s in others], axis=0)
    half = math.ceil(len(others) / 2) if others else 0
    preds = [np.array(s["predictions"]) for s in voters]
    pair_agree = [float(np.mean(a == b)) for i, a in enumerate(preds) for b in preds[i + 1:]]
    return {
        "task": task, "result": result, "seconds": seconds, "n": n, "by_name": by_name, "voters": voters,
        "fitted": fitted, "labels": labels, "right": right, "best": best,
        "baseline": {"label": majority_label, "accuracy": base_acc, "macro_f1": base_f1},
        "oracle": float(np.mean(np.any([right[s["name"]] for s in voters], axis=0))),
        # items where the best member is wrong but most of the others are right (a vote could fix them), and
        # where it is right but most of the others are wrong (a vote could break them)
        "help": int(np.sum(~right[best["name"]] & (others_right >= half))),
        "harm": int(np.sum(right[best["name"]] & (len(others) - others_right >= half))),
        "pair_agreement": float(np.mean(pair_agree)) if pair_agree else 1.0,
    }


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test: how likely a split at least this uneven is if either side were equally likely."""
    n = wins + losses
    if n == 0:
        return 1.0
    k = min(wins, losses)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n)


def top_answer(setup: dict) -> tuple[str, float]:
    """A setup's most frequent answer and its share of the items."""
    labels, counts = np.unique(setup["predictions"], return_counts=True)
    return str(labels[np.argmax(counts)]), float(counts.max() / counts.sum())


def ensemble_sentence(a: dict, rule: str) -> str:
    s = a["by_name"].get(f"ensemble {rule}")
    if s is None:
        return ""
    best, right, n = a["best"], a["right"], a["n"]
    d = s["accuracy"] - best["accuracy"]
    wins = int(np.sum(right[s["name"]] & ~right[best["name"]]))
    losses = int(np.sum(~right[s["name"]] & right[best["name"]]))
    head = f"**{rule}** ({100 * s['accuracy']:.1f} %, macro-F1 {s['macro_f1']:.3f}) "
    if d > 0:
        head += f"beats its best member by {pts(d)} points"
    elif d == 0:
        head += "ties with its best member"
    else:
        head += f"does not beat its best member: {pts(d)} points"
    p = sign_test(wins, losses)
    head += (f" (of {n} items it is right on {wins} that {best['name']} misses and wrong on {losses} it gets right; "
             f"one item is {100 / n:.1f} points here; sign test on those items p = {p:.2f}"
             + (", so the difference is within noise" if d != 0 and p >= 0.05 else "") + ")")
    reasons = []
    baseline = a["baseline"]["accuracy"]
    weak = [v for v in a["voters"] if v["accuracy"] <= baseline + 0.05 and v is not best]
    if rule == "weighted":
        weights = a["fitted"][s["name"]]["weights"] or []
        named = list(zip([v["name"] for v in a["voters"]], weights))
        zero = [name for name, w in named if w == 0]
        top_name, top_w = max(named, key=lambda x: x[1]) if named else ("", 0)
        if top_w >= 0.9:
            reasons.append(f"the dev fit gave {top_w:.2f} of the weight to {top_name}, so it mostly repeats that "
                           "voter")
        elif top_name:
            reasons.append(f"the dev fit gave the most weight ({top_w:.2f}) to {top_name}")
        if zero:
            reasons.append(f"the dev fit gave no weight to {', '.join(zero)} (no better than chance, 1 in "
                           f"{len(a['labels'])}, on dev)")
        if d <= 0 and top_name and top_name != best["name"] and top_w > 0:
            reasons.append(f"its heaviest voter on dev ({top_name}) is not the best one on test: dev and test "
                           "disagree on who is best")
    elif weak:
        listed = ", ".join(f"{v['name']} {100 * v['accuracy']:.1f} %" for v in weak)
        reasons.append(f"{len(weak)} of the other {len(a['voters']) - 1} members are at most 5 points above the "
                       f"majority baseline ({listed}), so their votes are close to noise and count as much as the "
                       "best member's")
    if d <= 0:
        if a["harm"] > a["help"]:
            reasons.append(f"most of the other members are wrong on {a['harm']} items the best member gets right, "
                           f"and right on only {a['help']} it gets wrong: a vote overrules it more often where it "
                           "is right")
        if a["pair_agreement"] >= 0.8:
            reasons.append(f"the members give the same label on {100 * a['pair_agreement']:.0f} % of "
                           "item pairs on average, so a vote adds little")
        if a["oracle"] - best["accuracy"] < 0.05:
            reasons.append(f"some member is right on {100 * a['oracle']:.1f} % of the items, only "
                           f"{100 * (a['oracle'] - best['accuracy']):.1f} points more than the best member alone: "
                           "there is little for any vote to gain")
    return head + (": " + "; ".join(reasons) if reasons else "") + "."


def cascade_sentence(a: dict) -> str:
    fitted = a["fitted"].get("cascade")
    c = a["by_name"].get("cascade")
    if not fitted or not c:
        return ""
    big = a["by_name"][fitted["voters"][-1]]
    answered = ", ".join(f"{name} {k}" for name, k in c["answered_by"].items())
    text = (f"The **cascade** ({100 * c['accuracy']:.1f} %, macro-F1 {c['macro_f1']:.3f}) is "
            f"{pts(c['accuracy'] - big['accuracy'])} points against {big['name']} alone "
            f"({100 * big['accuracy']:.1f} %) and {pts(c['accuracy'] - a['best']['accuracy'])} against the best "
            f"member; it decoded {c['n_tokens'] / max(big['n_tokens'], 1):.2f}x the tokens and took "
            f"{c['seconds'] / max(big['seconds'], 1e-9):.2f}x the seconds of {big['name']} alone "
            f"(answered by: {answered}).")
    dev = fitted["dev"]
    if "best_accuracy" in dev:
        text += (f" Its thresholds were fitted to come within 1 point of the best dev accuracy any thresholds reach "
                 f"({100 * dev['best_accuracy']:.1f} %; the biggest voter alone: {100 * dev['biggest_accuracy']:.1f} "
                 f"%), at the least compute.")
    if dev["accuracy"] - dev["biggest_accuracy"] - (c["accuracy"] - big["accuracy"]) >= 0.05:
        text += (f" On dev it was {pts(dev['accuracy'] - dev['biggest_accuracy'])} points against {big['name']}, "
                 f"on test {pts(c['accuracy'] - big['accuracy'])}: thresholds fitted on {a['fit_n']} dev items do "
                 "not carry over to the test items.")
    speed = model_speed(a)
    small, large = model_of(fitted["voters"][0]), model_of(big["name"])
    if speed[small] < speed[large]:
        text += (f" Its thresholds minimise tokens × parameters (the CLI's deterministic cost), but on this machine "
                 f"{small}, which it asks first, processes {speed[small]:.0f} tokens/s against {speed[large]:.0f} "
                 f"for {large}: the smaller model is not the faster one here, so fewer parameter-tokens need not "
                 "mean fewer seconds.")
    return text


def model_of(voter_name: str) -> str:
    """The model part of a voter's name ("<model> <k>-shot")."""
    return voter_name.rsplit(" ", 1)[0]


def model_speed(a: dict) -> dict[str, float]:
    """Tokens per second of each model over all its voters on the test items."""
    tokens: dict[str, float] = {}
    seconds: dict[str, float] = {}
    for v in a["voters"]:
        m = model_of(v["name"])
        tokens[m] = tokens.get(m, 0) + v["n_tokens"]
        seconds[m] = seconds.get(m, 0) + v["seconds"]
    return {m: tokens[m] / seconds[m] if seconds[m] else 0.0 for m in tokens}


def verdict(analyses: list[dict]) -> list[str]:
    """The plain-words answer: does an ensemble beat its best member, by how much, and does the cascade pay."""
    out = []
    for a in analyses:
        best, n = a["best"], a["n"]
        parts = []
        for rule in ("majority", "mean", "weighted"):
            s = a["by_name"].get(f"ensemble {rule}")
            if s is None:
                continue
            d = s["accuracy"] - best["accuracy"]
            items = round(d * n)
            wins = int(np.sum(a["right"][s["name"]] & ~a["right"][best["name"]]))
            losses = int(np.sum(~a["right"][s["name"]] & a["right"][best["name"]]))
            word = "beats it by" if d > 0 else "ties with it" if d == 0 else "falls below it by"
            amount = f" {abs(100 * d):.1f} points ({abs(items)} item(s))" if d else ""
            parts.append(f"{rule} {word}{amount}, sign test p = {sign_test(wins, losses):.2f}")
        line = (f"**{a['task']['name']}**: the best member is {best['name']} ({100 * best['accuracy']:.1f} %, "
                f"majority baseline {100 * a['baseline']['accuracy']:.1f} %); " + "; ".join(parts) + ".")
        c, fit = a["by_name"].get("cascade"), a["fitted"].get("cascade")
        if c and fit:
            big = a["by_name"][fit["voters"][-1]]
            line += (f" The cascade is {pts(c['accuracy'] - best['accuracy'])} points against the best member and "
                     f"{pts(c['accuracy'] - big['accuracy'])} against {big['name']}, the biggest voter, "
                     f"at {c['n_tokens'] / max(big['n_tokens'], 1):.2f}x its tokens and "
                     f"{c['seconds'] / max(big['seconds'], 1e-9):.2f}x its seconds.")
        out.append(line)
    significant = [a for a in analyses for rule in ("majority", "mean", "weighted")
                   if f"ensemble {rule}" in a["by_name"]
                   and a["by_name"][f"ensemble {rule}"]["accuracy"] > a["best"]["accuracy"]
                   and sign_test(int(np.sum(a["right"][f"ensemble {rule}"] & ~a["right"][a["best"]["name"]])),
                                 int(np.sum(~a["right"][f"ensemble {rule}"] & a["right"][a["best"]["name"]]))) < 0.05]
    gains = [(a["by_name"][f"ensemble {rule}"]["accuracy"] - a["best"]["accuracy"], rule, a)
             for a in analyses for rule in ("majority", "mean", "weighted") if f"ensemble {rule}" in a["by_name"]]
    d, rule, a = max(gains, key=lambda g: g[0])
    largest = (f"the largest gain is {pts(d)} points ({round(d * a['n'])} item(s) of {a['n']}), {rule} on "
               f"{a['task']['name']}" if d > 0 else "no rule gains anything")
    stuck = sum(top_answer(v)[1] >= STUCK for a in analyses for v in a["voters"])
    margins = ", ".join(f"{pts(a['best']['accuracy'] - a['baseline']['accuracy'])} on {a['task']['name']}"
                        for a in analyses)
    why = (f"The members are weak (the best member's margin over the majority baseline: {margins}) and {stuck} of "
           f"{sum(len(a['voters']) for a in analyses)} voters give one label to at least {100 * STUCK:.0f} % of the "
           "items, so their votes rarely correct each other.")
    out.append("In plain words: " + (
        "at least one ensemble beats its best member by more than noise (sign test p < 0.05) on "
        + ", ".join(sorted({a["task"]["name"] for a in significant})) + f"; {largest}." if significant else
        f"no ensemble beats its best member by more than noise (no gain has sign test p < 0.05); {largest}. " + why))
    return out


def task_section(a: dict) -> list[str]:
    task, res, by_name, n = a["task"], a["result"], a["by_name"], a["n"]
    base = a["baseline"]
    lines = [f"## {task['name']} ({n} test rows, {len(a['labels'])} labels: {', '.join(a['labels'])})", "",
             f"Eval wall time {a['seconds'] / 60:.1f} min (dev and test rows, all setups). Ensembles and the cascade "
             "count the time and tokens of every voter they asked (each voter answers an item once; the others "
             "reuse it).", "",
             "| setup | accuracy | macro-F1 | ms/item | tokens/s | tokens | its most frequent answer |",
             "|---|---|---|---|---|---|---|"]
    for s in res["report"]["setups"]:
        bold = "**" if s is a["best"] else ""
        label, share = top_answer(s)
        lines.append(f"| {bold}{s['name']}{bold} | {100 * s['accuracy']:.1f} % | {s['macro_f1']:.3f} | "
                     f"{s['ms_per_item']:.0f} | {s['tokens_per_s']:.0f} | {s['n_tokens']} | "
                     f"{label} ({100 * share:.0f} %) |")
    lines.append(f"| *majority-class baseline* (always '{base['label']}') | {100 * base['accuracy']:.1f} % | "
                 f"{base['macro_f1']:.3f} | | | | {base['label']} (100 %) |")
    lines += ["", f"Best single setup (bold): {a['best']['name']}. At least one of the 4 voters is right on "
              f"{100 * a['oracle']:.1f} % of the items (the ceiling for any vote); voters give the same label on "
              f"{100 * a['pair_agreement']:.0f} % of items, averaged over voter pairs.", ""]
    below = [v for v in a["voters"] if v["accuracy"] <= base["accuracy"]]
    if below:
        lines += [f"At or below the majority baseline: {', '.join(v['name'] for v in below)}.", ""]
    stuck = [(v["name"], *top_answer(v)) for v in a["voters"] if top_answer(v)[1] >= STUCK]
    if stuck:
        listed = "; ".join(f"{name} answers '{label}' on {100 * share:.0f} % of the items" for name, label, share
                           in stuck)
        lines += [f"Voters that give one label to at least {100 * STUCK:.0f} % of the items (on the test split "
                  f"the most common label is {100 * base['accuracy']:.0f} % of the items): {listed}. "
                  "Such a voter barely reads the text; its accuracy is about the share of that label.", ""]
    lines += [f"- {ensemble_sentence(a, rule)}" for rule in ("majority", "mean", "weighted")
              if f"ensemble {rule}" in by_name]
    if "cascade" in by_name:
        lines += [f"- {cascade_sentence(a)}"]
    lines += ["", "Fitted on the dev split:", "", "| setup | temperature | weights / thresholds |", "|---|---|---|"]
    for name, fit in a["fitted"].items():
        if name == "cascade":
            th = ", ".join(f"{v}: {'never answers' if t is None or t == math.inf else f'answers at confidence >= {t:.3f}'}"
                           for v, t in zip(fit["voters"], fit["thresholds"]))
            dev = fit["dev"]
            lines.append(f"| cascade | | order {' → '.join(fit['voters'])}; {th}; last always answers. Dev: "
                         f"accuracy {100 * dev['accuracy']:.1f} % vs {100 * dev['biggest_accuracy']:.1f} % for the "
                         f"biggest alone, cost {dev['cost'] / dev['biggest_cost']:.2f}x |")
        else:
            w = fit["weights"]
            ws = "equal" if w is None else ", ".join(f"{v['name']} {x:.2f}" for v, x in zip(a["voters"], w))
            lines.append(f"| {name} | {fit['temperature']:.2f} | {ws} |")
    return lines + [""]


def measure(args: argparse.Namespace) -> dict:
    """Run everything; return the raw numbers (JSON-able) that render() turns into the doc."""
    started = datetime.datetime.now(datetime.timezone.utc)
    t_start = time.perf_counter()
    load_before = os.getloadavg()
    wasm_build.build("native")
    models = [deps.smollm2(), deps.gemma3_270m()]
    with tempfile.TemporaryDirectory() as tmp:
        json_dir = Path(args.json_dir or tmp)
        json_dir.mkdir(parents=True, exist_ok=True)
        tasks = []
        for name in TASKS:
            task_json = REPO / "data" / "tasks" / f"{name}.json"
            out = json_dir / f"{name}.json"
            seconds = run_eval(task_json, task_data(task_json), models, out, args)
            tasks.append({"name": name, "seconds": seconds, "result": json.loads(out.read_text(encoding="utf-8"))})
            print(f"{name}: {seconds / 60:.1f} min", flush=True)

    # memory: each model alone (a few 3-shot test items of the first task), against a child that loads no model
    first = REPO / "data" / "tasks" / f"{TASKS[0]}.json"
    print("measuring peak RSS of each model alone", flush=True)
    base_rss = peak_rss([])
    rss = {m.stem: peak_rss(["eval", str(first), str(task_data(first)), "--model", str(m), "--shots", "3",
                             "--split", "test", "--limit", str(MEMORY_ITEMS), "--threads", str(args.threads),
                             "--no-progress"]) for m in models}
    speed = None if args.no_constrained else constrained_speed(args.threads)
    return {"started": started.isoformat(), "seconds": time.perf_counter() - t_start, "host": machine(),
            "load": [load_before[0], os.getloadavg()[0]], "limit": args.limit, "threads": args.threads,
            "argv": shlex.join(["python3", "benchmarks/task_accuracy.py", *sys.argv[1:]]),
            "models": [{"path": str(m), "file_bytes": m.stat().st_size} for m in models],
            "tasks": tasks, "base_rss": base_rss, "rss": rss, "constrained_speed": speed}


def render(run: dict) -> str:
    analyses = []
    for t in run["tasks"]:
        task_json = REPO / "data" / "tasks" / f"{t['name']}.json"
        task = json.loads(task_json.read_text(encoding="utf-8"))
        gold = gold_labels(task, task_data(task_json), "test", run["limit"])
        analyses.append(analyse(task, t["result"], gold, t["seconds"]))
        analyses[-1]["fit_n"] = len(gold_labels(task, task_data(task_json), "dev", run["limit"]))
    started = datetime.datetime.fromisoformat(run["started"])
    host, total, threads, limit = run["host"], run["seconds"], run["threads"], run["limit"]
    load_before, load_after = run["load"]
    base_rss, rss, speed, argv = run["base_rss"], run["rss"], run["constrained_speed"], run["argv"]
    models = [Path(m["path"]) for m in run["models"]]
    file_bytes = {Path(m["path"]).stem: m["file_bytes"] for m in run["models"]}

    mb = 1024 * 1024
    model_info = {Path(m["path"]).stem: m for m in analyses[0]["result"]["models"]}
    lines = [
        "# Task accuracy: single models, ensembles, cascade",
        "",
        f"Generated by `benchmarks/task_accuracy.py` on {started:%Y-%m-%d} (UTC) with `{argv}`, in "
        f"{total / 60:.1f} min. Machine: {host['cpu']}, {host['nproc']} CPU(s) (`nproc`), {host['system']}, "
        f"CPython {host['python']}; native backend (llama.cpp built by `wasm/build.py native`), {threads} "
        f"thread(s) per model. Load average {load_before:.2f} at the start, {load_after:.2f} at the end."
        + (f" The text was rendered again from that run's numbers with `{run['rendered']}`." if run.get("rendered")
           else ""),
        "",
        "Each task is one run of `python -m pocketmind eval TASK.json DATA.csv --model SmolLM2 --model Gemma "
        f"--shots {SHOTS} --split test --threads {threads}"
        + (f" --limit {limit}" if limit else "") + "`: 4 voters (each model 0-shot and 3-shot, the "
        "few-shot examples from the dev split), the ensembles majority, mean and weighted, and the cascade "
        "(smallest model first). Weights, calibration temperatures and cascade thresholds are fitted on the dev "
        "split; every figure below is on the test split. Accuracy and macro-F1 are deterministic; **the ms and "
        "tokens/s figures are one run on a shared, noisy 2-core machine** (another developer was working on it), "
        "so read them as rough. Tokens are what classification decodes (the prompt plus each label's tokens, "
        "no generation), so tokens/s here is prompt-processing speed, not generation speed.",
        "",
        f"{'Quick run: only the first ' + str(limit) + ' rows of each split.' if limit else ''}",
        "",
        "## Summary",
        "",
        "| task | majority baseline | best single setup | ensemble majority | ensemble mean | ensemble weighted "
        "| cascade | cascade tokens / seconds vs biggest voter |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for a in analyses:
        cells = []
        for key in ("ensemble majority", "ensemble mean", "ensemble weighted", "cascade"):
            s = a["by_name"].get(key)
            cells.append("" if s is None else f"{100 * s['accuracy']:.1f} % / {s['macro_f1']:.3f} "
                         f"({pts(s['accuracy'] - a['best']['accuracy'])})")
        c, fit = a["by_name"].get("cascade"), a["fitted"].get("cascade")
        saving = ""
        if c and fit:
            big = a["by_name"][fit["voters"][-1]]
            saving = (f"{c['n_tokens'] / max(big['n_tokens'], 1):.2f}x / "
                      f"{c['seconds'] / max(big['seconds'], 1e-9):.2f}x")
        b = a["best"]
        lines.append(f"| {a['task']['name']} | {100 * a['baseline']['accuracy']:.1f} % | {b['name']}: "
                     f"{100 * b['accuracy']:.1f} % / {b['macro_f1']:.3f} | {' | '.join(cells)} | {saving} |")
    lines += ["", "Cells: accuracy / macro-F1 (accuracy points against the best single setup of that task).", "",
              "Does an ensemble beat its best member?", ""]
    lines += [f"- {line}" for line in verdict(analyses)]
    lines += [""]
    for a in analyses:
        lines += task_section(a)
    lines += ["## Models and memory", "",
              "| model | file | parameters | peak RSS alone | over an interpreter with pocketmind imported |",
              "|---|---|---|---|---|"]
    for m in models:
        info = model_info.get(m.stem, {})
        lines.append(f"| {m.stem} | {file_bytes[m.stem] / mb:.1f} MiB | "
                     f"{info.get('n_params', 0) / 1e6:.1f} M | {rss[m.stem] / mb:.0f} MiB | "
                     f"+{(rss[m.stem] - base_rss) / mb:.0f} MiB |")
    lines += ["",
              f"Peak RSS: the VmHWM of a child CPython process that runs the model alone through the CLI "
              f"({MEMORY_ITEMS} 3-shot test items of {TASKS[0]}, the model's default context for classification) "
              f"against one that only imports pocketmind ({base_rss / mb:.0f} MiB). This is **native CPython "
              "process memory, not wasm memory**: the memory-mapped GGUF counts once its pages are touched, and "
              "the browser's wasm heap (model copied in, its own allocator) is sized differently. The eval above "
              "holds both models at once.", "",
              "## Constrained vs unconstrained tokens/s", ""]
    if speed:
        lines.append(f"Re-run in this benchmark (`benchmarks/constrained_speed.py --threads {threads}`, "
                     f"SmolLM2, JSON schema, medians of 3 rounds): constrained **{speed['constrained']:.1f}** tok/s, "
                     f"unconstrained **{speed['unconstrained']:.1f}** tok/s, ratio **{speed['ratio']:.2f}x**. "
                     "The method and the per-round table are in [constrained_speed.md](constrained_speed.md).")
    else:
        lines.append("Not re-run here: see [constrained_speed.md](constrained_speed.md).")
    lines.append("")
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=None, help="only the first N rows of each split (quick run)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per model (default 1, as the wasm build)")
    parser.add_argument("--out", default=str(REPO / "docs" / "task_accuracy.md"), help="the Markdown report")
    parser.add_argument("--json-dir", default=None,
                        help="keep the CLI's JSON reports and this run's numbers (run.json) here")
    parser.add_argument("--from-json", default=None, metavar="RUN_JSON",
                        help="measure nothing: write the doc from a run.json an earlier run kept")
    parser.add_argument("--no-constrained", action="store_true",
                        help="do not re-run constrained_speed.py (the doc links its committed result)")
    args = parser.parse_args()
    if args.from_json:
        run = json.loads(Path(args.from_json).read_text(encoding="utf-8"))
        run["rendered"] = shlex.join(["python3", "benchmarks/task_accuracy.py", *sys.argv[1:]])
    else:
        run = measure(args)
        if args.json_dir:
            (Path(args.json_dir) / "run.json").write_text(json.dumps(run, indent=1), encoding="utf-8")
        # the numbers beside the doc: benchmarks/task_levels.py reads them
        Path(args.out).with_suffix(".json").write_text(json.dumps(run, indent=1), encoding="utf-8")
    text = render(run)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text, encoding="utf-8")
    print("\n" + text)
    print(f"wrote {args.out} ({run['seconds'] / 60:.1f} min of measuring)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
