"""Hypothesis profiles for the fuzz suite.

Each test picks its profile with `settings(settings.get_profile(...))`, so loading this suite
changes nothing for other hypothesis users (schemathesis in tests/api). The default sizes keep
the suite near a minute on SQLite; `GANTRY_FUZZ_EXAMPLES=2000` runs that many examples per test
for a long hunt. Hypothesis keeps its files (the example database, so a failure found once is
tried first next time) under var/hypothesis/, never in the checkout's root; a failure prints a
`@reproduce_failure` blob to replay it exactly.
"""

import os

from django.conf import settings as django_settings
from hypothesis import HealthCheck, settings
from hypothesis.configuration import set_hypothesis_home_dir
from hypothesis.database import DirectoryBasedExampleDatabase

HOME = django_settings.BASE_DIR / "var" / "hypothesis"
set_hypothesis_home_dir(HOME)

_examples = os.environ.get("GANTRY_FUZZ_EXAMPLES")


def _register(name, max_examples):
    settings.register_profile(
        name,
        max_examples=int(_examples) if _examples else max_examples,
        deadline=None,
        derandomize=False,
        print_blob=True,
        database=DirectoryBasedExampleDatabase(HOME / "examples"),
        # Fixtures (the database, the seeded topology, the test client) are set up once per
        # test; every example leaves the database as it found it.
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


_register("fuzz-webhook", 150)
_register("fuzz-topology", 100)
_register("fuzz-pure", 300)  # no database: cheap, so more of them
