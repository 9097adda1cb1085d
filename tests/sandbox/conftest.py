import pytest

from .clients import Clients


@pytest.fixture
def gcp(sandbox):
    """The official client libraries, pointed at this test's sandbox."""
    return Clients(sandbox.url)


@pytest.fixture
def http():
    """One HTTP client for raw calls (a new httpx.Client per call costs ~50 ms of TLS setup)."""
    import httpx

    with httpx.Client(timeout=5, verify=False) as client:  # plain http; skip loading CA files
        yield client
