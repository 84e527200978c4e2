"""Intermediate activations: every channel of every conv and pooling layer for each input image.

One multi-output model over all requested layers, built once per model and layer set, run batch by
batch: the view from Chollet's "Visualizing intermediate activations".
"""

from __future__ import annotations

import numpy as np

import xconv


def layer_names(value) -> list[str]:
    """'a,b' or ['a', 'b'] -> ['a', 'b']."""
    names = value.split(",") if isinstance(value, str) else list(value)
    if not all(isinstance(name, str) and name.strip() for name in names):
        raise ValueError("give layer names, comma-separated")
    return [name.strip() for name in names]


layer_names.type_name = "layer,layer,..."


class Activations(xconv.Explainer):
    name = "activations"
    description = "feature maps of every conv/pool layer (or --layer ...), for the grid renderer"
    kind = "activations"
    takes_layers = True
    options = (
        xconv.Option("layers", layer_names, None, "layers to show (same as repeating --layer); default: all conv/pool"),
        xconv.Option("batch_size", int, 8, "images per forward pass", minimum=1),
    )

    def __init__(self, model, layer=None, **options):
        super().__init__(model, layer=layer, **options)
        requested = self.layers if self.layers is not None else ([layer] if isinstance(layer, str) else layer)
        paths = ([xconv.layers.spatial_layer(model.keras_model, model.layer_path(name), "activations")
                  for name in requested] if requested else model.feature_layers())
        if not paths:
            raise xconv.XconvError(f"{model.display_name} has no conv or pooling layers; name layers with --layer")
        order = xconv.layers.layer_order(model.keras_model)
        self.layers = sorted(dict.fromkeys(paths), key=order.__getitem__)
        self.layer = list(self.layers)

    def explain(self, images, targets=None):
        feature_model = self.model.feature_model(self.layers)
        collected = [[] for _ in range(len(self.layers) + 2)]
        for start in range(0, len(images), self.batch_size):
            # predict_on_batch compiles once per feature model, which the model caches.
            outputs = feature_model.predict_on_batch(self.model.preprocess(images[start:start + self.batch_size]))
            for bucket, output in zip(collected, outputs):
                bucket.append(np.asarray(output, np.float32))
        arrays = [np.concatenate(bucket) for bucket in collected]
        activations = dict(zip(self.layers, arrays[:len(self.layers)]))
        # With the model's test-time augmentation, so the prediction is the one ``xconv predict`` reports.
        probabilities = np.asarray(self.model.probabilities(self.model.preprocess(images), computed=arrays[-1]))
        predictions = [top[0] for top in self.model.decode(probabilities, top=1)]
        predicted = probabilities.argmax(axis=1).tolist()
        return xconv.Explanation(
            method=self.name, kind=self.kind, model_name=self.model.display_name,
            arrays={"activations": activations}, layer=list(self.layers), images=images,
            targets=predicted, target_names=[self.model.class_names[i] for i in predicted],
            predictions=predictions,
        )


@xconv.hookimpl
def xconv_register_explainers(register):
    register(Activations)
