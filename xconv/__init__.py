"""xconv: see how a convolutional network sees an image.

Public API: :func:`load_model`, :func:`explain`, :func:`render`, :func:`predict`; the plugin interfaces
:class:`Model`, :class:`Explainer`, :class:`Renderer`, the :class:`Explanation` and :class:`Output` they
exchange, :class:`Option` declarations and :data:`hookimpl`; and the helpers plugins build on
(:func:`heatmap_explanation`, :func:`save_image`, :func:`load_keras_file`, :func:`load_weights_file`, :func:`apply_colormap`,
:func:`put_text` for labels beyond ASCII, the
:mod:`xconv.layers` and :mod:`xconv.preprocessing` modules). Importing xconv does not import TensorFlow;
loading a model does.
"""

from xconv.cpu_kernels import prefer_onednn_kernels

prefer_onednn_kernels()  # before anything imports TensorFlow

from xconv import layers, perturbation, preprocessing  # noqa: E402
from xconv.api import compare, explain, load_images, load_model, predict, render, score
from xconv.cam import CAMExplainer, heatmap_explanation
from xconv.cancel import Cancelled, stop_if_cancelled
from xconv.colors import COLORMAPS, apply_colormap, overlay_heatmap, tile
from xconv.gradients import InputGradientExplainer, attribution_explanation, unit_maps
from xconv.errors import PluginError, UnknownNameError, XconvError, XconvWarning, first_line
from xconv.hookspecs import API_VERSION, hookimpl
from xconv.images import ImageError, load_image, save_image
from xconv.modelfile import load_keras_file, load_weights_file, read_metadata, write_metadata
from xconv.options import Option
from xconv.text import put_text, text_width
from xconv.interfaces import Explainer, Explanation, Metric, MetricResult, Model, Output, Renderer, safe_name

__version__ = "0.1.0"

__all__ = [
    "API_VERSION", "COLORMAPS", "CAMExplainer", "Cancelled", "stop_if_cancelled", "InputGradientExplainer", "attribution_explanation", "compare", "Explainer", "Explanation", "ImageError", "Metric", "MetricResult", "Model", "Option", "Output",
    "PluginError", "Renderer", "UnknownNameError", "XconvError", "XconvWarning", "apply_colormap", "explain",
    "first_line", "heatmap_explanation", "hookimpl", "layers", "load_image", "load_images", "load_keras_file",
    "load_model", "load_weights_file", "overlay_heatmap", "perturbation", "predict", "preprocessing", "read_metadata", "render", "score", "safe_name", "save_image", "put_text", "text_width", "tile", "unit_maps",
    "write_metadata",
]
