-- Webhook URLs may no longer carry userinfo (`https://user:pass@host/`): the URL is shown in
-- the log, `events list`, the admin API and `check-config`. Deliveries stored before hold the
-- URL as configured then; strip its userinfo, so that no password stays in the database and
-- the row matches the webhook as it must now be configured. The URLs were written by the `url`
-- crate, which percent-encodes `@` and `/` inside userinfo, so userinfo is exactly what lies
-- between `://` and an `@` that comes before the first `/` of the rest.
UPDATE event_deliveries
SET webhook = regexp_replace(webhook, '^([A-Za-z][A-Za-z0-9+.-]*://)[^/@]*@', '\1')
WHERE webhook ~ '^[A-Za-z][A-Za-z0-9+.-]*://[^/@]*@';
