-- The token endpoint needs a client's registered grant types and scope on every request.
-- They were only inside `metadata` (the registered client as JSON) and were parsed per
-- request; now they are columns. Existing clients get them from that JSON, read the way the
-- token endpoint read it: the string elements of the `grant_types` array, in order and
-- space-separated (none when it is absent or not an array), and the `scope` string (empty when
-- absent or not a string). Metadata that is not JSON (the server never writes such) leaves
-- both empty, as the server would have refused such a client a token too, rather than
-- failing the migration.
ALTER TABLE clients
    ADD COLUMN grant_types TEXT NOT NULL DEFAULT '',
    ADD COLUMN scope TEXT NOT NULL DEFAULT '';

CREATE FUNCTION dcr_0003_jsonb(doc TEXT) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN doc::jsonb;
EXCEPTION WHEN others THEN
    RETURN NULL;
END;
$$;

UPDATE clients c SET
    grant_types = COALESCE((
        SELECT string_agg(g.value #>> '{}', ' ' ORDER BY g.n)
        FROM jsonb_array_elements(CASE WHEN jsonb_typeof(m.doc -> 'grant_types') = 'array'
            THEN m.doc -> 'grant_types' ELSE '[]'::jsonb END) WITH ORDINALITY AS g(value, n)
        WHERE jsonb_typeof(g.value) = 'string'), ''),
    scope = CASE WHEN jsonb_typeof(m.doc -> 'scope') = 'string' THEN m.doc ->> 'scope' ELSE '' END
FROM (SELECT client_id, dcr_0003_jsonb(metadata) AS doc FROM clients) m
WHERE m.client_id = c.client_id AND m.doc IS NOT NULL;

DROP FUNCTION dcr_0003_jsonb(TEXT);
