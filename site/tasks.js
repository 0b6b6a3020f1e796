// The Tasks page: rendering only. The task, the items and every answer are the worker's (task_service.py).
import { TaskClient } from "./task-client.js";
import { $, cell, download, fileDrop, modelOf, showError, startPage, taskPicker } from "./task-shared.js";
import { finetunePanel } from "./finetune-panel.js";
import { addLocalModels, keepHead } from "./local-models.js";

const config = JSON.parse($("config").textContent);
const client = new TaskClient({ python: config.python });
let file = null; // the dropped or chosen file: {name, size, kind, bytes}
let job = null; // the run in flight: {done, stop}
let finished = false; // results to download
let headJob = null; // the head being trained: {done, stop}
let headName = null; // the last head trained or imported (the worker keeps it)
let curve = []; // [{epoch, loss, dev_accuracy}] of the head being trained
let finetune = null; // the fine-tuning panel (finetune-panel.js), made below

function render() {
  const task = picker.current().info;
  const training = Boolean(headJob || (finetune && finetune.busy()));
  $("run").disabled = Boolean(job) || training || !task || !client.ready || client.loading;
  $("stop").disabled = !job;
  $("model").disabled = Boolean(job) || training || client.loading;
  $("task").disabled = Boolean(job);
  $("download-csv").disabled = $("download-json").disabled = Boolean(job) || !finished;
  const labelled = Boolean(task && task.labels);
  $("train-head").disabled = Boolean(job) || training || !labelled || !client.ready || client.loading;
  $("stop-head").disabled = !headJob;
  $("download-head").disabled = Boolean(headJob) || !headName;
  $("head-file").disabled = Boolean(headJob) || !client.ready;
  if (finetune) finetune.render(labelled);
}

const picker = taskPicker(client, config.tasks, (info) => {
  finished = false;
  if (info) $("shots").max = String(info.n_examples);
  render();
});

function useModel() {
  const model = modelOf($("model").selectedOptions[0]);
  return client.load(model).then((card) => { render(); return card; }, (e) => { showError(e.message); render(); throw e; });
}

fileDrop($("drop"), $("file"), (dropped) => {
  file = dropped;
  $("file-info").textContent = `${dropped.name} (${dropped.kind.toUpperCase()}, ${dropped.size} bytes) will be run instead of the box above.`;
  $("items").value = "";
  showError("");
});
$("items").addEventListener("input", () => {
  if (file && $("items").value.trim()) {
    file = null;
    $("file-info").textContent = "";
    $("file").value = "";
  }
});

function addRow(item) {
  const row = document.createElement("tr");
  cell(row, String(item.index + 1), true);
  cell(row, item.text);
  const answer = item.label !== undefined ? item.label : JSON.stringify(item.value);
  cell(row, answer).className = "answer";
  cell(row, item.confidence == null ? "" : `${(100 * item.confidence).toFixed(1)} %`, true);
  $("results").tBodies[0].append(row);
}

function summaryText(done) {
  const counts = done.label_counts
    ? ` Labels: ${Object.entries(done.label_counts).map(([label, n]) => `${label} ${n}`).join(", ")}.` : "";
  const speed = done.seconds > 0 ? ` ${(1000 * done.seconds / Math.max(done.n_done, 1)).toFixed(0)} ms per item, ${Math.round(done.n_tokens / done.seconds)} tokens/s.` : "";
  return `${done.stopped ? "Stopped: " : ""}${done.n_done} of ${done.total} items.${counts}${speed}`;
}

// Run the task over the box's lines or the file; resolves with the done event.
function run() {
  if (job) return Promise.reject(new Error("a run is already going"));
  showError("");
  const request = { shots: Number($("shots").value || 0), model: modelOf($("model").selectedOptions[0]).name };
  if ($("max-items").value) request.max_items = Number($("max-items").value);
  let data = null;
  if (file) {
    request.file = file.kind;
    data = file.bytes;
  } else {
    request.txt = $("items").value;
  }
  $("results").tBodies[0].textContent = "";
  $("results").hidden = false;
  $("summary").textContent = "";
  $("run-progress").value = 0;
  finished = false;
  job = client.run(request, {
    data,
    onEvent: (event) => {
      if (event.type === "writing") { // a JSON item, token by token
        $("run-text").textContent = `${event.index + 1} of ${event.total}: ${event.n_tokens} tokens written`;
        return;
      }
      if (event.type !== "item") return;
      addRow(event);
      $("run-progress").value = (event.index + 1) / event.total;
      $("run-text").textContent = `${event.index + 1} of ${event.total}`;
    },
  });
  render();
  return job.done.then((done) => {
    $("run-progress").value = done.total ? done.n_done / done.total : 1;
    $("run-text").textContent = `${done.n_done} of ${done.total}`;
    $("summary").textContent = summaryText(done);
    finished = done.n_done > 0;
    window.pocketmindTasks.lastDone = done;
    return done;
  }, (e) => {
    showError(e.message);
    throw e;
  }).finally(() => {
    job = null;
    render();
  });
}

// ---- a task head: trained in the worker (task_service.py's start_train_head); drawn here ----

function drawCurve() {
  const last = curve.length ? curve[curve.length - 1].epoch : 1;
  const top = Math.max(...curve.map((p) => p.loss), 1e-9);
  const x = (p) => (300 * (p.epoch - 1) / Math.max(last - 1, 1)).toFixed(1);
  $("head-loss").setAttribute("points", curve.map((p) => `${x(p)},${(100 - 100 * p.loss / top).toFixed(1)}`).join(" "));
  $("head-acc").setAttribute("points", curve.map((p) => `${x(p)},${(100 - 100 * p.dev_accuracy).toFixed(1)}`).join(" "));
}

const percent = (x) => (x == null ? "–" : `${(100 * x).toFixed(1)} %`);

function headText(done) {
  if (!done.head) return "Stopped before training: no head.";
  const a = done.accuracy, n = done.n, t = done.training;
  return `${done.stopped ? "Stopped early. " : ""}Head "${done.head}": test accuracy ${percent(a.test)} (${n.test} rows), `
    + `dev ${percent(a.dev)} (${n.dev}), train ${percent(a.train)} (${n.train}); features ${done.seconds.features.toFixed(1)} s, `
    + `training ${done.seconds.training.toFixed(2)} s, ${t.epochs} epochs (best ${t.best_epoch}).`;
}

async function headData() {
  if (file && file.kind === "csv") return file.bytes;
  const shipped = picker.current().shipped;
  if (shipped && shipped.data) return new Uint8Array(await (await fetch(shipped.data)).arrayBuffer());
  throw new Error("This task has no labelled data: drop a CSV with its text, label and split columns above.");
}

async function trainHead() {
  if (headJob || job || finetune.busy()) throw new Error("the worker is busy");
  showError("");
  const model = modelOf($("model").selectedOptions[0]).name;
  const request = { file: "csv", model, seed: Number($("head-seed").value || 0), name: `${model} head` };
  const data = await headData();
  curve = [];
  drawCurve();
  $("head-summary").textContent = $("head-epoch").textContent = "";
  $("head-progress").value = 0;
  headJob = client.trainHead(request, {
    data,
    onEvent: (event) => {
      if (event.type === "progress" && event.phase === "features") {
        $("head-progress").value = event.done / event.total;
        $("head-text").textContent = `${event.done} of ${event.total} texts`;
      } else if (event.type === "epoch") {
        curve.push(event);
        drawCurve();
        $("head-epoch").textContent = `Epoch ${event.epoch}: loss ${event.loss.toFixed(4)}, dev accuracy ${percent(event.dev_accuracy)}`;
      }
    },
  });
  render();
  try {
    const done = await headJob.done;
    if (done.head) {
      headName = done.head;
      await keepHead(headName, await client.call("export_head", headName)); // for the Evaluate page, offline too
    }
    $("head-summary").textContent = headText(done);
    window.pocketmindTasks.lastHead = done;
    return done;
  } finally {
    headJob = null;
    render();
  }
}

async function saveHead() {
  download(`${headName.replace(/[^\w.-]+/g, "_")}.json`, await client.call("export_head", headName), "application/json");
}

async function importHead(chosen) {
  showError("");
  const text = await chosen.text();
  const info = JSON.parse(await client.call("import_head", text));
  headName = info.name;
  await keepHead(headName, text);
  $("head-summary").textContent = `Imported head "${info.name}" for ${info.model} (task ${info.task}, labels `
    + `${info.labels.join(", ")}).`;
  render();
  return info;
}

async function save(kind) {
  const name = (picker.current().info || { name: "results" }).name;
  if (kind === "csv") download(`${name}-results.csv`, await client.call("results_csv"), "text/csv");
  else download(`${name}-results.json`, await client.call("results_json"), "application/json");
}

// ---- fine-tuning: its own panel (finetune-panel.js); the result joins the model menu ----

finetune = finetunePanel({
  client,
  model: () => modelOf($("model").selectedOptions[0]),
  data: headData,
  taskName: () => (picker.current().info || { name: "task" }).name,
  busy: () => Boolean(job || headJob),
  onChange: render,
});

$("run").addEventListener("click", () => run().catch(() => {}));
$("stop").addEventListener("click", () => job && job.stop());
$("model").addEventListener("change", () => useModel().catch(() => {}));
$("download-csv").addEventListener("click", () => save("csv").catch((e) => showError(e.message)));
$("download-json").addEventListener("click", () => save("json").catch((e) => showError(e.message)));
$("train-head").addEventListener("click", () => trainHead().catch((e) => showError(e.message)));
$("stop-head").addEventListener("click", () => headJob && headJob.stop());
$("download-head").addEventListener("click", () => saveHead().catch((e) => showError(e.message)));
$("head-file").addEventListener("change", () => {
  const chosen = $("head-file").files[0];
  $("head-file").value = "";
  if (chosen) importHead(chosen).catch((e) => showError(e.message));
});
client.addEventListener("state", render);

window.pocketmindTasks = { client, run, picker, trainHead, finetune: finetune.start, lastDone: null, lastHead: null,
                           lastFinetune: null, ready: null };
render();
window.pocketmindTasks.ready = startPage(client)
  .then(() => addLocalModels($("model")).catch(() => []))
  .then(() => Promise.all([useModel(), picker.pick()]))
  .then(render);
window.pocketmindTasks.ready.catch((e) => showError(e.message));
