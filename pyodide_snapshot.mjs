// node pyodide_snapshot.mjs RUNTIME_DIR OUT.bin MODULES WHEEL...
// A memory snapshot of Pyodide with the pure-Python modules our glue needs already imported (run by
// pyodide_snapshot.py at build time; the workers restore it instead of starting the interpreter).
//
// 1. A first Pyodide gets every wheel unpacked and imports MODULES (comma-separated, our services): what that
//    imports besides numpy, our own package and extension modules is the list to snapshot (the standard library's
//    json, dataclasses, ..., jinja2, markupsafe).
// 2. A second Pyodide, in snapshot mode, imports only that list and is written out. Its heap must hold no
//    dynamically loaded library (numpy's), which a snapshot cannot restore: that is checked.
// Prints one JSON line: {modules: [...], bytes}.
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [runtime, out, modules, ...wheels] = process.argv.slice(2);
const { loadPyodide } = await import(pathToFileURL(path.join(runtime, "pyodide.mjs")).href);
const indexURL = path.resolve(runtime) + "/";

function unpack(py, list) {
  const sitePackages = py.runPython("import sysconfig; sysconfig.get_path('purelib')");
  for (const wheel of list) {
    py.unpackArchive(new Uint8Array(fs.readFileSync(wheel)), "wheel", { extractDir: sitePackages });
  }
}

const probe = await loadPyodide({ indexURL });
unpack(probe, wheels);
probe.globals.set("targets", modules.split(","));
const needed = probe.runPython(`
import importlib, importlib.machinery, sys
before = set(sys.modules)
for name in targets:
    importlib.import_module(name)

def pure(name):
    file = getattr(sys.modules[name], "__file__", None) or ""
    extension = file.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
    return name.split(".")[0] not in ("numpy", "pocketmind") and not extension

sorted(n for n in set(sys.modules) - before if pure(n))
`).toJs();

const py = await loadPyodide({ indexURL, _makeSnapshot: true });
unpack(py, wheels);
// the names go in as source text: a JS object handed to Python would leave a reference in the snapshot
py.runPython(`
import importlib, sys
for name in ${JSON.stringify(needed)}:
    importlib.import_module(name)
assert "numpy" not in sys.modules and "pocketmind" not in sys.modules, "the snapshot must not hold numpy or the glue"
`);
const libraries = Object.keys(py._module.LDSO.loadedLibsByName).filter((name) => name.endsWith(".so"));
if (libraries.length) throw new Error(`a snapshot cannot hold dynamically loaded libraries: ${libraries.join(", ")}`);
const snapshot = py.makeMemorySnapshot();
fs.writeFileSync(out, snapshot);
process.stdout.write(JSON.stringify({ modules: needed, bytes: snapshot.length }) + "\n");
