"""What Compute Engine refuses, with its 400/412 messages: bad fields, bad versions and policies."""

from __future__ import annotations

import base64
import json
import re
from typing import TYPE_CHECKING

from . import links
from .compute import Mig, merge_patch
from .compute_render import render_template
from .fields import (
    ACTION_ORDER,
    AUTO_HEALING_FIELDS,
    BACKEND_FIELDS,
    BALANCING_MODES,
    HTTP_PROTOCOLS,
    LIST_MANAGED_INSTANCES_RESULTS,
    MAX_RESULTS,
    MIG_FIELDS,
    MIG_WRITABLE,
    REFRESHABLE,
    RESTARTABLE,
    TARGET_SHAPES,
    TEMPLATE_OUTPUT_ONLY,
    UPDATE_POLICY_ENUMS,
)
from .http import ApiError
from .rollout import calculated

if TYPE_CHECKING:
    from .world import World

NAME = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")


def invalid(field: str, value, why: str) -> ApiError:
    return ApiError(400, f"Invalid value for field '{field}': '{value}'. {why}")


def unknown_fields(body: dict, known: set[str], where: str) -> None:
    for name in body:
        if name not in known:
            raise ApiError(
                400,
                f"Invalid JSON payload received. Unknown name \"{name}\" at '{where}': "
                "Cannot find field.",
            )


def template_reference(world: World, project: str, value, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise invalid(field, value, "An instance template URL is required.")
    owner, path = links.key(project, value)
    if owner != project or not re.match(r"^(global|regions/[^/]+)/instanceTemplates/[^/]+$", path):
        raise invalid(field, value, "The URL is malformed.")
    if path not in world.projects[project].templates:
        raise invalid(field, value, "The referenced instance template does not exist.")
    return links.url(project, path)


def fixed_or_percent(value, field: str, size: int, zones: int, limits: bool) -> dict:
    if not isinstance(value, dict):
        raise invalid(field, value, "Expected an object with 'fixed' or 'percent'.")
    value = {k: v for k, v in value.items() if k != "calculated"}
    unknown_fields(value, {"fixed", "percent"}, field)
    if len(value) != 1:
        raise invalid(field, value, "Exactly one of 'fixed' or 'percent' must be set.")
    if "fixed" in value:
        fixed = value["fixed"]
        if not isinstance(fixed, int) or fixed < 0:
            raise invalid(f"{field}.fixed", fixed, "Must be a non-negative integer.")
        if limits and 0 < fixed < zones:
            raise invalid(
                f"{field}.fixed",
                fixed,
                f"Fixed value for a regional managed instance group must be 0 or at least the "
                f"number of zones ({zones}).",
            )
    else:
        percent = value["percent"]
        if not isinstance(percent, int) or not 0 <= percent <= 100:
            raise invalid(f"{field}.percent", percent, "Must be between 0 and 100.")
        if limits and size < 10:
            raise invalid(
                f"{field}.percent",
                percent,
                "Percent values are allowed only for groups with 10 or more instances.",
            )
    return value


def validate_mig_patch(world: World, project: str, mig: Mig, body: dict) -> dict:
    unknown_fields(body, MIG_FIELDS, "instance_group_manager_resource")
    if body.get("name") not in (None, mig.name):
        raise invalid("resource.name", body["name"], "The name cannot be changed.")
    if body.get("fingerprint") not in (None, "", mig.fingerprint()):
        raise ApiError(412, "Supplied fingerprint does not match current fingerprint.")
    patch = {k: v for k, v in body.items() if k in MIG_WRITABLE}
    if "instanceTemplate" in patch:
        template = template_reference(
            world, project, patch.pop("instanceTemplate"), "resource.instanceTemplate"
        )
        patch.setdefault("versions", [{"instanceTemplate": template}])
    if "distributionPolicy" in patch:
        policy = patch["distributionPolicy"] or {}
        zones = [links.name(z.get("zone", "")) for z in policy.get("zones", [])]
        if zones and zones != mig.zones:
            raise invalid("resource.distributionPolicy.zones", zones, "Zones cannot be changed.")
        shape = policy.get("targetShape", "EVEN")
        if shape not in TARGET_SHAPES:
            why = f"Expected one of {sorted(TARGET_SHAPES)}."
            raise invalid("resource.distributionPolicy.targetShape", shape, why)
        patch["distributionPolicy"] = {"targetShape": shape}
    if "autoHealingPolicies" in patch:
        patch["autoHealingPolicies"] = validate_autohealing(patch["autoHealingPolicies"])
    results = patch.get("listManagedInstancesResults", "PAGELESS")
    if results not in LIST_MANAGED_INSTANCES_RESULTS:
        why = f"Expected one of {sorted(LIST_MANAGED_INSTANCES_RESULTS)}."
        raise invalid("resource.listManagedInstancesResults", results, why)
    if "targetSize" in patch:
        size = patch["targetSize"]
        if not isinstance(size, int) or size < 0:
            raise invalid("resource.targetSize", size, "Must be a non-negative integer.")
    merged = merge_patch(mig.config, patch)
    size, zones = merged.get("targetSize", 0), len(mig.zones)
    if "versions" in patch:
        patch["versions"] = validate_versions(world, project, patch["versions"], size)
    if "updatePolicy" in patch:
        check_policy_fields(patch["updatePolicy"])
    policy = dict(merge_patch(mig.config, patch).get("updatePolicy", {}))
    for key in ("maxSurge", "maxUnavailable"):
        if policy.get(key) is not None:
            field = f"resource.updatePolicy.{key}"
            policy[key] = fixed_or_percent(policy[key], field, size, zones, limits=True)
            if key in patch.get("updatePolicy", {}):
                patch["updatePolicy"][key] = policy[key]
    check_policy_limits(policy, size, zones)
    check_actions(world, project, mig, patch, policy)
    return patch


def validate_autohealing(policies) -> list[dict]:
    """GCP takes an initial delay of 0 to 3600 seconds, as an integer."""
    if not isinstance(policies, list):
        raise invalid("resource.autoHealingPolicies", policies, "Expected a list.")
    cleaned = []
    for n, policy in enumerate(policies):
        field = f"resource.autoHealingPolicies[{n}]"
        if not isinstance(policy, dict):
            raise invalid(field, policy, "Expected an object.")
        unknown_fields(policy, AUTO_HEALING_FIELDS, field)
        shown = dict(policy)
        if "initialDelaySec" in policy:
            delay = policy["initialDelaySec"]
            if isinstance(delay, str) and re.fullmatch(r"-?\d+", delay):
                delay = int(delay)  # proto3 JSON may send an int32 as a string
            if not isinstance(delay, int) or isinstance(delay, bool) or not 0 <= delay <= 3600:
                why = "Must be an integer between 0 and 3600."
                raise invalid(f"{field}.initialDelaySec", policy["initialDelaySec"], why)
            shown["initialDelaySec"] = delay
        cleaned.append(shown)
    return cleaned


def needed_action(old: dict, new: dict) -> str:
    """The least disruptive action that moves a VM from template `old` to `new`: metadata,
    labels and tags refresh in place, machine settings need a restart, the rest a new VM."""
    a, b = render_template(old)["properties"], render_template(new)["properties"]
    changed = {key for key in a.keys() | b.keys() if a.get(key) != b.get(key)}
    if not changed:
        return "NONE"
    if changed <= REFRESHABLE:
        return "REFRESH"
    return "RESTART" if changed <= RESTARTABLE else "REPLACE"


def check_actions(world: World, project: str, mig: Mig, patch: dict, policy: dict) -> None:
    """mostDisruptiveAllowedAction may be neither below minimalAction nor below what a
    proactive update to the patch's versions needs (GCP refuses the update up front)."""
    order = ACTION_ORDER.index
    minimal, most = policy.get("minimalAction"), policy.get("mostDisruptiveAllowedAction")
    field = "resource.updatePolicy.mostDisruptiveAllowedAction"
    if minimal and most and order(most) < order(minimal):
        why = f"It must be at least as disruptive as minimalAction ({minimal})."
        raise invalid(field, most, why)
    if not most or "versions" not in patch or policy.get("type") != "PROACTIVE":
        return
    templates = world.projects[project].templates
    targets = {links.key(project, v["instanceTemplate"])[1] for v in patch["versions"]}
    for old in sorted({i.template for i in mig.live()}):
        for new in sorted(targets - {old}):
            need = needed_action(templates.get(old, {}), templates.get(new, {}))
            if order(need) > order(most):
                why = (
                    f"Updating instances from {links.name(old)} to {links.name(new)} needs {need}."
                )
                raise invalid(field, most, why)


def check_policy_fields(policy) -> None:
    if not isinstance(policy, dict):
        raise invalid("resource.updatePolicy", policy, "Expected an object.")
    known = set(UPDATE_POLICY_ENUMS) | {"maxSurge", "maxUnavailable"}
    unknown_fields(policy, known, "resource.updatePolicy")
    for key, allowed in UPDATE_POLICY_ENUMS.items():
        if key in policy and policy[key] not in allowed:
            why = f"Expected one of {sorted(allowed)}."
            raise invalid(f"resource.updatePolicy.{key}", policy[key], why)


def check_policy_limits(policy: dict, size: int, zones: int) -> None:
    surge = calculated(policy.get("maxSurge"), size, zones)
    unavailable = calculated(policy.get("maxUnavailable"), size, zones)
    if policy.get("type") == "PROACTIVE" and surge == 0 and unavailable == 0:
        why = "maxSurge and maxUnavailable cannot both be 0."
        raise invalid("resource.updatePolicy.maxUnavailable", 0, why)
    if policy.get("replacementMethod") == "RECREATE" and surge > 0:
        why = "maxSurge must be 0 when replacementMethod is RECREATE."
        raise invalid("resource.updatePolicy.maxSurge", surge, why)


def validate_versions(world: World, project: str, versions, size: int) -> list[dict]:
    if not isinstance(versions, list) or not versions:
        raise invalid("resource.versions", versions, "At least one version is required.")
    cleaned, seen_templates, seen_names = [], set(), set()
    for n, version in enumerate(versions):
        field = f"resource.versions[{n}]"
        if not isinstance(version, dict):
            raise invalid(field, version, "Expected an object.")
        unknown_fields(version, {"name", "instanceTemplate", "targetSize"}, field)
        shown = {
            "instanceTemplate": template_reference(
                world, project, version.get("instanceTemplate"), f"{field}.instanceTemplate"
            )
        }
        if version.get("name"):
            if version["name"] in seen_names:
                raise invalid(f"{field}.name", version["name"], "Version names must be unique.")
            seen_names.add(version["name"])
            shown["name"] = version["name"]
        if shown["instanceTemplate"] in seen_templates:
            raise invalid(
                f"{field}.instanceTemplate",
                shown["instanceTemplate"],
                "Each version must use a different instance template.",
            )
        seen_templates.add(shown["instanceTemplate"])
        if version.get("targetSize"):
            shown["targetSize"] = fixed_or_percent(
                version["targetSize"], f"{field}.targetSize", size, 0, limits=False
            )
        cleaned.append(shown)
    if len(cleaned) == 1 and "targetSize" in cleaned[0]:
        why = "A group with a single version takes its size from the group's targetSize."
        raise invalid("resource.versions[0].targetSize", versions[0]["targetSize"], why)
    if len(cleaned) > 1 and sum(1 for v in cleaned if "targetSize" not in v) != 1:
        raise invalid("resource.versions", "", "Exactly one version must leave targetSize unset.")
    return cleaned


def validate_backends(world: World, project: str, backends) -> list[dict]:
    if not isinstance(backends, list):
        raise invalid("resource.backends", backends, "Expected a list.")
    state, cleaned, groups = world.projects[project], [], set()
    known_groups = {m.group_path for m in state.migs.values()}
    for n, backend in enumerate(backends):
        field = f"resource.backends[{n}]"
        if not isinstance(backend, dict):
            raise invalid(field, backend, "Expected an object.")
        unknown_fields(backend, BACKEND_FIELDS, field)
        owner, path = links.key(project, backend.get("group") or "")
        if owner != project or path not in known_groups:
            raise invalid(
                f"{field}.group",
                backend.get("group"),
                "The resource is not an instance group of this project.",
            )
        if path in groups:
            raise invalid(f"{field}.group", backend["group"], "Duplicate backend group.")
        groups.add(path)
        mode = backend.get("balancingMode", "UTILIZATION")
        if mode not in BALANCING_MODES:
            raise invalid(
                f"{field}.balancingMode", mode, f"Expected one of {sorted(BALANCING_MODES)}."
            )
        scaler = backend.get("capacityScaler", 1.0)
        if not isinstance(scaler, int | float) or not 0 <= scaler <= 1:
            raise invalid(f"{field}.capacityScaler", scaler, "Must be between 0.0 and 1.0.")
        cleaned.append(
            backend
            | {"group": links.url(project, path), "balancingMode": mode, "capacityScaler": scaler}
        )
    return cleaned


def check_balancing(backends: list[dict], protocol: str) -> None:
    """An HTTP(S) load balancer balances requests: CONNECTION mode is for TCP/SSL/UDP only."""
    if protocol not in HTTP_PROTOCOLS:
        return
    for n, backend in enumerate(backends):
        if backend.get("balancingMode") == "CONNECTION":
            why = f"CONNECTION is not supported for protocol {protocol}; use UTILIZATION or RATE."
            raise invalid(f"resource.backends[{n}].balancingMode", "CONNECTION", why)


def refuse_output_only(properties) -> None:
    """A template insert that carries fields GCP fills in itself (e.g. copied from a GET)."""
    if not isinstance(properties, dict):
        return
    for part, fields in TEMPLATE_OUTPUT_ONLY.items():
        for n, item in enumerate(properties.get(part) or []):
            for name in sorted(fields & set(item if isinstance(item, dict) else ())):
                field = f"resource.properties.{part}[{n}].{name}"
                raise invalid(field, item[name], "The field is output only and cannot be set.")
    metadata = properties.get("metadata")
    if isinstance(metadata, dict) and "kind" in metadata:
        field = "resource.properties.metadata.kind"
        raise invalid(field, metadata["kind"], "The field is output only and cannot be set.")


def page(query: dict[str, str], items: list, where: str) -> tuple[list, str]:
    """One page of `items` per `maxResults` (0..500, default 500) and `pageToken`, and the
    token of the next page ("" on the last). A token names its listing, so one from another
    listing, or one the sandbox never issued, is refused."""
    raw = query.get("maxResults", "")
    if raw and (not raw.isdigit() or int(raw) > MAX_RESULTS):
        raise invalid("maxResults", raw, f"Must be an integer between 0 and {MAX_RESULTS}.")
    size = int(raw or 0) or MAX_RESULTS
    start = page_start(query["pageToken"], where) if query.get("pageToken") else 0
    end = start + size
    if end >= len(items):
        return items[start:], ""
    return items[start:end], base64.urlsafe_b64encode(json.dumps([where, end]).encode()).decode()


def page_start(token: str, where: str) -> int:
    """Where the page a `pageToken` names starts; a 400 for a token of another listing."""
    try:
        listing, start = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, TypeError):  # not base64, not JSON, not a pair
        listing, start = None, None
    if listing != where or not isinstance(start, int) or isinstance(start, bool) or start < 0:
        raise invalid("pageToken", token, "Invalid page token.")
    return start
