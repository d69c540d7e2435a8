-- Webhook URLs may no longer carry userinfo (`https://user:pass@host/`): the URL is shown in
-- the log, `events list`, the admin API and `check-config`. Deliveries stored before hold the
-- URL as configured then; strip its userinfo, so that no password stays in the database and
-- the row matches the webhook as it must now be configured. The URLs were written by the `url`
-- crate, which percent-encodes `@` and `/` inside userinfo, so userinfo is exactly what lies
-- between `://` and the first `@` when that `@` comes before the first `/` of the rest.
UPDATE event_deliveries
SET webhook = substr(webhook, 1, instr(webhook, '://') + 2)
    || substr(webhook, instr(webhook, '@') + 1)
WHERE instr(webhook, '://') > 0
  AND instr(webhook, '@') > 0
  AND instr(webhook, '@') < instr(webhook, '://') + 2
      + instr(substr(webhook, instr(webhook, '://') + 3) || '/', '/');
