-- DCR v3.3 and v3.4 are served beside v3.2. A client records the version it was registered
-- or last updated under, and so does each audit record of a registration or update. Every
-- client registered before this migration came through the v3.2 endpoint, the only one there
-- was; older audit records stay without a version (NULL), as nothing says which it was for
-- refusals.
ALTER TABLE clients ADD COLUMN dcr_version TEXT NOT NULL DEFAULT '3.2';
ALTER TABLE audit_log ADD COLUMN dcr_version TEXT;
