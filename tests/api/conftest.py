from django.conf import settings
from hypothesis.configuration import set_hypothesis_home_dir

# Hypothesis (under schemathesis) keeps a cache of constants; under var/, not the checkout root.
set_hypothesis_home_dir(settings.VAR_DIR / "hypothesis")
