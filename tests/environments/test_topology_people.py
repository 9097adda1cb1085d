"""The topology's `people:` section: who each account is on GitHub, set by the admin in the file
(issue 13, item 4). Loaded like the rest: checked with the line of each fault, all or nothing,
audited; each account's Profile keeps the login and that it came from the topology."""

import re
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection

from audit.models import AuditEvent
from environments.topology import TopologyError, sync_topology
from portal.models import Person, Profile

pytestmark = pytest.mark.django_db

SEED = yaml.safe_load(Path(settings.GANTRY_TOPOLOGY_FILE).read_text())


def text(people) -> str:
    return yaml.safe_dump({**SEED, "people": people}, sort_keys=False)


def logins() -> dict:
    return {
        p.user.username: (p.github_login, p.github_login_source)
        for p in Profile.objects.select_related("user")
    }


def people() -> dict:
    return dict(Person.objects.values_list("identity", "github_login"))


def test_people_map_accounts_to_github_logins_and_say_so():
    User.objects.create_user("alice@example.com")
    User.objects.create_user("bob")
    result = sync_topology(text=text({"Alice@Example.com": "Dev-Alice", "bob": "bob-gh"}))
    assert people() == {"alice@example.com": "dev-alice", "bob": "bob-gh"}
    assert logins() == {
        "alice@example.com": ("dev-alice", "topology"),
        "bob": ("bob-gh", "topology"),
    }
    changes = [str(c) for c in result.changes]
    assert "+ person alice@example.com" in changes
    assert "~ profile alice@example.com: github_login '' -> 'dev-alice' (topology)" in changes
    load = AuditEvent.objects.get(action="topology.load")
    assert "+ person bob" in load.data["changes"]
    assert AuditEvent.objects.filter(action="profile.github_login").count() == 2


def test_a_second_load_changes_nothing():
    User.objects.create_user("bob")
    sync_topology(text=text({"bob": "bob-gh"}))
    before = AuditEvent.objects.count()
    assert not sync_topology(text=text({"bob": "bob-gh"})).changed
    assert AuditEvent.objects.count() == before


def test_a_dry_run_writes_no_person_and_no_login():
    User.objects.create_user("bob")
    result = sync_topology(text=text({"bob": "bob-gh"}), dry_run=True)
    assert "+ person bob" in [str(c) for c in result.changes]
    assert (Person.objects.count(), Profile.objects.count(), AuditEvent.objects.count()) == (
        0,
        0,
        0,
    )


def test_a_person_taken_out_of_the_file_loses_that_login_and_admin_set_ones_stay():
    bob, carol = User.objects.create_user("bob"), User.objects.create_user("carol")
    sync_topology(text=text({"bob": "bob-gh"}))
    Profile.objects.create(user=carol, github_login="carol-gh", github_login_source="admin")
    result = sync_topology(text=text({}))
    assert people() == {}
    assert logins() == {"bob": ("", ""), "carol": ("carol-gh", "admin")}
    assert "- person bob" in [str(c) for c in result.changes]
    cleared = AuditEvent.objects.filter(action="profile.github_login").latest("id")
    assert cleared.data == {"user": "bob", "from": "bob-gh", "to": "", "source": ""}
    assert bob.pk and carol.pk


def test_the_file_wins_over_an_admin_edit_of_the_same_person():
    bob = User.objects.create_user("bob")
    Profile.objects.create(user=bob, github_login="bobby", github_login_source="admin")
    sync_topology(text=text({"bob": "bob-gh"}))
    assert logins() == {"bob": ("bob-gh", "topology")}


def test_a_file_without_people_leaves_admin_set_logins_be():
    bob = User.objects.create_user("bob")
    Profile.objects.create(user=bob, github_login="bob-gh", github_login_source="admin")
    sync_topology(text=yaml.safe_dump(SEED | {"people": {}}, sort_keys=False))
    assert logins() == {"bob": ("bob-gh", "admin")}


BAD = [
    ({"people": ["alice"]}, "people: must be a mapping"),
    ({"people": {"alice": "alice smith"}}, "people.alice: 'alice smith' is not a GitHub login"),
    ({"people": {"alice": "-alice"}}, "'-alice' is not a GitHub login"),
    ({"people": {"alice": 42}}, "people.alice: must be a GitHub login (a string), not 42"),
    ({"people": {"alice": "\u200b"}}, "people.alice: '\\u200b' is not a GitHub login"),
    ({"people": {"alice": "a" * 101}}, "is not a GitHub login"),
    ({"people": {"al ice": "alice"}}, "people.al ice: must be an e-mail address or a username"),
    ({"people": {7: "alice"}}, "people.7: must be an e-mail address or a username"),
    ({"people": {"Alice": "a1", "alice": "a2"}}, "people.alice: the same person as 'Alice'"),
]


@pytest.mark.parametrize(("change", "expected"), BAD)
def test_a_bad_people_section_is_refused_with_its_line_and_writes_nothing(change, expected):
    User.objects.create_user("alice")
    source = yaml.safe_dump({**SEED, **change}, sort_keys=False)
    with pytest.raises(TopologyError) as refused:
        sync_topology(text=source)
    message = str(refused.value)
    assert expected in message
    people_line = source.splitlines().index("people:") + 1
    assert int(re.search(r"line (\d+)", message).group(1)) in range(people_line, people_line + 3)
    assert (Person.objects.count(), Profile.objects.count(), AuditEvent.objects.count()) == (
        0,
        0,
        0,
    )


def test_a_person_whose_name_fits_two_accounts_is_refused():
    if connection.vendor == "mysql":
        pytest.skip(
            "MySQL's case-insensitive collation refuses a second username that differs only in "
            "case, so two accounts cannot fit one name there"
        )
    User.objects.create_user("Alice")
    User.objects.create_user("alice")
    with pytest.raises(TopologyError, match=r"people.alice: fits more than one account"):
        sync_topology(text=text({"alice": "dev-alice"}))
    assert (Person.objects.count(), Profile.objects.count()) == (0, 0)


def test_the_shipped_topology_names_no_account_that_could_exist_in_production():
    """The seed's people (if any) are at reserved example domains, never plain usernames that a
    real installation might have (`admin`): those would get a GitHub login that is not theirs."""
    for identity in SEED.get("people") or {}:
        assert identity.endswith((".example", "@example.com")), identity
