-- The (query, pin) pairs that passed the privacy threshold, with the query's traffic.
--
-- In:   query_pairs (query_pairs.sql), query_names, query_traffic (query_parts.sql).
-- Params: $use_users  false: the users column is NULL (the input had no user_id).
-- Out:  query, pin_id, events, engaged_events, users, score, country, query_traffic (the query's
--       events over all pins of this input, kept or not), ordered by pin_id, query.
SELECT n.query,
       q.pin_id,
       CAST(q.events AS BIGINT) AS events,
       CAST(q.engaged_events AS BIGINT) AS engaged_events,
       CASE WHEN $use_users THEN q.users END AS users,
       CAST(q.score AS DOUBLE) AS score,
       q.country,
       t.events AS query_traffic
FROM query_pairs AS q
JOIN query_names AS n USING (qid)
JOIN query_traffic AS t USING (query)
WHERE q.kept
ORDER BY q.pin_id, n.query
