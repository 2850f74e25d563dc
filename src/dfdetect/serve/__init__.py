"""``dfdetect serve``: a REST API and a web page over the scan core (needs the ``serve`` extra).

Nothing is imported here: FastAPI loads only when :func:`dfdetect.serve.app.create_app` is used.
"""
