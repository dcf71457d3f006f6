-- The (query, pin) pairs that passed the privacy threshold, with the query's traffic.
--
-- In:   passing_pairs (query_pairs.sql), query_traffic (query_parts.sql).
-- Params: $use_users  false: the users column is NULL (the input had no user_id).
-- Out:  query, pin_id, events, engaged_events, users, score, country, query_traffic (the query's
--       events over all pins of this input, passing or not), ordered by pin_id, query.
SELECT q.query,
       q.pin_id,
       CAST(q.events AS BIGINT) AS events,
       CAST(q.engaged_events AS BIGINT) AS engaged_events,
       CASE WHEN $use_users THEN q.users END AS users,
       CAST(q.score AS DOUBLE) AS score,
       q.country,
       t.events AS query_traffic
FROM passing_pairs AS q
JOIN query_traffic AS t USING (query)
ORDER BY q.pin_id, q.query
