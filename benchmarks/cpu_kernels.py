"""TensorFlow's oneDNN CPU kernels on and off, in one run: why ``import xconv`` asks for them.

    python benchmarks/cpu_kernels.py [--batch 32] [--repeats 5]

TensorFlow turns them on by itself only on CPUs with AVX-512 VNNI/BF16, AVX-VNNI or AMX. Each setting runs
in its own process (TensorFlow reads ``TF_ENABLE_ONEDNN_OPTS`` once, when it loads): the bundled model's
forward pass and a Grad-CAM call at batch ``--batch``, and InceptionV3's (random weights, 299 px) forward
pass at batch 16, each the median of ``--repeats`` calls after a warm-up, in ms per image.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

MEASURE = r"""
import json, sys
import numpy as np
import xconv
from timing import median_seconds
batch, repeats, inception = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
from tensorflow.python.util import _pywrap_util_port
model = xconv.load_model("catsdogs")
images = np.random.default_rng(0).integers(0, 256, (batch, *model.input_size, 3), dtype=np.uint8)
for _ in range(2):  # both traced and warm before either is timed (the first timed calls ran slow)
    model.predict(images), xconv.explain(model, images, "gradcam")
row = {"onednn": bool(_pywrap_util_port.IsMklEnabled()),
       "forward": median_seconds(lambda: model.predict(images), repeats) / batch,
       "gradcam": median_seconds(lambda: xconv.explain(model, images, "gradcam"), repeats) / batch}
if inception:
    import keras, tensorflow as tf
    network = keras.applications.InceptionV3(weights=None)
    step = tf.function(lambda x: network(x, training=False))
    x = tf.constant(np.random.default_rng(0).uniform(-1, 1, (16, 299, 299, 3)).astype("float32"))
    row["inception"] = median_seconds(lambda: step(x).numpy(), repeats) / 16
print(json.dumps(row))
"""


def measure(setting: str, batch: int, repeats: int, inception: bool) -> dict:
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": setting, "TF_CPP_MIN_LOG_LEVEL": "3"}
    here = os.path.dirname(os.path.abspath(__file__))
    result = subprocess.run([sys.executable, "-c", MEASURE, str(batch), str(repeats), "1" if inception else "0"],
                            capture_output=True, text=True, env=env, cwd=here, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-inception", action="store_true", help="skip InceptionV3 (the slowest part)")
    args = parser.parse_args()
    off, on = (measure(setting, args.batch, args.repeats, not args.no_inception) for setting in ("0", "1"))
    print(f"{os.cpu_count()} CPU cores; oneDNN kernels: off {off['onednn']}, on {on['onednn']}")
    print(f"{'pass':<28} {'off ms/img':>10} {'on ms/img':>10} {'speed-up':>9}")
    labels = {"forward": f"bundled forward, batch {args.batch}", "gradcam": f"bundled gradcam, batch {args.batch}",
              "inception": "inceptionv3 forward, batch 16"}
    for key, label in labels.items():
        if key in on:
            print(f"{label:<28} {off[key] * 1000:>10.2f} {on[key] * 1000:>10.2f} {off[key] / on[key]:>8.2f}x")


if __name__ == "__main__":
    main()
