-- Top search queries per pin.
--
-- In:   passing_pairs (query_pairs.sql): the scored pairs that pass the privacy threshold.
-- Params: $top_k  how many queries to keep per pin.
-- Out:  pin_id, queries: the pin's passing queries by action-weighted engagement (highest first),
--       ties broken by the query text so every build ranks them the same way, at most $top_k.
SELECT pin_id,
       list(query ORDER BY score DESC, query ASC)[1:$top_k] AS queries
FROM passing_pairs
GROUP BY pin_id
