-- Top search queries per pin.
--
-- In:   query_pairs (query_pairs.sql): scored pairs with their privacy verdict; query_names.
-- Params: $top_k  how many queries to keep per pin.
-- Out:  pin_id, queries: the pin's kept queries by action-weighted engagement (highest first),
--       ties broken by the query text so every build ranks them the same way, at most $top_k.
SELECT pin_id,
       list(query ORDER BY score DESC, query ASC)[1:$top_k] AS queries
FROM query_pairs
JOIN query_names USING (qid)
WHERE kept
GROUP BY pin_id
