-- A client row (its metadata holds the SSA, 3-5 KB of JSON) is kept in its heap page, not moved
-- to the TOAST table: above the default 2 KB target every registration first tried to pglz-
-- compress the metadata (base64 barely compresses, so it failed), then wrote it out of line as
-- chunks with their own index entries, and every read of the client fetched them back. Rows
-- over the new target (a page) are still compressed and moved out of line as before. New and
-- updated rows only; existing ones move on their next update.
ALTER TABLE clients SET (toast_tuple_target = 8160);
