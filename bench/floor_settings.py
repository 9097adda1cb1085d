"""Production settings plus one URL: the webhook bench's floor (bench/floor_urls.py), so the same
gunicorn serves Gantry's webhook and the bare view it is measured against. Not used by Gantry."""

from portal.settings import *  # noqa: F403

ROOT_URLCONF = "bench.floor_urls"
