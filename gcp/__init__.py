"""The GCP boundary: the bottom layer every Gantry app reaches Google Cloud through.

`GcpAdapter` (Compute Engine, Cloud Build, the registry) answers in `gcp.types` values and
raises `gcp.errors`; nothing above this package imports `google.cloud` or `google.api_core`.
It imports no Gantry app.
"""
