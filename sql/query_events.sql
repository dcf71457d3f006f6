-- The engagement events that count for a query's users and locale (query_parts.sql reads them).
--
-- In:   engagements(query, action, user_id, locale): valid rows (user_id / locale NULL when the
--       input has no such column); query_norm (query_norm.sql); action_weights(action, weight);
--       query_pairs (query_pairs.sql).
-- Params: $all_queries  true (a shard): every query's events, since a query may pass the threshold
--         through another shard's pin; false (the whole input): only the events of queries with a
--         kept pair here, the only ones queries.sql reads (a fraction of a long-tail log).
-- Out:  TEMP TABLE query_events(query, engaged, user_id, locale).
-- the same events query_pairs.sql counts: a weighted action and a query that survived scrubbing
CREATE OR REPLACE TEMP TABLE query_events AS
SELECT n.query,
       e.action <> 'impression' AS engaged,
       e.user_id,
       lower(trim(e.locale)) AS locale
FROM engagements AS e
JOIN query_norm AS n ON e.query = n.raw_query
JOIN action_weights AS w ON e.action = w.action
WHERE n.query <> ''
  AND ($all_queries OR n.query IN (SELECT query FROM query_pairs WHERE kept));
