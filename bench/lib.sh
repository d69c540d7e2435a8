# Sourced by bench/run.sh, bench/ab.sh and bench/ab-rfc7591.sh: what every run starts from.

# A fresh database for the next server: PostgreSQL's tables dropped when DCR_DATABASE_URL is
# set, else the SQLite file removed.
fresh_database() {
  if [ -n "${DCR_DATABASE_URL:-}" ]; then
    psql "$DCR_DATABASE_URL" -q -c \
      'DROP TABLE IF EXISTS as_compensations, as_registrations, event_deliveries, events,
         audit_log, tokens, jtis, clients, _sqlx_migrations CASCADE;
       DROP FUNCTION IF EXISTS audit_log_append_only()'
  else
    rm -f data/bench.db data/bench.db-wal data/bench.db-shm
  fi
}
