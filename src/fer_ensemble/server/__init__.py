"""The web app (``serve``): FastAPI on uvicorn, in the ``server`` extra."""
