"""Faithfulness metrics: does the model's confidence follow the map?

* ``deletion`` (Petsiuk et al. 2018): remove pixels in the order of the map (upsampled to the input
  size), most important first, in ``steps`` equal steps, replacing them with a ``baseline`` (blurred by
  default; black or gray); the area under the target's softmax probability (trapezoid, x from 0 to 1).
  A faithful map makes the probability fall fast: lower is better. The paper's code deletes onto the
  mean colour (about ``gray``) and inserts onto a milder blur; xconv plays both games on one baseline
  (``xconv.faithfulness.baseline_images`` says why).
* ``insertion`` (Petsiuk et al. 2018): reveal the pixels in that order on the baseline; higher is better.
* ``average-drop`` (Chattopadhay et al. 2018): max(0, Y - O) / Y, where Y is the target's probability on
  the image and O on the image multiplied by the map: how much confidence the map's regions alone lose.
  Lower is better; averaged over images it is the paper's Average Drop (as a fraction, not a percent).
* ``increase-in-confidence`` (Chattopadhay et al. 2018): 1 where O > Y, else 0; its mean is the paper's
  Increase in Confidence. Higher is better.
"""

from __future__ import annotations

import numpy as np

import xconv
from xconv.faithfulness import (BASELINES, area_under, game_curves, image_probabilities, maps_at_input_size,
                                plain_probabilities)


class DeletionGame(xconv.Metric):
    insertion = False
    options = (
        xconv.Option("steps", int, 20, "equal steps from no pixel to every pixel", minimum=1),
        xconv.Option("baseline", str, "blurred", "what removed pixels become", choices=BASELINES),
        xconv.Option("batch_size", int, 64, "images per compiled forward pass", minimum=1),
    )

    def score(self, images, targets, explanation):
        curves = game_curves(self.model, images, np.asarray(targets), explanation.heatmaps, self.steps, self.baseline,
                             self.insertion, self.batch_size)
        return xconv.MetricResult(area_under(curves), curves, np.linspace(0, 1, self.steps + 1))


class Deletion(DeletionGame):
    name = "deletion"
    description = "area under the probability as the map's pixels are removed (Petsiuk et al. 2018); lower is better"
    higher_is_better = False


class Insertion(DeletionGame):
    name = "insertion"
    description = "area under the probability as the map's pixels are revealed (Petsiuk et al. 2018)"
    insertion = True
    plays_backwards = "deletion"


class ConfidenceOnMap(xconv.Metric):
    options = (xconv.Option("batch_size", int, 64, "images per compiled forward pass", minimum=1),)

    def confidences(self, images, targets, explanation):
        """(Y, O): the target's probability on the images and on the images multiplied by their maps."""
        targets = np.asarray(targets)
        maps = np.clip(maps_at_input_size(explanation.heatmaps, images.shape[1:3]), 0, 1)
        masked = np.uint8(np.round(images * maps[..., None]))
        return (image_probabilities(self.model, images, targets, self.batch_size),
                plain_probabilities(self.model, masked, targets, self.batch_size))


class AverageDrop(ConfidenceOnMap):
    name = "average-drop"
    description = "confidence lost on the image times the map (Chattopadhay et al. 2018); lower is better"
    higher_is_better = False

    def score(self, images, targets, explanation):
        full, masked = self.confidences(images, targets, explanation)
        return xconv.MetricResult(np.divide(np.maximum(full - masked, 0), full, out=np.zeros_like(full),
                                            where=full > 0))


class IncreaseInConfidence(ConfidenceOnMap):
    name = "increase-in-confidence"
    description = "1 where the image times the map is more confident than the image (Chattopadhay et al. 2018)"

    def score(self, images, targets, explanation):
        full, masked = self.confidences(images, targets, explanation)
        return xconv.MetricResult((masked > full).astype(np.float64))


@xconv.hookimpl
def xconv_register_metrics(register):
    for metric in (Deletion, Insertion, AverageDrop, IncreaseInConfidence):
        register(metric)
