"""Fuzzing the topology loader: a mutated, truncated or random topology file either loads (and
loading it again changes nothing), or is refused with TopologyError, every problem naming where
it is, and nothing written.

Mutations start from the shipped topology/nemo.yaml, both as text (lines deleted, duplicated,
re-indented, cut short, sprinkled with unicode or YAML oddities) and as data (keys dropped,
renamed or added, values replaced by other types) dumped back to YAML. Every example runs in a
savepoint that is rolled back, so each starts from the seeded topology. Example counts come from
the profiles in tests/fuzz/conftest.py; `GANTRY_FUZZ_EXAMPLES=N` raises them.
"""

import copy
import io
import re
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command
from django.db import transaction
from hypothesis import currently_in_test_context, event, example, given, settings
from hypothesis import strategies as st

from audit.models import AuditEvent
from environments.models import Component, Environment, FreezeWindow, Network, Repository
from environments.topology import SCHEMA, Mapping, TopologyError, check, parse, sync_topology

pytestmark = pytest.mark.django_db

TOPOLOGY = settings(settings.get_profile("fuzz-topology"))
FEW = settings(TOPOLOGY, max_examples=max(TOPOLOGY.max_examples // 4, 10))
PURE = settings(settings.get_profile("fuzz-pure"))

SHIPPED = Path(django_settings.GANTRY_TOPOLOGY_FILE).read_text()
SHIPPED_DATA = yaml.safe_load(SHIPPED)
LINES = SHIPPED.splitlines(keepends=True)
CONTENT = [i for i, line in enumerate(LINES) if line.strip() and not line.lstrip().startswith("#")]
LOCATED = re.compile(r"topology( line \d+)?: \S")


def _keys(node):
    if isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from _keys(value)
    elif isinstance(node, list):
        for value in node:
            yield from _keys(value)


VOCABULARY = sorted({*_keys(SHIPPED_DATA), *(key for kind in SCHEMA.values() for key in kind)})
CHOICES = [
    value
    for choices in (Component.Tier, Component.ProbeKind, Component.DeployKind, Component.Strategy)
    for value in choices.values
]
# Scalars and fragments that have tripped YAML loaders: bad dates and numbers, tags, anchors,
# unhashable keys, time zones that are directories, flow collections left open.
TRICKY = [
    "", "~", "null", "[", "]", "{", "}", "{}", "[]", "&a", "*a", "<<: *a", "<<: 5", "? [a, b]",
    "[a]: 1", "{a: 1}: b", "|", ">", "'", '"', "---", "...", "%TAG ! x", "yes", "no", "on",
    "0777", "1_000", "12:30:00", ".nan", "-.inf", "1e999", "0x_", "0b_", "0o9", "2026-13-45",
    "2026-02-30", "2026-02-30 10:00:00", "2026-12-24T18:00", "!!binary aGk=", "!!set {a}",
    "!!omap [a: 1]", "!!python/object:os.system", "!!str", "!!int x", "!!float x",
    "America", "Etc/Nope", "../../etc/passwd", "fri 25:00", "mon 09:60", "sun 00:00",
    "nemo-team/nemo-api", "a/b/c", "UPPER", "x" * 70,
]  # fmt: skip


# --- Strategies ---------------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text()
    | st.dates()
    | st.datetimes()
    | st.sampled_from(VOCABULARY + CHOICES + TRICKY)
)
slugs = st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True)
keys = st.sampled_from(VOCABULARY) | st.text(max_size=12) | st.integers() | st.none()
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=10,
)


def same_kind(value):
    """Another value of the same type: the mutations that often still load."""
    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, int):
        return st.integers(0, 70_000)
    if isinstance(value, str):
        return st.one_of(slugs, slugs, st.sampled_from(VOCABULARY + CHOICES), st.text(max_size=30))
    if isinstance(value, list):
        return st.lists(st.sampled_from(VOCABULARY + CHOICES), max_size=3)
    return values


def dump(document, unicode, flow):
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=unicode, default_flow_style=flow)


def _places(node):
    """Every (container, key) in a document, so a mutation lands anywhere with equal chance."""
    found = list(node) if isinstance(node, dict) else list(range(len(node)))
    for key in found:
        yield node, key
        if isinstance(node[key], dict | list):
            yield from _places(node[key])


# Weighted towards the changes that may still load, so the second-load check gets exercised.
ACTIONS = ["tweak", "tweak", "tweak", "drop", "drop", "replace", "rename", "add"]


@st.composite
def mutated_data(draw):
    """The shipped topology as data, with one to three keys dropped, renamed or added, or values
    replaced, anywhere in it; dumped back to YAML."""
    document = copy.deepcopy(SHIPPED_DATA)
    for _ in range(draw(st.integers(1, 3))):
        places = list(_places(document))
        if not places:
            document[draw(keys)] = draw(values)
            continue
        node, key = draw(st.sampled_from(places))
        action = draw(st.sampled_from(ACTIONS))
        if action == "tweak":
            node[key] = draw(same_kind(node[key]))
        elif action == "drop":
            del node[key]
        elif action == "replace":
            node[key] = draw(values)
        elif action == "rename" and isinstance(node, dict):
            node[draw(keys)] = node.pop(key)
        elif isinstance(node, dict):
            node[draw(keys)] = draw(values)
        else:
            node.append(draw(values))
    return dump(document, draw(st.booleans()), draw(st.sampled_from([False, None])))


@st.composite
def mutated_text(draw):
    """The shipped topology as text, with one to three lines deleted, duplicated, re-indented,
    swapped, given another value or sprinkled with text; sometimes cut short."""
    lines = list(LINES)
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.sampled_from(CONTENT))
        line = lines[i]
        action = draw(
            st.sampled_from(["delete", "duplicate", "indent", "swap", "value", "insert", "tab"])
        )
        if action == "delete":
            lines[i] = ""
        elif action == "duplicate":
            lines[i] = line + line
        elif action == "indent":
            shift = draw(st.integers(-4, 4))
            stripped = line.lstrip(" ")
            lines[i] = " " * max(len(line) - len(stripped) + shift, 0) + stripped
        elif action == "swap" and i + 1 < len(lines):
            lines[i], lines[i + 1] = lines[i + 1], line
        elif action == "value" and ":" in line:
            new = draw(st.one_of(slugs, st.sampled_from(TRICKY), st.text(max_size=20)))
            lines[i] = line[: line.index(":") + 1] + " " + new + "\n"
        elif action == "tab":
            lines[i] = "\t" + line
        else:
            at = draw(st.integers(0, len(line)))
            lines[i] = line[:at] + draw(st.text(min_size=1, max_size=10)) + line[at:]
    text = "".join(lines)
    if draw(st.sampled_from(["whole", "whole", "whole", "whole", "cut short"])) == "cut short":
        text = text[: draw(st.integers(0, len(text)))]
    return text


random_documents = st.builds(
    dump,
    st.dictionaries(keys, values, max_size=6) | values,
    st.booleans(),
    st.sampled_from([False, None]),
)
deeply_nested = st.builds(
    lambda opener, depth: opener * depth, st.sampled_from(["[", "{a: ", "- "]), st.integers(1, 3000)
)
random_text = st.text() | deeply_nested | st.sampled_from(TRICKY)
any_topology = mutated_text() | mutated_data() | random_documents | random_text


# --- Loading, and what may be written -----------------------------------------------------------

TABLES = [Environment, Network, Network.peers.through, Component, Repository, FreezeWindow]


def snapshot():
    """Every row the loader may touch, and how many audit events there are."""
    rows = {model._meta.label: list(model.objects.order_by("pk").values()) for model in TABLES}
    rows["audit events"] = AuditEvent.objects.count()
    return rows


def note(what):
    if currently_in_test_context():
        event(what)


@contextmanager
def undone():
    """Run one example in a savepoint and roll it back: the next starts from the same rows."""
    with transaction.atomic():
        yield
        transaction.set_rollback(True)


def assert_located(problems):
    assert problems, "a TopologyError without problems"
    for problem in problems:
        assert LOCATED.match(problem) and "\n" not in problem, problem


def loads_or_is_refused(text, prune=False, dry_run=False):
    """The property: loads (and loading again changes nothing), or is refused having written
    nothing, every problem located."""
    before = snapshot()
    with undone():
        try:
            result = sync_topology(text=text, prune=prune, dry_run=dry_run)
        except TopologyError as exc:
            assert_located(exc.problems)
            assert snapshot() == before
            note("refused")
            return
        note("loaded" + (" (dry run)" if dry_run else ""))
        after = snapshot()
        if dry_run or not result.changed:
            assert after == before
        else:
            assert after["audit events"] == before["audit events"] + 1
            again = sync_topology(text=text, prune=prune)
            assert not again.changed, [str(c) for c in again.changes]
            assert snapshot() == after
    assert snapshot() == before


@pytest.fixture
def seeded(seed_topology):
    """The shipped topology, loaded once per test; every example is rolled back to it."""


# --- The loader ---------------------------------------------------------------------------------


# Each of these raised something other than TopologyError before environments/topology.py
# learnt better (AttributeError, TypeError, ValueError, IsADirectoryError, RecursionError), or
# gave a problem with no line.
@TOPOLOGY
@given(text=mutated_text(), prune=st.booleans())
@example(text=SHIPPED.replace("deploy: {kind: none}", "deploy: none", 1), prune=False)
@example(text=SHIPPED.replace("develop: dev", "develop: [dev]"), prune=False)
@example(text=SHIPPED.replace("timezone: Asia/Seoul", "timezone: America"), prune=False)
@example(text=SHIPPED.replace("from: fri 18:00", "from: 2026-02-30"), prune=False)
@example(text=SHIPPED.replace("version: 1", "version: 0x_"), prune=False)
@example(text=SHIPPED.replace("  prod:\n", "  [prod]:\n", 1), prune=False)
@example(text="[a]: 1", prune=False)
@example(text=SHIPPED.replace("version: 1", "version: 1\x1f"), prune=False)
@example(text="[" * 5000, prune=False)
@example(text=SHIPPED.replace("      host:\n", "      null:\n", 1), prune=False)
# These loaded, but never the same twice (or, on PostgreSQL, not at all): an option with a
# number for a key comes back with a string; NaN never equals itself; jsonb rewrites 1.9e16;
# PostgreSQL refuses NUL characters.
@example(text=SHIPPED.replace("autoscaler: {", "0: {"), prune=False)
@example(text=SHIPPED.replace("cpu_target: 0.6", "cpu_target: .nan"), prune=False)
@example(text=SHIPPED.replace("cpu_target: 0.6", "cpu_target: 1.939473906690551e+16"), prune=False)
@example(text=SHIPPED.replace("display_name: Production", 'display_name: "Prod\\0"'), prune=False)
def test_mutated_text_loads_or_is_refused_writing_nothing(seeded, text, prune):
    loads_or_is_refused(text, prune=prune)


@TOPOLOGY
@given(text=mutated_data(), prune=st.booleans(), dry_run=st.booleans())
def test_mutated_data_loads_or_is_refused_writing_nothing(seeded, text, prune, dry_run):
    loads_or_is_refused(text, prune=prune, dry_run=dry_run)


@TOPOLOGY
@given(text=random_documents | random_text)
def test_random_documents_and_text_load_or_are_refused_writing_nothing(seeded, text):
    loads_or_is_refused(text)


@FEW
@given(text=any_topology)
def test_load_topology_refuses_with_a_command_error(seeded, tmp_path, text):
    path = tmp_path / "topology.yaml"
    path.write_text(text)
    output = io.StringIO()
    with undone():
        try:
            call_command("load_topology", str(path), stdout=output)
        except CommandError as exc:
            message = str(exc)
            assert message.startswith(f"{path}: refused, nothing written:\n"), message
            for problem in message.split("\n")[1:]:
                assert problem.startswith(str(path)), problem
        else:
            last = output.getvalue().splitlines()[-1]
            assert last in {f"{path}: applied", f"{path}: no changes"}, last


# --- parse() and check() ------------------------------------------------------------------------


@PURE
@given(text=any_topology)
@example(text="'\n': 1")  # a key with a line break split its problem over two lines
def test_parse_and_check_refuse_only_with_located_problems(text):
    try:
        document = parse(text, "topology")
    except TopologyError as exc:
        assert_located(exc.problems)
        return
    assert isinstance(document, Mapping)
    problems = check(document, "topology")
    assert isinstance(problems, list)
    if problems:
        assert_located(problems)


def test_the_shipped_topology_loads_unchanged(seeded):
    """The strategies start from a file that loads: unchanged, it changes nothing but the freeze
    windows that seed_topology switched off."""
    loads_or_is_refused(SHIPPED)
    assert parse(SHIPPED, "topology") == SHIPPED_DATA
    assert check(parse(SHIPPED, "topology"), "topology") == []


def test_a_forbidden_character_is_placed_on_its_line():
    """libyaml reports it by byte offset: lines of Korean before it must not move it down."""
    text = "# 배포 토폴로지\n# 한국어 주석\nversion: 1\nenvironments: \x1f\n"
    with pytest.raises(TopologyError) as refused:
        parse(text, "topology")
    [problem] = refused.value.problems
    assert problem.startswith("topology line 4: not valid YAML: unacceptable character #x001f")
