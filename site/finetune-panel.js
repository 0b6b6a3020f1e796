// The Tasks page's fine-tuning panel. The worker trains (task_service.py's start_finetune) and hands back the
// written model's bytes; this draws the losses, keeps the model in the model store (local-models.js) and offers it
// in the page's model menu (the other pages list it from the store).
import { $, formatBytes, showError } from "./task-shared.js";
import { keepLocalModel, localModelOption } from "./local-models.js";

const percent = (x) => (x == null ? "–" : `${(100 * x).toFixed(1)} %`);
const slug = (text) => text.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "") || "task";

// client: the TaskClient; model(): {name, url, ...} of the chosen model; data(): the labelled CSV's bytes;
// taskName(): the loaded task's name; busy(): whether another job holds the worker; onChange(): re-render.
export function finetunePanel({ client, model, data, taskName, busy, onChange }) {
  let job = null;
  let losses = []; // per training window
  let devs = []; // [{window, dev_loss}] after each epoch (window: how many windows were trained by then)

  function draw() {
    const top = Math.max(...losses, ...devs.map((d) => d.dev_loss), 1e-9);
    const n = Math.max(losses.length, 1);
    const y = (v) => (100 - 100 * v / top).toFixed(1);
    $("ft-loss").setAttribute("points", losses.map((v, i) => `${(300 * (i + 1) / n).toFixed(1)},${y(v)}`).join(" "));
    $("ft-dev").setAttribute("points", devs.map((d) => `${(300 * d.window / n).toFixed(1)},${y(d.dev_loss)}`).join(" "));
  }

  function show(event) {
    if (event.type === "progress") {
      const what = { convert: "Converting the model to F32", quantize: "Writing the fine-tuned model",
                     measure: `Test accuracy ${event.when} training`, dev: "Dev loss" }[event.phase] || event.phase;
      $("ft-phase").textContent = event.phase === "measure" ? "Measuring" : "Preparing";
      $("ft-progress").value = event.total ? event.done / event.total : 0;
      $("ft-text").textContent = `${what}: ${event.done} of ${event.total}`;
    } else if (event.type === "step") {
      losses.push(event.loss);
      $("ft-phase").textContent = `Epoch ${event.epoch}`;
      $("ft-progress").value = event.step / event.steps;
      $("ft-text").textContent = `window ${event.step} of ${event.steps}, loss ${event.loss.toFixed(3)}`
        + (event.tokens_per_s ? `, ${event.tokens_per_s.toFixed(0)} tokens/s` : "");
      draw();
    } else if (event.type === "epoch") {
      devs.push({ window: losses.length, dev_loss: event.dev_loss });
      $("ft-epoch").textContent = event.epoch === 0
        ? `Before training: dev loss ${event.dev_loss.toFixed(4)}`
        : `Epoch ${event.epoch}: training loss ${event.train_loss.toFixed(4)}, dev loss ${event.dev_loss.toFixed(4)}`
          + (event.best ? " (best so far: kept)" : "");
      draw();
    }
  }

  function summary(done, kept) {
    const a = done.accuracy;
    const measured = a.before != null && a.after != null
      ? `test accuracy ${percent(a.before)} before, ${percent(a.after)} after (${done.n.test} rows); ` : "";
    const trained = `${done.n_params_trained.toLocaleString()} parameters trained for ${done.seconds.training.toFixed(0)} s`
      + (done.tokens_per_s ? ` (${done.tokens_per_s.toFixed(0)} tokens/s)` : "") + `, best epoch ${done.best_epoch}. `;
    const where = kept ? `Kept as "${kept.name}" (${formatBytes(kept.size)}) in this browser: every page's model menu offers it.`
      : "Stopped before training: no model was written.";
    return `${done.stopped ? "Stopped early, the best weights so far kept. " : ""}${measured}${trained}${where}`;
  }

  async function start() {
    if (job || busy()) throw new Error("the worker is busy");
    showError("");
    const base = model();
    const request = { file: "csv", model: base.name, layers: Number($("ft-layers").value),
                      epochs: Number($("ft-epochs").value), weight_type: $("ft-type").value };
    const bytes = await data();
    losses = [];
    devs = [];
    draw();
    $("ft-summary").textContent = $("ft-epoch").textContent = $("ft-text").textContent = "";
    $("ft-progress").value = 0;
    job = client.finetune(request, { data: bytes, onEvent: show });
    onChange();
    try {
      const done = await job.done;
      let kept = null;
      if (done.model_bytes) {
        const stamp = new Date().toISOString().slice(0, 16).replace(/[-:T]/g, "");
        kept = await keepLocalModel(`${base.name}-${slug(taskName())}-${stamp}`, done.model_bytes);
        if (![...$("model").options].some((o) => o.value === kept.url)) $("model").append(localModelOption(kept));
      }
      $("ft-summary").textContent = summary(done, kept);
      const { model_bytes: _, ...rest } = done;
      window.pocketmindTasks.lastFinetune = { ...rest, kept };
      return window.pocketmindTasks.lastFinetune;
    } finally {
      job = null;
      onChange();
    }
  }

  $("finetune").addEventListener("click", () => start().catch((e) => showError(e.message)));
  $("stop-finetune").addEventListener("click", () => job && job.stop());
  return {
    busy: () => Boolean(job),
    start,
    render(labelled) {
      $("finetune").disabled = Boolean(job) || busy() || !labelled || !client.ready || client.loading;
      $("stop-finetune").disabled = !job;
    },
  };
}
