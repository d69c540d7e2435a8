-- The token endpoint needs a client's registered grant types and scope on every request.
-- They were only inside `metadata` (the registered client as JSON) and were parsed per
-- request; now they are columns. Existing clients get them from that JSON, read the way the
-- token endpoint read it: the string elements of the `grant_types` array, in order and
-- space-separated (none when it is absent or not an array), and the `scope` string (empty when
-- absent or not a string). Metadata that is not JSON (the server never writes such) leaves
-- both empty, as the server would have refused such a client a token too.
ALTER TABLE clients ADD COLUMN grant_types TEXT NOT NULL DEFAULT '';
ALTER TABLE clients ADD COLUMN scope TEXT NOT NULL DEFAULT '';
UPDATE clients SET
    grant_types = CASE WHEN json_type(metadata, '$.grant_types') = 'array' THEN COALESCE(
        (SELECT group_concat(value, ' ' ORDER BY key)
         FROM json_each(metadata, '$.grant_types') WHERE type = 'text'),
        '') ELSE '' END,
    scope = CASE WHEN json_type(metadata, '$.scope') = 'text'
        THEN json_extract(metadata, '$.scope') ELSE '' END
WHERE json_valid(metadata);
