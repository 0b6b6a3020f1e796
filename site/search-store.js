// Where the Search page keeps its index between visits: IndexedDB "pocketmind-search", one record per saved index
// ({bytes, sha256, n_chunks, sources, savedAt}) and a "current" pointer to the one in use. A save writes a new
// record first and moves the pointer (deleting the old record) only once that write has completed, so a full disk
// or a quota error leaves the kept index whole. The bytes are the service's (Index.to_bytes); whether they fit the
// loaded model is the service's to say when it imports them.
const DB_NAME = "pocketmind-search";
const STORE = "indexes";
const CURRENT = "current";

function request(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

function finished(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error || new DOMException("the transaction was aborted", "AbortError"));
  });
}

function open() {
  if (typeof indexedDB === "undefined") return Promise.reject(new Error("this browser has no IndexedDB"));
  const req = indexedDB.open(DB_NAME, 1);
  req.onupgradeneeded = () => req.result.createObjectStore(STORE);
  return request(req);
}

// use(db) with the database open, closed again however use ends.
async function withDb(use) {
  const db = await open();
  try {
    return await use(db);
  } finally {
    db.close();
  }
}

// Why a save failed, in words a person can act on.
function storageMessage(e) {
  const quota = e && (e.name === "QuotaExceededError" || /quota/i.test(String(e.message)));
  return quota
    ? "The browser's storage is full, so this index was not kept (the one kept before is still there); free some space or remove stored models."
    : `This index could not be kept in the browser (${e && e.message ? e.message : e}); the one kept before is still there.`;
}

// Keep `bytes` (a Uint8Array) with its facts; resolves {key} once the new index is the current one.
export function saveIndex(bytes, { sha256, n_chunks, sources }) {
  return withDb(async (db) => {
    const key = `index-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
    try {
      const write = db.transaction(STORE, "readwrite");
      write.objectStore(STORE).put({ bytes, sha256, n_chunks, sources, savedAt: new Date().toISOString() }, key);
      await finished(write);
    } catch (e) {
      throw new Error(storageMessage(e));
    }
    const swap = db.transaction(STORE, "readwrite");
    const store = swap.objectStore(STORE);
    const old = await request(store.get(CURRENT));
    store.put(key, CURRENT);
    if (old && old !== key) store.delete(old);
    await finished(swap);
    return { key };
  });
}

// The current index record, or null.
export function loadIndex() {
  return withDb(async (db) => {
    const store = db.transaction(STORE, "readonly").objectStore(STORE);
    const key = await request(store.get(CURRENT));
    return key ? (await request(store.get(key))) || null : null;
  });
}

export function forgetIndex() {
  return withDb(async (db) => {
    const tx = db.transaction(STORE, "readwrite");
    tx.objectStore(STORE).clear();
    await finished(tx);
  });
}
