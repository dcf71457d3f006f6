-- The sha256 of every text, exactly as written (UTF-8 bytes), in input order.
--
-- In:   texts (text VARCHAR), registered by pinfeatures.buildfolder.
-- Params: none.
-- Out:  text_sha256 (lowercase hex), one row per input row, in the input's order (the
--       connection keeps insertion order for this projection).
SELECT sha256(text) AS text_sha256
FROM texts
