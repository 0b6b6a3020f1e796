// The Tasks page: rendering only. The task, the items and every answer are the worker's (task_service.py).
import { TaskClient } from "./task-client.js";
import { $, cell, download, fileDrop, modelOf, showError, startPage, taskPicker } from "./task-shared.js";

const config = JSON.parse($("config").textContent);
const client = new TaskClient({ wheels: config.wheels });
let file = null; // the dropped or chosen file: {name, size, kind, bytes}
let job = null; // the run in flight: {done, stop}
let finished = false; // results to download

function render() {
  const task = picker.current().info;
  $("run").disabled = Boolean(job) || !task || !client.ready || client.loading;
  $("stop").disabled = !job;
  $("model").disabled = Boolean(job) || client.loading;
  $("task").disabled = Boolean(job);
  $("download-csv").disabled = $("download-json").disabled = Boolean(job) || !finished;
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

async function save(kind) {
  const name = (picker.current().info || { name: "results" }).name;
  if (kind === "csv") download(`${name}-results.csv`, await client.call("results_csv"), "text/csv");
  else download(`${name}-results.json`, await client.call("results_json"), "application/json");
}

$("run").addEventListener("click", () => run().catch(() => {}));
$("stop").addEventListener("click", () => job && job.stop());
$("model").addEventListener("change", () => useModel().catch(() => {}));
$("download-csv").addEventListener("click", () => save("csv").catch((e) => showError(e.message)));
$("download-json").addEventListener("click", () => save("json").catch((e) => showError(e.message)));
client.addEventListener("state", render);

window.pocketmindTasks = { client, run, picker, lastDone: null, ready: null };
render();
window.pocketmindTasks.ready = startPage(client)
  .then(() => Promise.all([useModel(), picker.pick()]))
  .then(render);
window.pocketmindTasks.ready.catch((e) => showError(e.message));
