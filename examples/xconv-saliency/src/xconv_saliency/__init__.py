"""xconv-saliency: an explainer and a renderer that xconv does not ship, written against its public API only.

* ``input-x-gradient`` (Shrikumar et al. 2016): the input times the gradient of the class score, a
  first-order estimate of each pixel's contribution. It subclasses ``xconv.InputGradientExplainer``, so
  the class score convention, batching and the predicted target come from xconv.
* ``contours``: a renderer drawing a heatmap's iso-lines over the photo instead of blending colors, so the
  photo stays readable; it accepts every ``heatmap`` explanation (Grad-CAM, occlusion, ...).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import xconv

xconv_api_version = "1.1"


class InputXGradient(xconv.InputGradientExplainer):
    name = "input-x-gradient"
    description = "input times gradient (Shrikumar et al. 2016), from the xconv-saliency example plugin"
    # Declared once: `xconv list input-x-gradient` shows it, `-O signed=true` sets it, typos are refused.
    # The base class checks the options and sets self.signed (and self.score, self.batch_size).
    options = (xconv.Option("signed", bool, False, "map the positive contributions only, not their magnitude"),)

    def explain(self, images, targets=None):
        inputs = self.model.preprocess(images)
        # The requested targets, or the predicted classes with the probabilities `xconv predict` reports.
        chosen, probabilities = self.targets_and_probabilities(inputs, targets)
        gradients, _ = self.accumulate(inputs, chosen, copies=1)     # one compiled pass per batch_size images
        attributions = inputs * gradients
        total = attributions.sum(axis=-1)
        maps = np.maximum(total, 0) if self.signed else np.abs(attributions).max(axis=-1)
        return xconv.attribution_explanation(self, attributions, maps, chosen, probabilities, images)


class ContourRenderer(xconv.Renderer):
    name = "contours"
    description = "heatmap iso-lines over the photo, from the xconv-saliency example plugin"
    accepts = ("heatmap",)
    options = (
        xconv.Option("levels", int, 4, "number of iso-lines, evenly spaced in (0, 1)"),
        xconv.Option("colormap", str, "jet", "colors of the lines, low to high", choices=xconv.COLORMAPS),
    )

    def render(self, explanation, out_dir):
        import cv2

        photos = explanation.originals or list(explanation.images)
        colors = xconv.apply_colormap(np.linspace(0, 255, self.levels + 2)[1:-1].astype(np.uint8)[None], self.colormap)[0]
        written = []
        for index, (photo, heatmap) in enumerate(zip(photos, explanation.heatmaps)):
            height, width = photo.shape[:2]
            resized = cv2.resize(heatmap.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
            picture = photo.copy()
            for level, color in zip(np.linspace(0, 1, self.levels + 2)[1:-1], colors):
                contours, _ = cv2.findContours(np.uint8(resized >= level), cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
                cv2.drawContours(picture, contours, -1, tuple(int(c) for c in color), max(1, width // 200))
            name = f"{explanation.stem(index)}_{xconv.safe_name(explanation.method)}_" \
                   f"{xconv.safe_name(explanation.target_names[index])}_contours.png"
            written.append(explanation.output(xconv.save_image(Path(out_dir) / name, picture), index))
        return written


@xconv.hookimpl
def xconv_register_explainers(register):
    register(InputXGradient)


@xconv.hookimpl
def xconv_register_renderers(register):
    register(ContourRenderer)
