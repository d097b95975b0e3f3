-- Capacity storage that grows with change, not with ticks.
--
-- capacity_ticks keeps one row per completed tick and now carries a running
-- total: billed_total_seconds is the sum of billed_seconds of every tick up
-- to and including this one. Billed time is a set of disjoint intervals
-- (slot - billed_seconds, slot]; B(t), "billed seconds before instant t", is
-- a non-decreasing function read from the first tick at or after t.
--
-- capacity_holdings replaces capacity_samples: one row per interval of
-- unchanged holding (tenant, meter, SKU, spot, units), opened at the first
-- tick that saw it and closed at the last tick that saw it unchanged. It
-- bills units x (closed_total_seconds - opened_total_seconds): exactly what
-- the per-tick samples it replaces billed, in one subtraction. An unchanged
-- cluster adds one tick row per tick and nothing else.

-- Before 006 the pod's clock chose the slot, so a replica whose clock jumped
-- (or the clock override) could record a slot ahead of real time, and every
-- later tick was refused until then. Such ticks bill time that had not
-- happened: they are voided (kept here for audit, with their rows), so the
-- next tick bills from the last real one, capped as usual. meter-capacity
-- voids the same way any tick it finds ahead of the database clock.
CREATE TABLE openfaas_metering.capacity_voided_ticks (
    tick       jsonb       NOT NULL,   -- the capacity_ticks row
    rows       jsonb       NOT NULL,   -- its capacity_samples, or the intervals it opened
    reason     text        NOT NULL,
    voided_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO openfaas_metering.capacity_voided_ticks (tick, rows, reason)
SELECT to_jsonb(t),
       coalesce((SELECT jsonb_agg(to_jsonb(s)) FROM openfaas_metering.capacity_samples s
                  WHERE s.slot = t.slot), '[]'),
       'slot ahead of the database clock when migration 006 ran'
  FROM openfaas_metering.capacity_ticks t
 WHERE t.slot > now();
DELETE FROM openfaas_metering.capacity_samples WHERE slot > now();
DELETE FROM openfaas_metering.capacity_ticks WHERE slot > now();

ALTER TABLE openfaas_metering.capacity_ticks ADD COLUMN billed_total_seconds bigint;
UPDATE openfaas_metering.capacity_ticks t
   SET billed_total_seconds = r.total
  FROM (SELECT slot, sum(billed_seconds) OVER (ORDER BY slot) AS total
          FROM openfaas_metering.capacity_ticks) r
 WHERE t.slot = r.slot;
ALTER TABLE openfaas_metering.capacity_ticks
    ALTER COLUMN billed_total_seconds SET NOT NULL,
    ADD CHECK (billed_total_seconds >= billed_seconds),
    -- digest of the tick's reading: the next tick skips comparing an identical one
    ADD COLUMN reading_sha256 bytea;
COMMENT ON COLUMN openfaas_metering.capacity_ticks.samples IS
    'holdings (tenant, meter, SKU, spot) billed by this tick';

CREATE TABLE openfaas_metering.capacity_holdings (
    namespace             text        NOT NULL,
    meter                 text        NOT NULL,
    sku                   text        NOT NULL DEFAULT '',
    spot                  boolean     NOT NULL DEFAULT false,
    units                 numeric     NOT NULL CHECK (units > 0),
    -- the first tick that saw it, and B() just before that tick's billed interval
    opened_slot           timestamptz NOT NULL REFERENCES openfaas_metering.capacity_ticks,
    opened_total_seconds  bigint      NOT NULL,
    -- the last tick that saw it unchanged, and that tick's billed_total_seconds;
    -- both NULL while the latest tick still sees it (the interval is open)
    last_slot             timestamptz REFERENCES openfaas_metering.capacity_ticks,
    closed_total_seconds  bigint,
    PRIMARY KEY (namespace, meter, sku, spot, opened_slot),
    CHECK ((last_slot IS NULL) = (closed_total_seconds IS NULL)),
    CHECK (last_slot >= opened_slot AND closed_total_seconds >= opened_total_seconds)
);
-- at most one open interval per holding; the tick compares the reading with these
CREATE UNIQUE INDEX capacity_holdings_open
    ON openfaas_metering.capacity_holdings (namespace, meter, sku, spot)
 WHERE last_slot IS NULL;
-- a window in the past reads only the intervals that end inside or after it
CREATE INDEX capacity_holdings_closed
    ON openfaas_metering.capacity_holdings (closed_total_seconds);

-- Convert capacity_samples: runs of consecutive ticks holding the same units
-- (gaps and islands over the tick sequence) become one interval each. The
-- first tick ever bills nothing and had no samples, so nothing is lost.
WITH ticks AS (
    SELECT slot, billed_seconds, billed_total_seconds,
           row_number() OVER (ORDER BY slot) AS n
      FROM openfaas_metering.capacity_ticks
), held AS (
    SELECT s.namespace, s.meter, s.sku, s.spot, s.units, t.slot, t.n,
           t.billed_seconds, t.billed_total_seconds,
           t.n - row_number() OVER (PARTITION BY s.namespace, s.meter, s.sku, s.spot, s.units
                                    ORDER BY t.n) AS run
      FROM openfaas_metering.capacity_samples s
      JOIN ticks t ON t.slot = s.slot
), runs AS (
    SELECT namespace, meter, sku, spot, units,
           min(slot) AS opened_slot, max(slot) AS last_slot, max(n) AS last_n,
           min(billed_total_seconds - billed_seconds) AS opened_total_seconds,
           max(billed_total_seconds) AS closed_total_seconds
      FROM held
     GROUP BY namespace, meter, sku, spot, units, run
)
INSERT INTO openfaas_metering.capacity_holdings
       (namespace, meter, sku, spot, units, opened_slot, opened_total_seconds,
        last_slot, closed_total_seconds)
SELECT namespace, meter, sku, spot, units, opened_slot, opened_total_seconds,
       CASE WHEN last_n < (SELECT max(n) FROM ticks) THEN last_slot END,
       CASE WHEN last_n < (SELECT max(n) FROM ticks) THEN closed_total_seconds END
  FROM runs;

DROP VIEW openfaas_metering.capacity_monthly;
DROP TABLE openfaas_metering.capacity_samples;

-- B(at): billed seconds before the instant `at`. The first tick at or after
-- `at` bills (slot - billed_seconds, slot]; the part of it after `at` is not
-- yet billed at `at`. After the latest tick, everything billed so far.
CREATE FUNCTION openfaas_metering.capacity_billed_before(at timestamptz)
RETURNS numeric LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        (SELECT t.billed_total_seconds - least(t.billed_seconds, extract(epoch FROM t.slot - at))
           FROM openfaas_metering.capacity_ticks t
          WHERE t.slot >= at
          ORDER BY t.slot LIMIT 1),
        (SELECT t.billed_total_seconds
           FROM openfaas_metering.capacity_ticks t
          ORDER BY t.slot DESC LIMIT 1),
        0)
$$;

-- The one read path for capacity (same signature and meaning as in 004):
-- unit-seconds per tenant, meter, SKU and spot flag for exactly the window
-- [from_ts, to_ts). A tick interval straddling an edge is split at it pro
-- rata by seconds (B() above), so a month in any time zone gets exactly its
-- own seconds. Exact NUMERIC; rows with nothing in the window are omitted.
CREATE OR REPLACE FUNCTION openfaas_metering.capacity_usage(from_ts timestamptz, to_ts timestamptz)
RETURNS TABLE (namespace text, meter text, sku text, spot boolean, unit_seconds numeric)
LANGUAGE sql STABLE AS $$
    WITH b AS MATERIALIZED (  -- evaluated once, not per row
        SELECT openfaas_metering.capacity_billed_before(from_ts) AS lo,
               openfaas_metering.capacity_billed_before(greatest(from_ts, to_ts)) AS hi
    ), edge AS MATERIALIZED (  -- the same bounds as whole seconds, for the indexes
        SELECT lo, hi, floor(lo)::bigint AS lo_floor, ceil(hi)::bigint AS hi_ceil FROM b
    ), part AS (
        SELECT h.namespace, h.meter, h.sku, h.spot,
               h.units * (least(coalesce(h.closed_total_seconds, e.hi), e.hi)
                          - greatest(h.opened_total_seconds, e.lo)) AS unit_seconds
          FROM openfaas_metering.capacity_holdings h, edge e
         WHERE h.opened_total_seconds < e.hi_ceil
           AND (h.closed_total_seconds IS NULL OR h.closed_total_seconds > e.lo_floor)
    )
    SELECT namespace, meter, sku, spot, sum(unit_seconds)
      FROM part
     WHERE unit_seconds > 0
     GROUP BY 1, 2, 3, 4
$$;

-- Hours per tenant, UTC calendar month, meter, SKU and spot flag, read
-- through capacity_usage (a tick straddling midnight on the 1st is split at
-- it). hours = unit_seconds / 3600, rounded by NUMERIC division where it
-- does not divide; unit_seconds is the exact figure.
CREATE VIEW openfaas_metering.capacity_monthly AS
WITH months AS (
    SELECT generate_series(
               date_trunc('month', min(slot - make_interval(secs => billed_seconds)), 'UTC'),
               max(slot), interval '1 month') AS period_start
      FROM openfaas_metering.capacity_ticks
)
SELECT u.namespace, m.period_start, u.meter, u.sku, u.spot, u.unit_seconds,
       u.unit_seconds / 3600 AS hours
  FROM months m,
       openfaas_metering.capacity_usage(m.period_start, m.period_start + interval '1 month') u;

-- "What did tenant X hold at instant M, and from which tick": the tick that
-- billed M is the first at or after it; every interval that tick saw.
CREATE FUNCTION openfaas_metering.capacity_held_at(tenant text, at timestamptz)
RETURNS TABLE (namespace text, meter text, sku text, spot boolean, units numeric,
               held_since_slot timestamptz, tick_slot timestamptz, billed boolean)
LANGUAGE sql STABLE AS $$
    SELECT h.namespace, h.meter, h.sku, h.spot, h.units, h.opened_slot, t.slot,
           at > t.slot - make_interval(secs => t.billed_seconds)
      FROM (SELECT slot, billed_seconds FROM openfaas_metering.capacity_ticks
             WHERE slot >= at ORDER BY slot LIMIT 1) t
      JOIN openfaas_metering.capacity_holdings h
        ON h.namespace = tenant AND h.opened_slot <= t.slot
       AND (h.last_slot IS NULL OR h.last_slot >= t.slot)
     ORDER BY h.meter, h.sku, h.spot
$$;
