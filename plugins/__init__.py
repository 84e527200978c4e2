"""xconv's built-in plugins, installed as ``xconv_plugins``; each module registers through its own entry point."""
