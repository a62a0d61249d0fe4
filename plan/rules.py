"""Rules that cross-reference sections of a plan: references to regions, key categories,
hosts and offsite locations must exist, and data sovereignty holds.

They run on the raw mapping (what YAML produced) so that they report alongside structural
errors: an operator sees every problem in one ``drfleet plan check``. Items whose shape is
wrong are skipped here; the structural validation reports them.
"""

from __future__ import annotations

from typing import Any, Iterator

from drfleet.plan.copies import CopyTarget, parse_copy_target
from drfleet.plan.durations import parse_duration
from drfleet.plan.retention import parse_retention

Issue = tuple[tuple, str]  # (path in the document, message)


def _mapping(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _sequence(value: Any) -> list:
    return value if isinstance(value, list) else []


def _listed(names: Any) -> str:
    """Names for a message, sorted (a YAML key may be a number or a date: as text)."""
    return ", ".join(sorted(str(name) for name in names))


def _regions(doc: dict) -> tuple[set[str], str | None]:
    names, primary = set(), None
    for region in _sequence(doc.get("regions")):
        if isinstance(region, dict) and isinstance(region.get("name"), str):
            names.add(region["name"])
            if region.get("primary"):
                primary = region["name"]
    return names, primary


def location_region(location: dict) -> str | None:
    """The region whose law a location is under: its region, or an offsite jurisdiction."""
    return location.get("region") or location.get("jurisdiction")


def resolve_copy_target(doc: dict, home: str, target: CopyTarget) -> list[str]:
    """Names of the storage locations a copy target means for a dataset homed in ``home``.

    Works on the raw plan mapping or ``Plan.model_dump()``. Raises ValueError when an
    ``offsite:NAME`` location does not exist or is not offsite.
    """
    storage = _mapping(doc.get("storage"))
    _, primary = _regions(doc)

    def onsite(region: str | None) -> list[str]:
        return [n for n, loc in storage.items() if isinstance(loc, dict)
                and not loc.get("offsite") and (region is None or loc.get("region") == region)]

    offsite = {n: loc for n, loc in storage.items() if isinstance(loc, dict) and loc.get("offsite")}
    if target.kind in ("home-region", "region-only"):
        return onsite(home)
    if target.kind == "primary-region":
        return onsite(primary)
    if target.kind == "all-regions":
        return onsite(None)
    if target.location:
        if target.location not in offsite:
            raise ValueError(f"offsite location {target.location!r} is not declared as "
                             f"'offsite: true' under storage (offsite locations: {_listed(offsite) or 'none'})")
        return [target.location]
    if target.kind == "offsite-all":
        return sorted(offsite, key=str)
    return sorted((n for n, loc in offsite.items() if loc.get("default", True)), key=str)


def check_references(doc: dict) -> Iterator[Issue]:
    """Yield (path, message) for every dangling reference and sovereignty violation."""
    regions, primary = _regions(doc)
    keys = {k for k in _mapping(doc.get("keys")) if isinstance(k, str)}
    hosts = {h for h in _mapping(doc.get("hosts")) if isinstance(h, str)}
    storage = _mapping(doc.get("storage"))

    for name, loc in storage.items():
        loc = _mapping(loc)
        for field in ("region", "jurisdiction"):
            if isinstance(loc.get(field), str) and regions and loc[field] not in regions:
                yield ("storage", name, field), f"unknown region {loc[field]!r} (regions: {_listed(regions)})"
        if isinstance(loc.get("key"), str) and loc["key"] not in keys:
            yield ("storage", name, "key"), f"unknown key category {loc['key']!r} (keys: {_listed(keys)})"
    if regions and not any(isinstance(l, dict) and not l.get("offsite") for l in storage.values()):
        yield ("storage",), "no storage location in any region: declare at least one with 'region:'"
    for region in sorted(regions, key=str):
        if storage and not any(isinstance(l, dict) and l.get("region") == region and not l.get("offsite")
                               for l in storage.values()):
            yield ("regions",), f"region {region!r} has no storage location; add one under storage with region: {region}"

    places: dict[str, str] = {}  # different categories never share a keyring
    for name, ref in _mapping(doc.get("keys")).items():
        ref = _mapping(ref)
        place = f"file {ref['file']}" if isinstance(ref.get("file"), str) else (
            f"variable {ref['env']}" if isinstance(ref.get("env"), str) else None)
        if place and place in places:
            yield ("keys", name), (f"key category {name!r} uses the same keyring as {places[place]!r} ({place}); "
                                   "each category needs its own keyring (`drfleet keys create CATEGORY`)")
        elif place:
            places[place] = name

    for name, host in _mapping(doc.get("hosts")).items():
        host = _mapping(host)
        if isinstance(host.get("region"), str) and regions and host["region"] not in regions:
            yield ("hosts", name, "region"), f"unknown region {host['region']!r}"

    for name, ds in _mapping(doc.get("datasets")).items():
        ds = _mapping(ds)
        home = ds.get("region")
        if isinstance(home, str) and regions and home not in regions:
            yield ("datasets", name, "region"), f"unknown region {home!r} (regions: {_listed(regions)})"
        if isinstance(ds.get("key"), str) and ds["key"] not in keys:
            yield ("datasets", name, "key"), (f"unknown key category {ds['key']!r} "
                                              f"(keys: {_listed(keys) or 'none declared'})")
        objectives = _mapping(doc.get("objectives"))
        data_class = ds.get("data_class") if isinstance(ds.get("data_class"), str) else None
        if ds.get("rpo") is None and data_class not in _mapping(objectives.get("rpo")):
            yield ("datasets", name), ("no RPO target: give 'rpo:' or a 'data_class' listed under objectives.rpo "
                                       f"(classes: {_listed(_mapping(objectives.get('rpo'))) or 'none'})")
        scenario = ds.get("scenario") or ("single-service" if ds.get("kind") == "files" else "database")
        if ds.get("rto") is None and isinstance(scenario, str) and scenario not in _mapping(objectives.get("rto")):
            yield ("datasets", name), (f"no RTO target: give 'rto:' or list scenario {scenario!r} under objectives.rto")
        source = _mapping(ds.get("source"))
        if isinstance(source.get("host"), str) and source["host"] not in hosts:
            yield ("datasets", name, "source", "host"), f"unknown host {source['host']!r} (hosts: {_listed(hosts) or 'none'})"
        yield from _check_policies(doc, name, ds, home if isinstance(home, str) and home in regions else None,
                                   primary)

    yield from _check_implicit_locks(doc, regions)

    for i, drill in enumerate(_sequence(doc.get("drills"))):
        drill = _mapping(drill)
        if isinstance(drill.get("region"), str) and drill["region"] not in regions:
            yield ("drills", i, "region"), f"unknown region {drill['region']!r}"


def _check_policies(doc: dict, name: str, ds: dict, home: str | None, primary: str | None) -> Iterator[Issue]:
    policies = ds.get("policies") if isinstance(ds.get("policies"), list) else []
    targets: list[tuple[tuple, CopyTarget]] = []
    seen: set[str] = set()
    for i, policy in enumerate(policies):
        policy = _mapping(policy)
        pname = policy.get("name")
        if isinstance(pname, str):
            if pname in seen:
                yield ("datasets", name, "policies", i, "name"), f"policy name {pname!r} is used twice in this dataset"
            seen.add(pname)
        for j, raw in enumerate(policy.get("copies") or [] if isinstance(policy.get("copies"), list) else []):
            try:
                targets.append((("datasets", name, "policies", i, "copies", j), parse_copy_target(raw)))
            except ValueError:
                continue  # structural validation reports it
    sovereign = bool(ds.get("region_only")) or any(t.kind == "region-only" for _, t in targets)
    if home is None:
        return
    yield from _check_locks(doc, name, home, policies)
    for path, target in targets:
        try:
            locations = resolve_copy_target(doc, home, target)
        except ValueError as exc:
            yield path, str(exc)
            continue
        if not locations:
            yield path, f"copy target {target.label!r} resolves to no storage location for region {home!r}"
        if not sovereign:
            continue
        storage = _mapping(doc.get("storage"))
        outside = sorted((loc for loc in locations
                          if location_region(_mapping(storage.get(loc))) != home), key=str)
        if outside:
            yield path, (f"data sovereignty: dataset {name!r} is region-only ({home}) but copy target "
                         f"{target.label!r} sends copies outside it (to {_listed(outside)}); "
                         f"use 'home-region', or an offsite location with 'jurisdiction: {home}'")


def _check_locks(doc: dict, name: str, home: str, policies: list) -> Iterator[Issue]:
    """A time-based ``keep`` shorter than the Object Lock of a location the policy writes
    to: prune could not delete on time, so the plan says two contradictory things."""
    storage = _mapping(doc.get("storage"))
    locks = {}
    for loc_name, loc in storage.items():
        lock = _mapping(_mapping(loc).get("object_lock"))
        try:
            locks[loc_name] = parse_duration(lock["retain"]) if "retain" in lock else None
        except (ValueError, TypeError):
            continue
    if not any(locks.values()):
        return
    first_home = next((n for n, l in storage.items()
                       if isinstance(l, dict) and not l.get("offsite") and l.get("region") == home), None)
    for i, policy in enumerate(policies):
        policy = _mapping(policy)
        try:
            keep = parse_retention(policy.get("keep")).keep_seconds
        except (ValueError, TypeError):
            continue
        if keep is None:
            continue
        written = {first_home} if first_home else set()
        for raw in policy.get("copies") if isinstance(policy.get("copies"), list) else []:
            try:
                written.update(resolve_copy_target(doc, home, parse_copy_target(raw)))
            except ValueError:
                continue
        for loc_name in sorted(written - {None}, key=str):
            retain = locks.get(loc_name)
            if retain and retain > keep:
                yield ("datasets", name, "policies", i, "keep"), (
                    f"keep {policy.get('keep')!r} is shorter than the Object Lock of location "
                    f"{loc_name!r} ({_mapping(storage[loc_name])['object_lock']['retain']}): prune "
                    "could not delete on time; lengthen keep or shorten the lock's retain")


def _check_implicit_locks(doc: dict, regions: set) -> Iterator[Issue]:
    """An Object Lock without ``retain`` takes the shortest time-based ``keep`` of the
    policies writing to its location; there must be one."""
    storage = _mapping(doc.get("storage"))
    implicit = [n for n, l in storage.items()
                if isinstance(l, dict) and isinstance(l.get("object_lock"), dict) and "retain" not in l["object_lock"]]
    if not implicit:
        return
    timed: set = set()
    for ds in _mapping(doc.get("datasets")).values():
        ds = _mapping(ds)
        home = ds.get("region")
        if not isinstance(home, str) or (regions and home not in regions):
            continue
        first_home = next((n for n, l in storage.items()
                           if isinstance(l, dict) and not l.get("offsite") and l.get("region") == home), None)
        for policy in ds.get("policies") if isinstance(ds.get("policies"), list) else []:
            policy = _mapping(policy)
            try:
                if parse_retention(policy.get("keep")).keep_seconds is None:
                    continue
            except (ValueError, TypeError):
                continue
            timed.add(first_home)
            for raw in policy.get("copies") if isinstance(policy.get("copies"), list) else []:
                try:
                    timed.update(resolve_copy_target(doc, home, parse_copy_target(raw)))
                except ValueError:
                    continue
    for name in implicit:
        if name not in timed:
            yield ("storage", name, "object_lock"), (
                "object_lock has no 'retain' and no policy with a time-based keep writes here, so "
                "the lock's length cannot come from the plan; give 'retain'")
