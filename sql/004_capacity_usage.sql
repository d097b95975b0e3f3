-- The one read path for capacity: unit-seconds per tenant, meter, SKU and spot
-- flag for exactly the window [from_ts, to_ts). A tick bills the interval
-- (slot - seconds, slot]; an interval that straddles either edge of the window
-- is split at it pro rata by seconds, so a month in any time zone gets
-- exactly its own seconds. Month close, the demo and every report read
-- capacity only through this function (its storage may change beneath it).
CREATE FUNCTION openfaas_metering.capacity_usage(from_ts timestamptz, to_ts timestamptz)
RETURNS TABLE (namespace text, meter text, sku text, spot boolean, unit_seconds numeric)
LANGUAGE sql STABLE AS $$
    SELECT s.namespace, s.meter, s.sku, s.spot,
           sum(s.units * extract(epoch FROM
                   least(s.slot, to_ts) - greatest(s.slot - make_interval(secs => s.seconds), from_ts)))
      FROM openfaas_metering.capacity_samples s
     WHERE s.slot > from_ts
       AND s.slot - make_interval(secs => s.seconds) < to_ts
     GROUP BY 1, 2, 3, 4
$$;
