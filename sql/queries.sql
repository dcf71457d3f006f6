-- One row per normalised query that passes the privacy rule, with its traffic and locale language.
--
-- In:   query_traffic, query_users, query_locales (query_parts.sql: of the whole input, or every
--       shard's rows together: rows of one query from several shards add up here);
--       kept_pairs(query, pin_id, score): the privacy-passing (query, pin) pairs.
-- Params: $use_users  false: users is NULL (the input had no user_id);
--         $top_pins   how many pins to list per query.
-- Out:  query, events (all events of the query, over every pin), engaged_events (non-impression),
--       users (distinct users over engaged events), locale_language (the language subtag of the
--       events' most frequent well-formed `locale`, lower case, `zh` as langdetect's zh-cn/zh-tw;
--       ties by code; NULL when no event has one), top_pins (the query's privacy-passing pins by
--       action-weighted engagement, ties by pin_id, at most $top_pins); ordered by events DESC, query.
-- Rule: a query is in the table only if at least one of its (query, pin) pairs passed the
--       threshold (kept in query_pairs.sql), so every query here is in query_pins.parquet.
WITH passing AS (
    SELECT query, list(pin_id ORDER BY score DESC, pin_id ASC)[1:$top_pins] AS top_pins
    FROM kept_pairs
    GROUP BY query
),
traffic AS (
    SELECT query, sum(events) AS events, sum(engaged_events) AS engaged_events
    FROM query_traffic
    WHERE query IN (SELECT query FROM passing)
    GROUP BY query
),
users AS (
    SELECT query, count(DISTINCT user_id) AS users
    FROM query_users
    WHERE query IN (SELECT query FROM passing)
    GROUP BY query
),
locale_language AS (
    SELECT query, first(lang ORDER BY n DESC, lang ASC) AS locale_language
    FROM (SELECT query, lang, sum(n) AS n FROM query_locales WHERE query IN (SELECT query FROM passing) GROUP BY query, lang)
    GROUP BY query
)
SELECT t.query,
       CAST(t.events AS BIGINT) AS events,
       CAST(t.engaged_events AS BIGINT) AS engaged_events,
       CASE WHEN $use_users THEN CAST(coalesce(u.users, 0) AS BIGINT) END AS users,
       l.locale_language,
       p.top_pins
FROM traffic AS t
JOIN passing AS p USING (query)
LEFT JOIN users AS u USING (query)
LEFT JOIN locale_language AS l USING (query)
ORDER BY t.events DESC, t.query ASC
