-- meter-capacity: one row per completed tick, and per tick what each tenant held.
--
-- A tick's slot is its schedule minute (UTC). It bills the interval
-- (slot - billed_seconds, slot]: the time since the previous completed tick,
-- capped at MAX_GAP. The slot is the primary key, so a second call for the
-- same minute, or a second replica, records nothing (ticks are also taken
-- under an advisory lock, so a late call for an older minute records nothing
-- either). The first tick ever is a baseline and bills nothing.
CREATE TABLE openfaas_metering.capacity_ticks (
    slot             timestamptz PRIMARY KEY,
    previous_slot    timestamptz,
    elapsed_seconds  integer,             -- since previous_slot, uncapped (NULL: first tick)
    billed_seconds   integer NOT NULL CHECK (billed_seconds >= 0),
    tenants          integer NOT NULL,
    dedicated_nodes  integer NOT NULL,
    not_ready_nodes  integer NOT NULL,
    samples          integer NOT NULL,
    warnings         jsonb   NOT NULL DEFAULT '[]',
    recorded_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (slot = date_trunc('minute', slot))
);

-- Gaps longer than MAX_GAP: the outage is not billed beyond the cap, and is kept here.
CREATE VIEW openfaas_metering.capacity_gaps AS
SELECT previous_slot, slot, elapsed_seconds, billed_seconds,
       elapsed_seconds - billed_seconds AS unbilled_seconds
  FROM openfaas_metering.capacity_ticks
 WHERE elapsed_seconds > billed_seconds;

-- units held during the tick's interval (nodes, cores, GiB, GPUs, load
-- balancers); unit-hours are sum(units * seconds) / 3600, exact in NUMERIC.
-- Keyed by tenant first, so it distributes by namespace (Citus) like usage.
CREATE TABLE openfaas_metering.capacity_samples (
    namespace  text        NOT NULL,
    slot       timestamptz NOT NULL,
    seconds    integer     NOT NULL CHECK (seconds > 0),
    meter      text        NOT NULL,
    sku        text        NOT NULL DEFAULT '',
    spot       boolean     NOT NULL DEFAULT false,
    units      numeric     NOT NULL CHECK (units > 0),
    PRIMARY KEY (namespace, slot, meter, sku, spot)
);
-- month close reads one period for every tenant
CREATE INDEX capacity_samples_slot ON openfaas_metering.capacity_samples (slot);

-- Hours per tenant, UTC month, meter, SKU and spot flag. A tick belongs to
-- the month in which its interval starts: the tick at 00:00 on the 1st bills
-- the last minute of the month before.
CREATE VIEW openfaas_metering.capacity_monthly AS
SELECT namespace,
       date_trunc('month', (slot - make_interval(secs => seconds)) AT TIME ZONE 'UTC')
           AT TIME ZONE 'UTC' AS period_start,
       meter, sku, spot,
       sum(units * seconds) AS unit_seconds,
       sum(units * seconds) / 3600 AS hours
  FROM openfaas_metering.capacity_samples
 GROUP BY 1, 2, 3, 4, 5;
