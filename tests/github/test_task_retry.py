"""How the GitHub tasks wait: a wait GitHub documents (Retry-After, the rate limit's reset) is
kept in full, not cut at some cap; a refusal that will not pass gives up at once."""

import pytest
from celery.exceptions import Retry
from django.core.exceptions import ImproperlyConfigured

from github.client import GitHubError
from github.tasks import _retry_github, report_to_github


@pytest.fixture
def running():
    """report_to_github as a worker runs it (its first try), so retry() schedules a retry on the
    in-memory broker instead of raising the error as a direct call would."""
    report_to_github.push_request(retries=0, called_directly=False, args=(1,), kwargs={})
    yield report_to_github
    report_to_github.pop_request()


def test_a_documented_wait_of_an_hour_is_honoured_in_full(running):
    with pytest.raises(Retry) as retried:
        _retry_github(running, GitHubError("rate limit", 403, retry_after=3600.0), print)
    assert retried.value.when == 3600.0


def test_without_a_documented_wait_it_backs_off_within_ten_minutes(running):
    with pytest.raises(Retry) as retried:
        _retry_github(running, GitHubError("GitHub answered 502", 502), print)
    assert 1 <= retried.value.when <= 600


@pytest.mark.parametrize(
    "error",
    [
        GitHubError("Resource not accessible by integration", 403),
        ImproperlyConfigured("GitHub App installation unknown"),
    ],
    ids=["permission", "no-installation"],
)
def test_a_refusal_that_will_not_pass_gives_up_at_once(running, error):
    given_up = []
    _retry_github(running, error, given_up.append)
    assert given_up == [error]
