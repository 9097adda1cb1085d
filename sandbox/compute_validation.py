"""What Compute Engine refuses, with its 400/412 messages: bad fields, bad versions and policies."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from . import links
from .compute import Mig, merge_patch
from .fields import BACKEND_FIELDS, BALANCING_MODES, MIG_FIELDS, MIG_WRITABLE, UPDATE_POLICY_ENUMS
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
        patch["distributionPolicy"] = {"targetShape": policy.get("targetShape", "EVEN")}
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
    return patch


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
