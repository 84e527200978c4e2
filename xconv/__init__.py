"""xconv: see how a convolutional network sees an image.

Public API: :func:`load_model`, :func:`explain`, :func:`render`, :func:`predict`, the plugin interfaces
:class:`Model`, :class:`Explainer`, :class:`Renderer`, :class:`Explanation`, and :data:`hookimpl`.
Importing xconv does not import TensorFlow; loading a model does.
"""

from xconv.api import explain, load_images, load_model, predict, render
from xconv.cam import CAMExplainer
from xconv.errors import UnknownNameError, XconvError
from xconv.hookspecs import API_VERSION, hookimpl
from xconv.images import ImageError, load_image
from xconv.types import Explainer, Explanation, Model, Renderer

__version__ = "0.1.0"

__all__ = [
    "API_VERSION", "CAMExplainer", "Explainer", "Explanation", "ImageError", "Model", "Renderer", "UnknownNameError",
    "XconvError", "explain", "hookimpl", "load_image", "load_images", "load_model", "predict", "render",
]
