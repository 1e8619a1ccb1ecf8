"""Serving a bundle over HTTP: ``crossrec.serving.app.create_app(bundle, settings)``.

Nothing is imported here, so ``import crossrec.serving`` does not pull in FastAPI.
"""
