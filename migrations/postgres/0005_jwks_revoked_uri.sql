-- The directory's revoked keys reach /token and the management endpoints: a client keeps its
-- SSA's software_jwks_revoked_endpoint (NULL when the SSA named none, and for every client
-- registered before this migration until its next update), so that a request reads one
-- column instead of parsing the stored metadata.
ALTER TABLE clients ADD COLUMN jwks_revoked_uri TEXT;
