"""Perturbation maps at the input's resolution: occlusion and RISE.

* ``occlusion`` (Zeiler & Fergus 2014): a gray square (``patch`` pixels, moved by ``stride``) covers part
  of the image; each pixel's value is the mean drop of the target's softmax probability over the patches
  that cover it. Patch positions always reach the right and bottom edges. The map is the positive part,
  scaled to [0, 1]; the signed mean drops are in ``arrays["drops"]``.
* ``rise`` (Petsiuk et al. 2018): ``masks`` random binary ``cells`` x ``cells`` masks (each cell kept with
  probability ``keep``), upsampled bilinearly to (cells + 1) cells and cropped at a random shift, so their
  edges fall anywhere. The map is the probability-weighted mean of the masks divided by ``keep``, min-max
  scaled to [0, 1] (its constant offset carries no information). Mask i depends only on (seed, i), and all
  images share the masks, so a batch gives what one-by-one does.

Both feed the masked copies through :func:`xconv.perturbation.masked_probabilities`, ``chunk`` copies per
compiled forward pass. Targets and predictions are those of ``xconv predict``.
"""

from __future__ import annotations

import numpy as np

import xconv
from xconv.faithfulness import target_probabilities
from xconv.perturbation import masked_probabilities


class PerturbationExplainer(xconv.Explainer):
    kind = "heatmap"
    takes_layer = False
    options = (xconv.Option("chunk", int, 64, "masked copies per compiled forward pass", minimum=1),)


def patch_starts(side: int, patch: int, stride: int) -> list[int]:
    """Patch offsets along one side, the last one flush with the edge."""
    starts = list(range(0, side - patch + 1, stride))
    if starts[-1] + patch < side:
        starts.append(side - patch)
    return starts


class Occlusion(PerturbationExplainer):
    name = "occlusion"
    description = "occlusion (Zeiler & Fergus 2014): probability drop under a sliding gray patch"
    options = (
        xconv.Option("patch", int, None, "patch side in pixels (default: 1/8 of the input side)", minimum=1),
        xconv.Option("stride", int, None, "patch step in pixels (default: half the patch)", minimum=1),
    )

    def explain(self, images, targets=None):
        height, width = self.model.input_size
        patch = self.patch or max(2, min(height, width) // 8)
        stride = self.stride or max(1, patch // 2)
        if patch > min(height, width):  # patch and stride are at least 1 by their declarations
            raise xconv.XconvError(f"occlusion: patch must be 1-{min(height, width)} pixels")
        boxes = [(y, x) for y in patch_starts(height, patch, stride) for x in patch_starts(width, patch, stride)]
        covered = np.zeros((height, width))
        for y, x in boxes:
            covered[y:y + patch, x:x + patch] += 1
        inputs = self.model.preprocess(images)
        gray = self.model.preprocess(np.full((1, height, width, 3), 128, np.uint8))[0]
        chosen, probabilities = self.targets_and_probabilities(inputs, targets)
        # The drop is measured on the network the occluded copies go through: a model's test-time flipping
        # (the bundled one's) would otherwise add a constant offset p_flipped(x) - p(x) to every drop.
        unoccluded = target_probabilities(self.model, inputs, chosen)
        drops = np.zeros(images.shape[:3], np.float64)
        for index, (image, target) in enumerate(zip(inputs, chosen)):
            occluded, _ = masked_probabilities(self.model, image, gray, self.patch_masks(boxes, patch), target)
            for (y, x), drop in zip(boxes, unoccluded[index] - occluded):
                drops[index, y:y + patch, x:x + patch] += drop
        drops = np.divide(drops, covered, out=np.zeros_like(drops), where=covered > 0)
        explanation = xconv.heatmap_explanation(self, xconv.unit_maps(np.maximum(drops, 0)), chosen, probabilities, images)
        explanation.arrays["drops"] = drops.astype(np.float32)
        explanation.metadata.update(patch=patch, stride=stride, patches=len(boxes))
        return explanation


    def patch_masks(self, boxes, patch):
        """Chunks of masks at input size: 1 everywhere but the patch, built as they are needed."""
        height, width = self.model.input_size
        for first in range(0, len(boxes), self.chunk):
            part = boxes[first:first + self.chunk]
            keep = np.ones((len(part), height, width), np.float32)
            for index, (y, x) in enumerate(part):
                keep[index, y:y + patch, x:x + patch] = 0.0
            yield keep


class RISE(PerturbationExplainer):
    name = "rise"
    description = "RISE (Petsiuk et al. 2018): probability-weighted mean of random masks"
    options = (
        xconv.Option("masks", int, 2000, "random masks per image", minimum=1),
        xconv.Option("cells", int, 7, "mask cells per side before upsampling", minimum=1),
        xconv.Option("keep", float, 0.5, "probability that a cell is kept", minimum=0.01, maximum=1.0),
        xconv.Option("seed", int, 0, "random seed of the masks"),
    )

    def make_masks(self, first: int, count: int) -> np.ndarray:
        """Masks first .. first + count - 1 at input size; mask i depends only on (seed, i)."""
        import cv2

        height, width = self.model.input_size
        cell_h, cell_w = -(-height // self.cells), -(-width // self.cells)
        masks = np.empty((count, height, width), np.float32)
        for offset in range(count):
            rng = np.random.default_rng([self.seed, first + offset])
            kept = (rng.random((self.cells, self.cells)) < self.keep).astype(np.float32)
            big = cv2.resize(kept, ((self.cells + 1) * cell_w, (self.cells + 1) * cell_h), interpolation=cv2.INTER_LINEAR)
            dy, dx = rng.integers(0, cell_h), rng.integers(0, cell_w)
            masks[offset] = big[dy:dy + height, dx:dx + width]
        return masks

    def explain(self, images, targets=None):
        inputs = self.model.preprocess(images)
        black = self.model.preprocess(np.zeros((1, *self.model.input_size, 3), np.uint8))[0]
        chosen, probabilities = self.targets_and_probabilities(inputs, targets)
        sums = np.zeros(images.shape[:3], np.float64)
        for first in range(0, self.masks, self.chunk):
            masks = self.make_masks(first, min(self.chunk, self.masks - first))
            for index, (image, target) in enumerate(zip(inputs, chosen)):
                seen, _ = masked_probabilities(self.model, image, black, [masks], target)
                sums[index] += np.tensordot(seen, masks, axes=1)
        saliency = sums / (self.masks * self.keep)
        low = saliency.min(axis=(1, 2), keepdims=True)
        explanation = xconv.heatmap_explanation(self, xconv.unit_maps(saliency - low), chosen, probabilities, images)
        explanation.arrays["saliency"] = saliency.astype(np.float32)
        explanation.metadata.update(masks=self.masks, cells=self.cells, keep=self.keep)
        return explanation


@xconv.hookimpl
def xconv_register_explainers(register):
    register(Occlusion)
    register(RISE)
