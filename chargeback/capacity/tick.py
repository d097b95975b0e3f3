"""One meter-capacity tick: read the cluster, measure, record once per schedule minute.

cron-connector calls once a minute, with an empty body, and never retries, so
the tick converges: it bills the time since the previous completed tick
(capped at MAX_GAP_SECONDS; longer gaps are kept for audit), is idempotent for
its slot, and records nothing when the Kubernetes API fails (503, and the next
tick makes it good).

The slot is the minute of the database's clock, never the pod's: replicas
with drifting clocks agree, and no slot ahead of the database clock is ever
recorded (one would refuse every later tick until its time). The caller takes
the slot's lock before it reads the cluster, so concurrent callers of one
minute list the cluster once.
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone

from chargeback.capacity import holdings as capacity
from chargeback.capacity import kube
from chargeback.capacity import store as capacity_store
from chargeback.core import db, jsonbody
from chargeback.core.responses import RequestError
from chargeback.core.settings import Settings

MAX_WARNINGS_SHOWN = 20


def ready(settings: Settings, environ: Mapping[str, str]) -> None:
    """What meter-capacity cannot work without (checked at start): a database and
    access to a Kubernetes API."""
    db.configured(settings)
    kube.configured(settings, environ)


def tick_slot(now: datetime) -> datetime:
    """The schedule minute `now` falls in, UTC."""
    if now.tzinfo is None:
        raise ValueError("tick times are timezone-aware")
    return now.astimezone(timezone.utc).replace(second=0, microsecond=0)


def requested_now(body: bytes, settings: Settings) -> datetime | None:
    """The time the caller names (`{"now": "<RFC 3339>"}`, ALLOW_CLOCK_OVERRIDE only), or None
    for the database clock.

    The override exists for the demo and tests (a month of ticks in seconds);
    it is off by default and absent from stack.yml, because whoever can call
    the function could otherwise bill any time they like. Even then it may
    only name a past minute (run_tick refuses one ahead of the database clock).
    """
    try:
        payload = jsonbody.parse(body, empty=None)
    except jsonbody.JsonBodyError as exc:
        raise RequestError(400, "body: expected empty (as cron-connector sends) or JSON; "
                                f"{exc}") from None
    if not isinstance(payload, dict) or "now" not in payload:
        return None
    if not settings.allow_clock_override:
        raise RequestError(403, "now: the clock override is disabled "
                                "(ALLOW_CLOCK_OVERRIDE is not true); send an empty body")
    try:
        chosen = datetime.fromisoformat(str(payload["now"]).replace("Z", "+00:00"))
        chosen.astimezone(timezone.utc)  # year 1 east of UTC, 9999 west of it: no UTC minute
    except (ValueError, OverflowError):
        chosen = None
    if chosen is None or chosen.tzinfo is None:
        raise RequestError(400, "now: expected an RFC 3339 time with a zone, "
                                "e.g. 2026-10-01T00:00:00Z")
    return chosen


def rules(settings: Settings) -> capacity.Rules:
    return capacity.Rules(annotation_prefix=settings.tenant_annotation_prefix,
                          node_label_keys=settings.tenant_node_labels,
                          exclude_namespaces=settings.exclude_namespaces)


def measure_cluster(settings: Settings, *, decode_models: bool = False) -> capacity.Reading:
    cluster = kube.read_cluster(settings, decode_models=decode_models)
    return capacity.measure(cluster.namespaces, cluster.nodes, cluster.persistentvolumeclaims,
                            cluster.services, rules(settings))


IN_PROGRESS = "in progress: another call is metering this minute"
VOIDED = "slot ahead of the database clock: billed time that had not happened"


def run_tick(settings: Settings, requested: datetime | None = None, *,
             decode_models: bool = False) -> dict:
    """Meter the current minute of the database clock (or the past minute `requested` names);
    the summary a caller (and the log) sees.

    decode_models: the client's model deserialisation (scripts/bench/meter's baseline).
    """
    with db.transaction(settings) as conn:
        database_slot = tick_slot(capacity_store.database_now(conn))
        slot = database_slot if requested is None else tick_slot(requested)
        if slot > database_slot:
            raise RequestError(400, f"now: {_iso(slot)} is ahead of the database clock "
                                    f"({_iso(database_slot)}); a tick bills time that has passed")
        if not capacity_store.lock_slot(conn, slot):
            return summary(capacity_store.TickOutcome(slot, False, reason=IN_PROGRESS), None,
                           settings)
        done = capacity_store.already_metered(conn, slot)
        if done is not None and done.previous_slot > database_slot:
            capacity_store.void_ticks_after(conn, database_slot, VOIDED)
            done = capacity_store.already_metered(conn, slot)
        if done is not None:
            return summary(done, None, settings)
        reading = measure_cluster(settings, decode_models=decode_models)  # raises: no write
        outcome = capacity_store.record_tick(conn, slot, reading, settings.max_gap_seconds)
    return summary(outcome, reading if outcome.recorded else None, settings)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def summary(outcome: capacity_store.TickOutcome, reading: capacity.Reading | None,
            settings: Settings) -> dict:
    body: dict = {"slot": _iso(outcome.slot), "recorded": outcome.recorded}
    if not outcome.recorded:
        body["reason"] = outcome.reason
        return body
    gaps = []
    if outcome.elapsed_seconds is not None and outcome.elapsed_seconds > outcome.billed_seconds:
        gaps.append({"from": _iso(outcome.previous_slot), "to": _iso(outcome.slot),
                     "elapsed_seconds": outcome.elapsed_seconds,
                     "billed_seconds": outcome.billed_seconds,
                     "unbilled_seconds": outcome.elapsed_seconds - outcome.billed_seconds})
    body.update({
        "previous_slot": _iso(outcome.previous_slot),
        "billed_seconds": outcome.billed_seconds,
        "note": None if outcome.previous_slot else "first tick: a baseline, nothing billed",
        "tenants": len(reading.tenants),
        "nodes": {"dedicated": reading.dedicated_nodes, "not_ready": reading.not_ready_nodes},
        "samples": outcome.samples,
        "holdings": {"opened": outcome.holdings_opened, "closed": outcome.holdings_closed},
        "gaps": gaps,
        "max_gap_seconds": settings.max_gap_seconds,
        "warnings": list(reading.warnings[:MAX_WARNINGS_SHOWN]),
        "warnings_total": len(reading.warnings),
    })
    if body["note"] is None:
        del body["note"]
    return body
