"""The MIG updater: moves a group's instances towards its versions, one decision at a time.

Like GCP's regional updater it works zone by zone: maxSurge and maxUnavailable are split over
the group's zones, an outdated instance is replaced only while the zone keeps enough available
(RUNNING and HEALTHY) instances, and a new instance counts as available only once healthy.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Protocol

from .compute import RECREATING, REFRESHING, RESTARTING, Instance, Mig


class Fleet(Protocol):
    """What the updater asks the world to do; the world owns names, timings and faults."""

    def create_instance(self, mig: Mig, zone: str, template: str, t: float) -> Instance: ...
    def delete_instance(self, instance: Instance, t: float) -> None: ...
    def update_in_place(
        self, mig: Mig, instance: Instance, template: str, action: str, t: float
    ) -> None: ...


def calculated(value: dict | None, total: int, default: int) -> int:
    """FixedOrPercent → instances; a percentage of `total` is rounded to the nearest integer."""
    if not value:
        return default
    if value.get("fixed") is not None:
        return int(value["fixed"])
    if value.get("percent") is not None:
        return math.floor(total * int(value["percent"]) / 100 + 0.5)
    return default


def split(total: int, parts: int) -> list[int]:
    """An even split; the first zones take the remainder (GCP's EVEN target shape)."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def surge_and_unavailable(mig: Mig) -> tuple[int, int]:
    policy = mig.config.get("updatePolicy", {})
    size, zones = mig.config.get("targetSize", 0), len(mig.zones)
    return (
        calculated(policy.get("maxSurge"), size, zones),
        calculated(policy.get("maxUnavailable"), size, zones),
    )


def version_counts(mig: Mig) -> list[int]:
    """Instances each version should have: fixed/percent versions first, the rest to the other."""
    versions, size = mig.config.get("versions", []), mig.config.get("targetSize", 0)
    counts: list[int | None] = [None] * len(versions)
    remaining = size
    if len(versions) > 1:
        for i, version in enumerate(versions):
            if version.get("targetSize"):
                counts[i] = min(calculated(version["targetSize"], size, 0), remaining)
                remaining -= counts[i]
    for i, count in enumerate(counts):
        if count is None:
            counts[i], remaining = remaining, 0
    return counts


def zone_plan(mig: Mig, templates: list[str]) -> dict[str, Counter]:
    """zone → template path → instances wanted, keeping versions where they already run."""
    size = mig.config.get("targetSize", 0)
    room = dict(zip(mig.zones, split(size, len(mig.zones)), strict=True))
    existing = {z: Counter(i.template for i in mig.live() if i.zone == z) for z in mig.zones}
    plan = {z: Counter() for z in mig.zones}
    versions = mig.config.get("versions", [])
    order = sorted(range(len(versions)), key=lambda i: not versions[i].get("targetSize"))
    counts = version_counts(mig)
    for i in order:
        template = templates[i]
        for _ in range(counts[i]):
            zone = max(
                mig.zones,
                key=lambda z: (
                    room[z],
                    existing[z][template] - plan[z][template],
                    -mig.zones.index(z),
                ),
            )
            if room[zone] == 0:
                break
            plan[zone][template] += 1
            room[zone] -= 1
    return plan


def reconcile(mig: Mig, templates: list[str], fleet: Fleet, t: float) -> bool:
    """Take every step the update policy allows at time t; True when anything changed."""
    policy = mig.config.get("updatePolicy", {})
    proactive = policy.get("type", "OPPORTUNISTIC") == "PROACTIVE"
    in_place = policy.get("minimalAction") in ("RESTART", "REFRESH") or (
        policy.get("replacementMethod") == "RECREATE"
    )
    surge, unavailable = surge_and_unavailable(mig)
    zone_surge = dict(zip(mig.zones, split(surge, len(mig.zones)), strict=True))
    zone_unavailable = dict(zip(mig.zones, split(unavailable, len(mig.zones)), strict=True))
    plan = zone_plan(mig, templates)
    changed = False
    for zone in mig.zones:
        limits = (zone_surge[zone], zone_unavailable[zone])
        while _step(mig, zone, plan[zone], proactive, in_place, *limits, policy, fleet, t):
            changed = True
    return changed


def _step(mig, zone, want, proactive, in_place, surge, unavailable, policy, fleet, t) -> bool:
    live = [i for i in mig.live() if i.zone == zone]
    have = Counter(i.template for i in live)
    size = sum(want.values())
    deficit = [tmpl for tmpl in want if want[tmpl] > have[tmpl]]
    over = {tmpl for tmpl in have if have[tmpl] > want[tmpl]}
    available = sum(1 for i in live if i.available(t))
    ceiling = size + (surge if proactive else 0)
    candidates = sorted(
        (i for i in live if i.template in over),
        key=lambda i: (i.available(t), i.template in want, i.created_at, i.name),
    )
    victim = candidates[0] if candidates else None
    # Taking `victim` out of service keeps the zone at or above target size - maxUnavailable.
    affordable = victim is not None and (
        not victim.available(t) or available - 1 >= size - unavailable
    )

    if deficit and len(live) < size:
        fleet.create_instance(mig, zone, deficit[0], t)
        return True
    if proactive and deficit and victim is not None:
        if in_place:
            action = _in_place_action(policy)
            if action == REFRESHING or affordable:
                fleet.update_in_place(mig, victim, deficit[0], action, t)
                return True
        elif len(live) < ceiling:
            fleet.create_instance(mig, zone, deficit[0], t)
            return True
    if victim is not None and (len(live) > ceiling or (proactive and affordable)):
        fleet.delete_instance(victim, t)
        return True
    return False


def _in_place_action(policy: dict) -> str:
    if policy.get("replacementMethod") == "RECREATE" or policy.get("minimalAction") == "REPLACE":
        return RECREATING
    return RESTARTING if policy.get("minimalAction") == "RESTART" else REFRESHING


def summary(mig: Mig, t: float) -> dict[str, dict[str, dict[str, int]]]:
    """zone → template name → {total, running, available}: what tests and the history record."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for i in mig.instances:
        row = out.setdefault(i.zone, {}).setdefault(
            i.template.rsplit("/", 1)[-1], {"total": 0, "running": 0, "available": 0}
        )
        row["total"] += 0 if i.deleting else 1
        row["running"] += i.running(t)
        row["available"] += i.available(t)
    return out
