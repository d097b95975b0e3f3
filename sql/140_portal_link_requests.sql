-- tenant-portal's "send me a new link": when each tenant last had one mailed, so that
-- one is sent at most every few minutes per tenant, across every replica (the rate
-- limit is one conditional upsert; nothing else is kept).
CREATE TABLE openfaas_metering.portal_link_requests (
    namespace text PRIMARY KEY,
    last_sent_at timestamptz NOT NULL,
    sent_count bigint NOT NULL DEFAULT 1
);
