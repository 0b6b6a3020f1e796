"""Load every file of a folder with the native build, one JSON line per file; run as a child process by
test_bad_input.py so that a crash or hang is seen as such, with the file that caused it named last.

    python tests/fuzz_load.py LIBRARY FOLDER
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "py"))

from pocketmind import Model, PocketmindError  # noqa: E402
from pocketmind.native import NativeBackend  # noqa: E402

backend = NativeBackend(sys.argv[1])
backend.call("pm_set_log_level", 0)
for path in sorted(Path(sys.argv[2]).iterdir()):
    print(json.dumps({"file": path.name, "started": True}), flush=True)
    try:
        with Model.from_bytes(path.read_bytes(), backend) as model:
            # a model that loads must also run a token or fail cleanly
            try:
                with model.context(n_ctx=min(64, max(model.n_ctx_train, 1))) as ctx:
                    ctx.decode([model.bos if 0 <= model.bos < model.n_vocab else 0])
                    ctx.logits()
                result = "ran"
            except PocketmindError as e:
                result = f"run-error: {e}"
    except PocketmindError as e:
        result = f"load-error: {e}"
    print(json.dumps({"file": path.name, "result": result}), flush=True)
print(json.dumps({"done": True}), flush=True)
