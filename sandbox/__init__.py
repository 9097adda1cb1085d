"""A local stand-in for the GCP APIs Gantry calls and for the monitored nemo stack.

It serves the Compute Engine, Cloud Build and Docker Registry HTTP APIs on one port, so the
official client libraries talk to it exactly as they talk to Google. It reads the topology YAML
as data and imports nothing from Gantry. Start it with `python manage.py sandbox` or
`python -m sandbox`; tests use the `sandbox` fixture from `sandbox.pytest_plugin`.
"""
