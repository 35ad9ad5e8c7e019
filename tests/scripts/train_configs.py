"""Each config file given trains its shrunk version (tests.test_configs.shrunk) for one step and
runs its final evaluation, all in this one process: prints one JSON line per config,
{"config": name, "ok": bool, "last": metrics or "error": message}. The suite runs it under
XLA's unoptimised CPU backend (tests/conftest.py): one step is all compilation."""

import json
import os
import sys
import tempfile
import traceback

sys.path.insert(0, ".")
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from difflab.sampling.evaluate import evaluate  # noqa: E402
from difflab.training.loop import train  # noqa: E402
from tests.test_configs import shrunk  # noqa: E402


def image_folder(root: str) -> str:
    """A tiny folder of 32x32 RGB images in two classes (configs for the user's own images)."""
    rng = np.random.default_rng(0)
    for k in range(8):
        os.makedirs(os.path.join(root, f"class{k % 2}"), exist_ok=True)
        pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(os.path.join(root, f"class{k % 2}", f"{k}.png"))
    return root


for path in sys.argv[1:]:
    name = os.path.basename(path)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            c = shrunk(path)
            if c.data.name == "image_folder":
                c.data.path = image_folder(os.path.join(tmp, "images"))
            last = train(c, os.path.join(tmp, "run"), evaluate=evaluate)
            finite = bool(last) and all(
                np.isfinite(v) for v in last.values() if isinstance(v, float)
            )
            print(json.dumps({"config": name, "ok": finite, "last": last}), flush=True)
        except Exception:  # reported by the test, which names the config
            print(json.dumps({"config": name, "ok": False, "error": traceback.format_exc()}))
