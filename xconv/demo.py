"""``xconv demo``: the main job, offline, on the bundled model and a cat photo that ships with scikit-image."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import xconv


def chelsea() -> np.ndarray:
    """Chelsea the cat (scikit-image's CC0 sample photo), uint8 RGB."""
    from skimage import data

    return np.asarray(data.chelsea(), dtype=np.uint8)


def run_demo(out: str | Path, model_name: str = "catsdogs", filter_options: dict | None = None) -> list[str]:
    """Predict, Grad-CAM for every class, the first layers' activations and some filter patterns, into ``out``
    (``filter_options``: the filter method's options, such as fewer steps for the docs' draft pictures)."""
    from xconv.images import resize, save_image
    from xconv.layers import feature_layers

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    photo = chelsea()
    source = save_image(out / "chelsea.png", photo)
    model = xconv.load_model(model_name)
    batch = resize(photo, model.input_size)[None]
    ranked = xconv.predict(model, batch, top=len(model.class_names))[0]
    lines = [f"{source}: " + ", ".join(f"{label} {score:.3f}" for label, score in ranked)]
    written = []
    for class_name in model.class_names:
        explanation = xconv.explain(model, batch, "gradcam", target=class_name, originals=[photo], sources=[source])
        written += xconv.render(explanation, "overlay", out)
    first_layers = model.feature_layers()[:2]
    activations = xconv.explain(model, batch, "activations", layers=first_layers, sources=[source])
    written += xconv.render(activations, "grid", out)
    convolutions = [info.path for info in feature_layers(model.keras_model)
                    if "Conv" in info.type and tuple(getattr(info.layer, "kernel_size", ())) != (1, 1)]
    middle_layer = convolutions[len(convolutions) // 2]
    patterns = xconv.explain(model, None, "filters", layer=middle_layer, filters="0-15", **(filter_options or {}))
    written += xconv.render(patterns, "grid", out)
    lines += [f"wrote {path}" for path in written]
    return lines
