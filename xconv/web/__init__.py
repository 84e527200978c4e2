"""The web app behind ``xconv serve``: a FastAPI service over one loaded model, and its static page.

``service`` does the model work (no HTTP), ``batching`` groups concurrent requests into one compiled
call, ``app`` is the ASGI application (uploads, limits, access token, JSON API, the page).
"""
