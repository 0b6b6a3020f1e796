// The pages' side of sw.js: register it, report offline readiness and precache progress, offer a new build, and
// reload once to become cross-origin isolated where the host sends no COOP/COEP headers.
//
//   const offline = startOffline(onChange);   offline.ready -> {reloading}: boot the engine unless reloading
//   offline.state: {support, progress: {done, total}, cached, build, update, isolation, error}
//   offline.update()   offline.checkForUpdate()
//
// state.support: "unsupported" | "registering" | "installing" | "active" | "failed"
// state.cached: this build's files are all in Cache Storage (the page then boots and runs without the network)
// state.update: null | "waiting" (a new build is installed and waits) | "live" (another page switched to it)
// state.isolation: "yes" | "no" (threads unavailable even through the service worker) | "pending"
const RELOAD_FLAG = "pocketmind-isolation-reload"; // one reload per tab session: never a loop
const ACTIVATE_WAIT_MS = 180_000; // the first visit downloads the app (tens of MB) before the one reload
const UPDATE_RELOAD_MS = 10_000; // if an accepted update never takes control, reload anyway

function session(op, value) {
  try {
    if (op === "get") return sessionStorage.getItem(RELOAD_FLAG);
    if (op === "set") sessionStorage.setItem(RELOAD_FLAG, value);
    else sessionStorage.removeItem(RELOAD_FLAG);
    return true;
  } catch (_) {
    return null; // storage disabled: the caller must not reload without a guard
  }
}

function activeWorker(registration, ms) {
  if (registration.active) return Promise.resolve(registration.active);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(null), ms);
    const worker = registration.installing || registration.waiting;
    if (!worker) return resolve(null);
    worker.addEventListener("statechange", () => {
      if (worker.state === "activated") { clearTimeout(timer); resolve(worker); }
      if (worker.state === "redundant") { clearTimeout(timer); resolve(null); } // the install failed
    });
  });
}

export function startOffline(onChange = () => {}) {
  const state = { support: "registering", progress: null, cached: false, build: null, update: null,
                  isolation: self.crossOriginIsolated ? "yes" : "pending", error: null };
  const changed = () => onChange(state);
  const sw = navigator.serviceWorker;
  const hadController = Boolean(sw && sw.controller); // null on a first visit: no reload on the first activation
  let registration = null;
  let waiting = null; // the installed new build
  let accepted = false; // the user asked for the update: its takeover reloads this page
  let booted = false;

  async function askStatus(worker) {
    const channel = new MessageChannel();
    const reply = new Promise((resolve) => { channel.port1.onmessage = ({ data }) => resolve(data); });
    worker.postMessage({ type: "status" }, [channel.port2]);
    const answer = await Promise.race([reply, new Promise((resolve) => setTimeout(() => resolve(null), 10_000))]);
    if (answer && !answer.error) {
      state.cached = answer.complete;
      state.build = answer.build;
      if (answer.complete) state.progress = { done: answer.bytes, total: answer.bytes };
      state.support = "active";
    }
    changed();
  }

  function offer(worker) {
    waiting = worker;
    state.update = "waiting";
    changed();
  }

  function track(worker) {
    if (!worker) return;
    worker.addEventListener("statechange", () => {
      if (worker.state === "installed" && registration.active) offer(worker);
      if (worker.state === "activated" && !hadController) askStatus(worker);
      if (worker.state === "redundant" && state.support === "installing") {
        state.support = "failed";
        changed();
      }
    });
  }

  // after a microtask: callers get the returned object before the first onChange
  const ready = Promise.resolve().then(async () => {
    if (!sw || !self.isSecureContext) {
      state.support = "unsupported";
      state.isolation = self.crossOriginIsolated ? "yes" : "no";
      changed();
      return { reloading: false };
    }
    sw.addEventListener("message", ({ data }) => {
      if (data.type === "precache" && state.support !== "active") {
        state.support = "installing";
        state.progress = { done: data.done, total: data.total };
        changed();
      } else if (data.type === "precache-failed") {
        state.error = data.message;
        changed();
      }
    });
    sw.addEventListener("controllerchange", () => {
      if (!hadController) return; // the first worker of a first visit; this page already runs its build
      if (accepted || !booted) location.reload(); // nothing of the old build is running yet, or the user asked
      else { state.update = "live"; changed(); } // another tab took the update: offer a reload, do not force it
    });
    try {
      // updateViaCache "none": sw.js and what it imports always come from the server when checking for updates
      registration = await sw.register("sw.js", { updateViaCache: "none" });
    } catch (e) {
      state.support = "failed";
      state.error = String(e && e.message ? e.message : e);
      state.isolation = self.crossOriginIsolated ? "yes" : "no";
      changed();
      return { reloading: false };
    }
    if (registration.waiting && registration.active) offer(registration.waiting);
    track(registration.installing);
    registration.addEventListener("updatefound", () => track(registration.installing));
    if (registration.active) askStatus(registration.active);
    else { state.support = "installing"; changed(); }
    registration.update().catch(() => {}); // offline: no news, the cached build keeps running

    if (self.crossOriginIsolated) {
      session("remove");
      return { reloading: false };
    }
    if (session("get")) { // reloaded once already and still not isolated: stay single-threaded
      state.isolation = "no";
      changed();
      return { reloading: false };
    }
    const active = await activeWorker(registration, ACTIVATE_WAIT_MS);
    if (!active || !session("set", "1")) {
      state.isolation = "no";
      changed();
      return { reloading: false };
    }
    location.reload(); // this time through the service worker, which adds COOP/COEP
    return { reloading: true };
  });

  return {
    state,
    ready,
    booted() { booted = true; },
    update() {
      if (state.update === "live" || !waiting) { location.reload(); return; }
      accepted = true;
      waiting.postMessage({ type: "skip-waiting" });
      setTimeout(() => location.reload(), UPDATE_RELOAD_MS);
    },
    checkForUpdate: () => (registration ? registration.update() : Promise.resolve()),
  };
}

// The words for a status line. model (pages that load one through model-store.js): undefined to leave models
// out, null while it loads, else {stored, fromCache, storeError}: offline needs the model kept as well.
export function describe(state, model) {
  const mb = (n) => (n / 1048576).toFixed(1);
  let text;
  if (state.support === "unsupported") text = "Offline use is not available in this browser (no service workers here).";
  else if (state.support === "failed") text = `Offline use is unavailable: ${state.error || "the service worker failed"}.`;
  else if (state.cached && model === null) text = "The app is saved for offline use; the model is still loading.";
  else if (state.cached && model && !model.fromCache && !model.stored) {
    text = `The app is saved for offline use, but the model could not be kept: ${model.storeError || "unknown reason"}.`;
  } else if (state.cached && model) text = "Available offline: the app and this model are kept on this device.";
  else if (state.cached) text = "Available offline.";
  else if (state.progress) text = `Saving the app for offline use: ${mb(state.progress.done)} of ${mb(state.progress.total)} MB.`;
  else text = "Saving the app for offline use…";
  if (state.error && state.support !== "failed" && !state.cached) text += ` (${state.error})`;
  if (state.isolation === "no") text += " This page is not cross-origin isolated, so the engine runs on one thread.";
  return text;
}

// Show the update offer in `element` (a container with a button inside).
export function showUpdate(element, state, update) {
  element.hidden = !state.update;
  const button = element.querySelector("button");
  element.querySelector("span").textContent = state.update === "live"
    ? "A new version of pocketmind is live in another tab."
    : "A new version of pocketmind is ready.";
  button.onclick = update;
}
