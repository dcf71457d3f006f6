-- Privacy and scrubbing counts for the manifest.
--
-- In:   scrubbed_empty, query_pairs, passing_pairs (query_pairs.sql).
-- Out:  one row: events_query_scrubbed_empty (events dropped because the query was nothing but
--       an e-mail, phone number or URL), query_pin_pairs (pairs with a non-empty query),
--       query_pin_pairs_kept (pairs past the privacy threshold), impression_only_pairs.
SELECT
    (SELECT events FROM scrubbed_empty) AS events_query_scrubbed_empty,
    (SELECT count(*) FROM query_pairs) AS query_pin_pairs,
    (SELECT count(*) FROM passing_pairs) AS query_pin_pairs_kept,
    (SELECT count(*) FROM query_pairs WHERE engaged_events = 0) AS impression_only_pairs
