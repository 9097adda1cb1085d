"""Topology as code: read the YAML file, check it, and bring the database in line with it.

`sync_topology()` runs in one transaction: either every change lands, or (on any error, or with
`dry_run`) nothing does. Errors name the YAML path and line so a bad file is quick to fix.

`people:` maps an account (its e-mail address under IAP, else its username) to its GitHub login,
the one identity an approver is told apart from a build's author by. The file is its only source
besides a superuser in the admin, so an entry taken out of the file is deleted at once (no
`--prune` needed) and the login it gave is cleared: a stale identity would let someone approve.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Hashable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import ProtectedError

from audit.models import AuditEvent
from portal.models import Person, Profile, login_problem, normalize_login

from .models import (
    Component,
    Environment,
    FreezeWindow,
    Network,
    Repository,
    default_events,
    minute_of_week,
)


class TopologyError(Exception):
    """A topology file that cannot be loaded; `problems` holds one line per fault."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


# --- Reading YAML with line numbers -------------------------------------------------------------


class Mapping(dict):
    """A YAML mapping that remembers the line of itself and of each key."""

    line: int = 0
    key_lines: dict


class Sequence(list):
    line: int = 0


# A topology is a few kB (topology/nemo.yaml: 6.5 kB). Refused beyond these: a file larger than
# MAX_BYTES, and aliases (`*name`) that expand to more than MAX_ALIAS_EXPANSION values beyond those
# written out, the "billion laughs" that blows 1 kB of YAML up to gigabytes of options.
MAX_BYTES = 1_000_000
MAX_ALIAS_EXPANSION = 10_000


def _children(node):
    if isinstance(node, yaml.SequenceNode):
        return node.value
    if isinstance(node, yaml.MappingNode):
        return [child for pair in node.value for child in pair]
    return []


def _alias_expansion(root) -> int:
    """How many more nodes the document holds with every alias expanded than as written (at
    most MAX_ALIAS_EXPANSION + 1: counting stops there). An alias is the node it names, so the
    composed graph shares nodes; each node's expanded size is counted once, depth first."""
    distinct, stack = set(), [root]
    while stack:
        node = stack.pop()
        if id(node) not in distinct:
            distinct.add(id(node))
            stack.extend(_children(node))
    most = len(distinct) + MAX_ALIAS_EXPANSION + 1
    sizes, started, stack = {}, set(), [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if children_done:  # a node still being counted is a recursive alias: YAML refuses it
            sizes[id(node)] = min(most, 1 + sum(sizes.get(id(c), 1) for c in _children(node)))
        elif id(node) not in started:
            started.add(id(node))
            stack.append((node, True))
            stack.extend((child, False) for child in _children(node))
    return sizes[id(root)] - len(distinct)


class _LineLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """libyaml's parser when PyYAML has it (ten times faster), with line-keeping constructors."""

    def construct_document(self, node):
        """The composed document's alias expansion is measured before anything is built."""
        if _alias_expansion(node) > MAX_ALIAS_EXPANSION:
            raise TopologyError(
                [
                    "refused: its aliases (*name) add more than the limit of "
                    f"{MAX_ALIAS_EXPANSION} values to those written out (an alias bomb?)"
                ]
            )
        return super().construct_document(node)

    def construct_object(self, node, deep=False):
        try:
            value = super().construct_object(node, deep)
        except ValueError as exc:  # PyYAML lets a bad date or number ('2026-02-30', '0x_') out
            what = f" {node.value!r}" if isinstance(node, yaml.ScalarNode) else ""
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read{what}: {exc}", node.start_mark
            ) from None
        if isinstance(value, str) and "\x00" in value:  # "\0": no database column keeps it
            raise yaml.constructor.ConstructorError(
                None, None, "a NUL character (\\0) is not allowed", node.start_mark
            )
        return value


def _construct_mapping(loader, node):
    data = Mapping()
    data.line = node.start_mark.line + 1
    data.key_lines = {}
    yield data
    loader.flatten_mapping(node)
    seen = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if not isinstance(key, Hashable):  # a list or mapping as a key: `[a]: 1`
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark, "found unhashable key",
                key_node.start_mark,
            )  # fmt: skip
        if key in seen:
            raise TopologyError(
                [
                    f"line {key_node.start_mark.line + 1}: duplicate key {key!r} (first at line "
                    f"{seen[key]})"
                ]
            )
        seen[key] = key_node.start_mark.line + 1
    data.update(loader.construct_mapping(node, deep=True))
    data.key_lines = seen


def _construct_sequence(loader, node):
    data = Sequence()
    data.line = node.start_mark.line + 1
    yield data
    data.extend(loader.construct_sequence(node, deep=True))


_LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _construct_sequence)


def parse(text: str, source: str = "topology") -> Mapping:
    if len(text) > MAX_BYTES:  # characters: never fewer than the file's bytes
        raise TopologyError([f"{source}: refused: over the limit of {MAX_BYTES} characters"])
    try:
        document = yaml.load(text, Loader=_LineLoader)  # a SafeLoader subclass
    except TopologyError as exc:
        where = " " if exc.problems[0].startswith("line ") else ": "
        raise TopologyError([f"{source}{where}{p}" for p in exc.problems]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        position = getattr(exc, "position", None)  # a ReaderError: a character YAML forbids
        if mark:
            where = f" line {mark.line + 1}"
        elif position is not None:  # libyaml (its character a number) counts bytes, not str
            head = text.encode()[:position].decode(errors="ignore")
            head = head if isinstance(exc.character, int) else text[:position]
            where = f" line {head.count(chr(10)) + 1}"
        else:
            where = ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise TopologyError([f"{source}{where}: not valid YAML: {problem}"]) from None
    except RecursionError:
        raise TopologyError([f"{source}: not valid YAML: nested too deeply"]) from None
    if not isinstance(document, Mapping):
        raise TopologyError([f"{source}: the file must be a mapping with 'environments'"])
    return document


# --- Checking the shape -------------------------------------------------------------------------


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_str_list(value):
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


# key -> (check, description, required). A check is a type test; choices are listed explicitly.
TEXT = (lambda v: isinstance(v, str) and v != "", "a non-empty string")
OPTIONAL_TEXT = (lambda v: isinstance(v, str), "a string")
INTEGER = (_is_int, "an integer")
BOOLEAN = (lambda v: isinstance(v, bool), "true or false")
TEXT_LIST = (_is_str_list, "a list of strings")
MAPPING = (lambda v: isinstance(v, dict), "a mapping")


def _is_plain_json(value):
    """JSON that every database gives back as it was given: string keys, and finite numbers
    within ±2**53 (I-JSON, RFC 7493; PostgreSQL's jsonb rewrites larger floats)."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain_json(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_is_plain_json(v) for v in value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return abs(value) <= 2**53  # False for NaN too
    return value is None or isinstance(value, str | bool)


JSON_MAPPING = (
    lambda v: isinstance(v, dict) and _is_plain_json(v),
    "a mapping of JSON values (string keys, finite numbers within ±2**53)",
)


def _choice(choices):
    values = [c for c in choices.values if c]
    return (lambda v: v in values, f"one of: {', '.join(values)}")


SCHEMA = {
    "document": {
        "version": (INTEGER, True),
        "github": (MAPPING, False),
        "environments": (MAPPING, True),
        "people": (MAPPING, False),
    },
    "github": {
        "registry": (TEXT, True),
        "branches": (MAPPING, True),
        "repositories": (MAPPING, True),
    },
    "repository": {
        "components": (TEXT_LIST, True),
        "workflows": (TEXT_LIST, False),
        "events": (TEXT_LIST, False),
        "registry": (TEXT, False),
    },
    "environment": {
        "display_name": (OPTIONAL_TEXT, False),
        "gcp_project": (TEXT, True),
        "region": (TEXT, True),
        "zones": (TEXT_LIST, True),
        "registry": (TEXT, True),
        "requires_approval": (BOOLEAN, False),
        "approvals_required": (INTEGER, False),
        "probe_interval": (INTEGER, False),
        "networks": (MAPPING, True),
        "components": (MAPPING, True),
        "freeze": (MAPPING, False),
    },
    "freeze": {
        "reason": (TEXT, True),
        "from": (TEXT, True),
        "to": (TEXT, True),
        "timezone": (TEXT, False),
        "enabled": (BOOLEAN, False),
    },
    "network": {
        "display_name": (OPTIONAL_TEXT, False),
        "vpc": (TEXT, True),
        "cidr": (OPTIONAL_TEXT, False),
        "peers": (TEXT_LIST, False),
    },
    "component": {
        "display_name": (OPTIONAL_TEXT, False),
        "tier": (_choice(Component.Tier), True),
        "network": (TEXT, True),
        "host": (OPTIONAL_TEXT, False),
        "port": (INTEGER, True),
        "probe": (MAPPING, True),
        "deploy": (MAPPING, True),
        "options": (JSON_MAPPING, False),
    },
    "probe": {
        "kind": (_choice(Component.ProbeKind), True),
        "path": (OPTIONAL_TEXT, False),
        "expect_status": (INTEGER, False),
        "expect_json": (JSON_MAPPING, False),
    },
    "deploy": {
        "kind": (_choice(Component.DeployKind), True),
        "strategy": (_choice(Component.Strategy), False),
        "image": (TEXT, False),
        "tag": (TEXT, False),
        "machine_type": (TEXT, False),
        "size": (INTEGER, False),
        "mig": (TEXT, False),
        "blue_mig": (TEXT, False),
        "green_mig": (TEXT, False),
        "backend_service": (TEXT, False),
        "instance": (TEXT, False),
        "zone": (TEXT, False),
    },
}

SUPPORTED_VERSIONS = {1}
SLUG = re.compile(r"[a-z0-9][a-z0-9_-]*")
REPOSITORY = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")


@dataclass
class _Checker:
    source: str
    problems: list[str] = field(default_factory=list)

    def problem(self, line: int, path: str, text: str):
        if not path.isprintable():  # a key with a line break in it must not split the message
            path = repr(path)
        self.problems.append(f"{self.source} line {line}: {path}: {text}")

    def mapping(self, data: Mapping, kind: str, path: str) -> bool:
        """Check one mapping against SCHEMA[kind]; True when it is sound enough to go deeper."""
        schema = SCHEMA[kind]
        ok = True
        for key, value in data.items():
            line = data.key_lines.get(key, data.line)
            if key not in schema:
                expected = ", ".join(schema)
                self.problem(line, f"{path}.{key}", f"unknown key (expected one of: {expected})")
                ok = False
                continue
            (check, description), _ = schema[key]
            if not check(value):
                self.problem(line, f"{path}.{key}", f"must be {description}, not {value!r}")
                ok = False
        for key, ((_, description), required) in schema.items():
            if required and key not in data:
                self.problem(data.line, path, f"missing required key {key!r} ({description})")
                ok = False
        return ok

    def names(self, data: Mapping, path: str, what: str):
        for name in data:
            if not isinstance(name, str) or not SLUG.fullmatch(name) or len(name) > 32:
                line = data.key_lines.get(name, data.line)
                self.problem(
                    line,
                    f"{path}.{name}",
                    f"{what} name must be 1-32 lower-case letters, digits, - or _",
                )


def check(document: Mapping, source: str) -> list[str]:
    """Return every shape problem in the document (empty when it is fit to apply)."""
    checker = _Checker(source)
    if not checker.mapping(document, "document", "(top)"):
        return checker.problems
    if document["version"] not in SUPPORTED_VERSIONS:
        checker.problem(
            document.key_lines["version"], "version", f"unsupported version {document['version']}"
        )
    environments = document["environments"]
    checker.names(environments, "environments", "environment")
    for env_name, env in environments.items():
        env_path = f"environments.{env_name}"
        if not isinstance(env, Mapping):
            checker.problem(environments.key_lines[env_name], env_path, "must be a mapping")
            continue
        if not checker.mapping(env, "environment", env_path):
            continue
        networks, components = env["networks"], env["components"]
        checker.names(networks, f"{env_path}.networks", "network")
        checker.names(components, f"{env_path}.components", "component")
        for net_name, net in networks.items():
            net_path = f"{env_path}.networks.{net_name}"
            if not isinstance(net, Mapping):
                checker.problem(networks.key_lines[net_name], net_path, "must be a mapping")
            elif checker.mapping(net, "network", net_path):
                for peer in net.get("peers", []):
                    if peer not in networks or peer == net_name:
                        checker.problem(
                            net.key_lines["peers"],
                            f"{net_path}.peers",
                            f"{peer!r} is not another network of {env_name}",
                        )
        for comp_name, comp in components.items():
            comp_path = f"{env_path}.components.{comp_name}"
            if not isinstance(comp, Mapping):
                checker.problem(components.key_lines[comp_name], comp_path, "must be a mapping")
                continue
            if not checker.mapping(comp, "component", comp_path):
                continue
            if comp["network"] not in networks:
                checker.problem(
                    comp.key_lines["network"],
                    f"{comp_path}.network",
                    f"{comp['network']!r} is not a network of {env_name} "
                    f"(networks: {', '.join(map(str, networks))})",
                )
            checker.mapping(comp["probe"], "probe", f"{comp_path}.probe")
            checker.mapping(comp["deploy"], "deploy", f"{comp_path}.deploy")
        freezes = env.get("freeze") or Mapping()
        checker.names(freezes, f"{env_path}.freeze", "freeze window")
        for freeze_name, freeze in freezes.items():
            freeze_path = f"{env_path}.freeze.{freeze_name}"
            if not isinstance(freeze, Mapping):
                checker.problem(freezes.key_lines[freeze_name], freeze_path, "must be a mapping")
            elif checker.mapping(freeze, "freeze", freeze_path):
                _check_freeze_times(checker, freeze, freeze_path)
    if "github" in document:
        _check_github(checker, document["github"], environments)
    if "people" in document:
        _check_people(checker, document["people"])
    return checker.problems


def person_identity(key) -> str | None:
    """An entry's account, lower case as IAP's usernames are; None when it cannot be one."""
    if not isinstance(key, str):
        return None
    identity = key.strip().lower()
    if not identity or len(identity) > 150 or not identity.isprintable():
        return None
    if any(ch.isspace() or unicodedata.category(ch) == "Cf" for ch in identity):
        return None
    return identity


def _check_people(checker: _Checker, people: Mapping):
    seen = {}
    for key, login in people.items():
        line, path = people.key_lines.get(key, people.line), f"people.{key}"
        identity = person_identity(key)
        if identity is None:
            checker.problem(
                line, path, "must be an e-mail address or a username (no spaces, at most 150)"
            )
            continue
        if identity in seen:
            checker.problem(line, path, f"the same person as {seen[identity]!r}")
        seen[identity] = key
        if problem := login_problem(login):
            checker.problem(line, path, problem)


def freeze_times(spec: Mapping) -> dict:
    """A freeze window's from/to as model fields: weekly ('fri 18:00') or once (ISO 8601; a time
    without an offset is read in the window's time zone). Raises ValueError naming the problem."""
    zone = spec.get("timezone", "UTC")
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: 'America' is a directory
        raise ValueError(f"timezone {zone!r} is not a known time zone") from None
    try:
        return {"weekly_from": _weekly(spec["from"]), "weekly_to": _weekly(spec["to"])}
    except ValueError:
        pass
    moments = {}
    for key, model_field in (("from", "starts_at"), ("to", "ends_at")):
        try:
            moment = datetime.fromisoformat(spec[key])
        except ValueError:
            raise ValueError(
                f"{key} {spec[key]!r} is neither a weekday and time ('fri 18:00') nor a date "
                "and time ('2026-12-24T18:00')"
            ) from None
        moments[model_field] = moment if moment.tzinfo else moment.replace(tzinfo=tz)
    return moments


def _weekly(text: str) -> str:
    minute_of_week(text)
    return " ".join(text.lower().split())


def _check_freeze_times(checker: _Checker, freeze: Mapping, path: str):
    try:
        freeze_times(freeze)
    except ValueError as exc:
        checker.problem(freeze.line, path, str(exc))


def _check_github(checker: _Checker, github: Mapping, environments: Mapping):
    if not checker.mapping(github, "github", "github"):
        return
    branches = github["branches"]
    claimed = {}
    for branch, env_name in branches.items():
        line = branches.key_lines[branch]
        if not isinstance(branch, str) or not branch:  # YAML reads `~:` as null, `1:` as a number
            checker.problem(
                line, f"github.branches.{branch}", "a branch name must be a non-empty string"
            )
            continue
        if not isinstance(env_name, str) or env_name not in environments:
            checker.problem(
                line, f"github.branches.{branch}", f"{env_name!r} is not an environment"
            )
            continue
        if env_name in claimed:
            checker.problem(
                line,
                f"github.branches.{branch}",
                f"{env_name} already deploys branch {claimed[env_name]!r}",
            )
        claimed[env_name] = branch
    deployable = {
        name
        for env in environments.values()
        if isinstance(env, Mapping) and isinstance(env.get("components"), Mapping)
        for name, comp in env["components"].items()
        if isinstance(comp, Mapping)
        and isinstance(comp.get("deploy"), Mapping)
        and comp["deploy"].get("kind", "none") != "none"
    }
    repositories = github["repositories"]
    for full_name, repo in repositories.items():
        path = f"github.repositories.{full_name}"
        line = repositories.key_lines[full_name]
        if not REPOSITORY.fullmatch(str(full_name)):
            checker.problem(line, path, "repository must be owner/name")
        if not isinstance(repo, Mapping):
            checker.problem(line, path, "must be a mapping")
            continue
        if not checker.mapping(repo, "repository", path):
            continue
        for name in repo["components"]:
            if name not in deployable:
                checker.problem(
                    repo.key_lines["components"],
                    f"{path}.components",
                    f"{name!r} is not a component that Gantry deploys",
                )


# --- Applying -----------------------------------------------------------------------------------


@dataclass
class Change:
    kind: str  # "create", "update", "delete", "keep-missing"
    label: str
    details: list[str] = field(default_factory=list)

    SIGNS = {"create": "+", "update": "~", "delete": "-", "keep-missing": "?"}

    def __str__(self):
        text = f"{self.SIGNS[self.kind]} {self.label}"
        if self.kind == "keep-missing":
            text += " (not in the file; kept, use --prune to delete)"
        if self.details:
            text += ": " + "; ".join(self.details)
        return text


@dataclass
class SyncResult:
    changes: list[Change]
    dry_run: bool

    @property
    def changed(self) -> bool:
        return any(c.kind != "keep-missing" for c in self.changes)


# YAML key path -> model field, used both to assign values and to point errors at the right line.
ENVIRONMENT_FIELDS = {
    "display_name": "display_name",
    "gcp_project": "gcp_project",
    "region": "region",
    "zones": "zones",
    "registry": "registry",
    "requires_approval": "requires_approval",
    "approvals_required": "approvals_required",
    "probe_interval": "probe_interval",
}
NETWORK_FIELDS = {"display_name": "display_name", "vpc": "vpc", "cidr": "cidr"}
COMPONENT_FIELDS = {
    ("display_name",): "display_name",
    ("tier",): "tier",
    ("host",): "host",
    ("port",): "port",
    ("options",): "options",
    ("probe", "kind"): "probe_kind",
    ("probe", "path"): "probe_path",
    ("probe", "expect_status"): "probe_expect_status",
    ("probe", "expect_json"): "probe_expect_json",
    ("deploy", "kind"): "deploy_kind",
    ("deploy", "strategy"): "strategy",
    ("deploy", "image"): "image",
    ("deploy", "tag"): "tag_template",
    ("deploy", "machine_type"): "machine_type",
    ("deploy", "size"): "size",
    ("deploy", "mig"): "mig",
    ("deploy", "blue_mig"): "blue_mig",
    ("deploy", "green_mig"): "green_mig",
    ("deploy", "backend_service"): "backend_service",
    ("deploy", "instance"): "instance",
    ("deploy", "zone"): "instance_zone",
}


def _field_default(model, name):
    model_field = model._meta.get_field(name)
    return model_field.get_default()


class _Applier:
    def __init__(self, source: str, prune: bool, actor=None):
        self.source = source
        self.prune = prune
        self.actor = actor
        self.changes: list[Change] = []
        self.problems: list[str] = []

    def assign(self, obj, values: dict, label: str, lines: dict, line: int, path: str):
        """Set fields on obj, record the change, validate and save it."""
        creating = obj._state.adding
        details = []
        for name, value in values.items():
            if creating:
                setattr(obj, name, value)
                continue
            old = getattr(obj, name)
            if old != value:
                details.append(f"{name} {old!r} -> {value!r}")
                setattr(obj, name, value)
        try:
            obj.full_clean()
        except ValidationError as exc:
            for name, messages in exc.message_dict.items():
                where = lines.get(name, line)
                for message in messages:
                    self.problems.append(f"{self.source} line {where}: {path}: {name}: {message}")
            return obj
        if creating:
            obj.save()
            self.changes.append(Change("create", label))
        elif details:
            obj.save()
            self.changes.append(Change("update", label, details))
        return obj

    def run(self, document: Mapping):
        wanted_envs = document["environments"]
        github = document.get("github") or Mapping()
        branches = {env: branch for branch, env in (github.get("branches") or {}).items()}
        for position, (env_name, spec) in enumerate(wanted_envs.items()):
            self.environment(env_name, spec, position, branches.get(env_name, ""))
        self.missing(Environment.objects.exclude(name__in=list(wanted_envs)), "environment")
        repositories = github.get("repositories") or Mapping()
        for full_name, spec in repositories.items():
            self.repository(full_name, spec, github["registry"])
        self.missing(Repository.objects.exclude(full_name__in=list(repositories)), "repository")
        self.people(document.get("people") or Mapping())

    def people(self, spec: Mapping):
        """Person rows exactly as the file lists them; each account's Profile in line with them
        (logins the topology gave to accounts it no longer names are cleared; ones a superuser
        set for accounts it does not name are left be)."""
        wanted = {}
        for key, login in spec.items():
            identity = person_identity(key)
            wanted[identity] = normalize_login(login)
            person = Person.objects.filter(identity=identity).first() or Person(identity=identity)
            line = spec.key_lines.get(key, spec.line)
            values = {"github_login": wanted[identity]}
            lines = {"github_login": line, "identity": line}
            self.assign(person, values, f"person {identity}", lines, line, f"people.{key}")
        for gone in Person.objects.exclude(identity__in=list(wanted)):
            gone.delete()
            self.changes.append(Change("delete", f"person {gone.identity}"))
        accounts = {}
        for user in get_user_model().objects.all():
            accounts.setdefault(Person.identity_of(user), []).append(user)
        named = set()
        for key in spec:
            identity = person_identity(key)
            found = accounts.get(identity, [])
            if len(found) > 1:
                names = ", ".join(sorted(u.get_username() for u in found))
                line = spec.key_lines.get(key, spec.line)
                self.problems.append(
                    f"{self.source} line {line}: people.{key}: fits more than one account "
                    f"({names}); rename all but one"
                )
            elif found:
                named.add(found[0].pk)
                self.profile(found[0], wanted[identity], Profile.Source.TOPOLOGY)
        stale = Profile.objects.filter(github_login_source=Profile.Source.TOPOLOGY)
        for profile in stale.exclude(user__in=named).select_related("user"):
            self.profile(profile.user, "", Profile.Source.NONE)

    def profile(self, user, login: str, source: str):
        profile = Profile.objects.filter(user=user).first() or Profile(user=user)
        before = profile.github_login
        if profile.set_github_login(login, source, actor=self.actor):
            why = "topology" if login else "no longer in people:"
            detail = f"github_login {before!r} -> {login!r} ({why})"
            self.changes.append(Change("update", f"profile {user.get_username()}", [detail]))

    def repository(self, full_name: str, spec: Mapping, registry: str):
        repo = Repository.objects.filter(full_name=full_name).first() or Repository(
            full_name=full_name
        )
        values = {
            "components": spec["components"],
            "workflows": spec.get("workflows", []),
            "events": spec.get("events", default_events()),
            "registry": spec.get("registry", registry),
        }
        lines = {k: spec.key_lines[k] for k in values if k in spec}
        path = f"github.repositories.{full_name}"
        self.assign(repo, values, f"repository {full_name}", lines, spec.line, path)

    def environment(self, name: str, spec: Mapping, position: int, branch: str):
        path = f"environments.{name}"
        env = Environment.objects.filter(name=name).first() or Environment(name=name)
        values = {
            field: _field_default(Environment, field) for field in ENVIRONMENT_FIELDS.values()
        }
        values.update(
            {ENVIRONMENT_FIELDS[k]: v for k, v in spec.items() if k in ENVIRONMENT_FIELDS}
        )
        values["position"] = position
        values["branch"] = branch
        lines = {ENVIRONMENT_FIELDS[k]: spec.key_lines[k] for k in spec if k in ENVIRONMENT_FIELDS}
        self.assign(env, values, f"environment {name}", lines, spec.line, path)
        if env.pk is None:
            return
        networks = {}
        for position, (net_name, net_spec) in enumerate(spec["networks"].items()):
            net_path = f"{path}.networks.{net_name}"
            networks[net_name] = self.network(env, net_name, net_spec, position, net_path)
        self.missing(env.networks.exclude(name__in=list(networks)), "network")
        self.peerings(env, networks, spec["networks"])
        for position, (comp_name, comp_spec) in enumerate(spec["components"].items()):
            comp_path = f"{path}.components.{comp_name}"
            self.component(env, networks, comp_name, comp_spec, position, comp_path)
        self.missing(env.components.exclude(name__in=list(spec["components"])), "component")
        freezes = spec.get("freeze") or Mapping()
        for freeze_name, freeze_spec in freezes.items():
            self.freeze(env, freeze_name, freeze_spec, f"{path}.freeze.{freeze_name}")
        topology_freezes = env.freeze_windows.filter(from_topology=True)
        self.missing(topology_freezes.exclude(name__in=list(freezes)), "freeze window")

    def freeze(self, env, name: str, spec: Mapping, path: str):
        """Windows from the file are kept in line with it; ones made in the admin are left be."""
        window = env.freeze_windows.filter(name=name).first() or FreezeWindow(
            environment=env, name=name
        )
        values = {
            "reason": spec["reason"],
            "timezone": spec.get("timezone", "UTC"),
            "enabled": spec.get("enabled", True),
            "from_topology": True,
            "weekly_from": "",
            "weekly_to": "",
            "starts_at": None,
            "ends_at": None,
            **freeze_times(spec),
        }
        lines = {"reason": spec.key_lines["reason"]}
        self.assign(window, values, f"freeze window {env.name}/{name}", lines, spec.line, path)

    def network(self, env, name, spec: Mapping, position: int, path: str):
        net = env.networks.filter(name=name).first() or Network(environment=env, name=name)
        values = {field: _field_default(Network, field) for field in NETWORK_FIELDS.values()}
        values.update({NETWORK_FIELDS[k]: v for k, v in spec.items() if k in NETWORK_FIELDS})
        values["position"] = position
        lines = {NETWORK_FIELDS[k]: spec.key_lines[k] for k in spec if k in NETWORK_FIELDS}
        return self.assign(net, values, f"network {env.name}/{name}", lines, spec.line, path)

    def peerings(self, env, networks: dict, specs: Mapping):
        """Peering is undirected: a pair listed on either side (or both) is one peering."""
        if any(n.pk is None for n in networks.values()):
            return
        wanted = {frozenset((a, b)) for a, spec in specs.items() for b in spec.get("peers", [])}
        current = {
            frozenset((n.name, p.name))
            for n in env.networks.prefetch_related("peers")
            for p in n.peers.all()
        }
        for pair in sorted(wanted - current, key=sorted):
            a, b = sorted(pair)
            networks[a].peers.add(networks[b])
            self.changes.append(Change("create", f"peering {env.name}: {a} <-> {b}"))
        for pair in sorted(current - wanted, key=sorted):
            a, b = sorted(pair)
            Network.objects.get(environment=env, name=a).peers.remove(
                Network.objects.get(environment=env, name=b)
            )
            self.changes.append(Change("delete", f"peering {env.name}: {a} <-> {b}"))

    def component(self, env, networks: dict, name: str, spec: Mapping, position: int, path: str):
        comp = env.components.filter(name=name).first() or Component(environment=env, name=name)
        values = {field: _field_default(Component, field) for field in COMPONENT_FIELDS.values()}
        lines = {}
        for keys, model_field in COMPONENT_FIELDS.items():
            container = spec
            for key in keys[:-1]:
                container = container.get(key, {})
            if keys[-1] in container:
                values[model_field] = container[keys[-1]]
                lines[model_field] = container.key_lines[keys[-1]]
        network = networks[spec["network"]]
        if network.pk is None:
            return
        values["network"] = network
        values["position"] = position
        lines["network"] = spec.key_lines["network"]
        if not values["strategy"]:
            values["strategy"] = Component.DEFAULT_STRATEGY[values["deploy_kind"]]
        self.assign(comp, values, f"component {env.name}/{name}", lines, spec.line, path)

    def missing(self, queryset, what: str):
        for obj in queryset:
            label = f"{what} {obj}"
            if not self.prune:
                self.changes.append(Change("keep-missing", label))
                continue
            try:
                obj.delete()
            except ProtectedError as exc:
                blockers = ", ".join(sorted({str(o) for o in exc.protected_objects})[:5])
                self.problems.append(
                    f"{self.source}: cannot delete {label}: still used by {blockers}"
                )
            else:
                self.changes.append(Change("delete", label))


def sync_topology(
    path: str | Path | None = None,
    *,
    text: str | None = None,
    dry_run: bool = False,
    prune: bool = False,
    actor=None,
) -> SyncResult:
    """Bring the database in line with a topology file. Raises TopologyError, writing nothing."""
    if text is None:
        path = Path(path)
        try:
            with path.open("rb") as file:
                data = file.read(MAX_BYTES + 1)  # no more than that is read, whatever the file
        except OSError as exc:
            raise TopologyError([f"{path}: cannot read: {exc.strerror}"]) from None
        if len(data) > MAX_BYTES:
            raise TopologyError([f"{path}: refused: over the limit of {MAX_BYTES} bytes"])
        try:
            text = data.decode()
        except UnicodeDecodeError as exc:
            raise TopologyError([f"{path}: cannot read: not UTF-8 at byte {exc.start}"]) from None
    source = str(path) if path else "topology"
    document = parse(text, source)
    problems = check(document, source)
    if problems:
        raise TopologyError(problems)
    with transaction.atomic():
        applier = _Applier(source, prune, actor)
        applier.run(document)
        if applier.problems:
            transaction.set_rollback(True)
            raise TopologyError(applier.problems)
        result = SyncResult(applier.changes, dry_run)
        if dry_run:
            transaction.set_rollback(True)
        elif result.changed:
            AuditEvent.record(
                "topology.load",
                actor=actor,
                message=f"loaded {source}",
                data={"source": source, "changes": [str(c) for c in result.changes]},
            )
    return result
