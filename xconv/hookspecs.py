"""The whole plugin contract: pluggy hook specifications, one per kind of thing a plugin adds.

A plugin is a module (or object) registered under the ``xconv`` entry-point group, with functions
decorated by :data:`xconv.hookimpl`. It may set ``xconv_api_version``; a different major version than
:data:`API_VERSION` is refused with a message naming the plugin.
"""

import pluggy

#: Version of this hook contract. Bump the major number when a hook changes incompatibly.
API_VERSION = "1.1"

hookspec = pluggy.HookspecMarker("xconv")
hookimpl = pluggy.HookimplMarker("xconv")


@hookspec
def xconv_register_models(register):
    """Call ``register(ModelClass)`` for each :class:`xconv.Model` subclass the plugin provides."""


@hookspec
def xconv_register_explainers(register):
    """Call ``register(ExplainerClass)`` for each :class:`xconv.Explainer` subclass the plugin provides."""


@hookspec
def xconv_register_renderers(register):
    """Call ``register(RendererClass)`` for each :class:`xconv.Renderer` subclass the plugin provides."""


@hookspec
def xconv_register_metrics(register):
    """Call ``register(MetricClass)`` for each :class:`xconv.Metric` subclass the plugin provides."""


@hookspec
def xconv_register_commands(app):
    """Add sub-commands to the typer ``app`` of the ``xconv`` CLI (``@app.command()``)."""
