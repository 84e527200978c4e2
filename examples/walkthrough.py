"""Chollet's "Visualizing what convnets learn", end to end on xconv's bundled cats-vs-dogs model.

    python examples/walkthrough.py [PHOTO] [--out walkthrough-out]

Without PHOTO it uses Chelsea the cat (shipped with scikit-image). It walks the chapter in order:
classify the photo, show the first layer's activations (and one channel large), the filter patterns
of an early, a middle and a late layer, then Grad-CAM for "cat" and for "dog" with the receptive-field
grid. Every picture is written to --out and listed in walkthrough.json with the numbers behind it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import xconv
from xconv.demo import chelsea
from xconv.images import load_image, resize


def walkthrough(photo: np.ndarray, out: Path, steps: int = 30) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    model = xconv.load_model("catsdogs")
    batch = resize(photo, model.input_size)[None]
    sources = [out / "photo.png"]
    report: dict = {"model": model.display_name, "layers": model.feature_layers()}

    # 1. What does the model say?
    report["prediction"] = xconv.predict(model, batch, top=2)[0]

    # 2. Intermediate activations: every channel of the first layer, then one channel large.
    first = model.feature_layers()[0]
    activations = xconv.explain(model, batch, "activations", layers=[first], sources=sources)
    report["first_layer"] = {"name": first, "shape": list(activations.activations[first].shape),
                             "dead_channels": int((activations.activations[first][0].std(axis=(0, 1)) == 0).sum())}
    report["pictures"] = [str(p) for p in xconv.render(activations, "grid", out)]
    report["pictures"] += [str(p) for p in xconv.render(activations, "grid", out, channel=3)]

    # 3. Filter patterns of an early, a middle and a late separable convolution.
    convolutions = [name for name in model.feature_layers() if "sepconv" in name]
    report["filters"] = {}
    for layer in (convolutions[0], convolutions[len(convolutions) // 2], convolutions[-1]):
        patterns = xconv.explain(model, None, "filters", layer=layer, filters="0-7", steps=steps)
        report["filters"][layer] = {"scores": patterns.scores.tolist(), "gray": patterns.metadata["gray_scores"]}
        report["pictures"] += [str(p) for p in xconv.render(patterns, "grid", out)]

    # 4. Grad-CAM for each class, with the explained layer's cells drawn over the photo.
    report["gradcam"] = {}
    for class_name in model.class_names:
        explanation = xconv.explain(model, batch, "gradcam", target=class_name, originals=[photo], sources=sources)
        report["gradcam"][class_name] = {"layer": explanation.layer,
                                         "peak_cell": list(np.unravel_index(explanation.heatmaps[0].argmax(),
                                                                            explanation.heatmaps[0].shape)),
                                         "target_score": explanation.metadata["target_scores"][0]}
        report["pictures"] += [str(p) for p in xconv.render(explanation, "overlay", out, grid=True)]
    (out / "walkthrough.json").write_text(json.dumps(report, indent=1, default=str))
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photo", nargs="?", help="a photo (default: Chelsea the cat)")
    parser.add_argument("--out", type=Path, default=Path("walkthrough-out"))
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    photo = load_image(args.photo) if args.photo else chelsea()
    report = walkthrough(photo, args.out, args.steps)
    label, score = report["prediction"][0]
    print(f"prediction: {label} ({score:.3f})")
    for picture in report["pictures"]:
        print(f"wrote {picture}")
    print(f"wrote {args.out / 'walkthrough.json'}")


if __name__ == "__main__":
    main()
