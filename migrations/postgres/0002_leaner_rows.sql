-- The SSA was stored three times per client: in `metadata` (as the response's
-- `software_statement`), raw, and decoded. `metadata` keeps it; the other two copies went.
ALTER TABLE clients DROP COLUMN software_statement, DROP COLUMN ssa_claims;
