"""Sending what an outbox row (a GitHub deployment's statuses, a protection rule's answer) owes
GitHub: one worker at a time, under the row's lease, with GitHub's refusal kept on the row."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from .client import GitHub, GitHubError
from .models import GitHubOutbox

LEASE_SECONDS = 60


@contextmanager
def leased(
    row: GitHubOutbox, busy: Exception, client: GitHub | None = None, installation_id=None
) -> Iterator[GitHub]:
    """Hold `row`'s lease (else raise `busy`: another worker is sending) and give a client (the
    one passed, or one for the installation GitHub named). A GitHubError is noted on the row
    and raised; the lease is released either way."""
    if not row.claim(LEASE_SECONDS):
        raise busy
    github = client or GitHub.from_settings(installation_id=installation_id)
    try:
        yield github
    except GitHubError as exc:
        row.note_error(str(exc))
        raise
    finally:
        row.release()
        if client is None:
            github.close()
