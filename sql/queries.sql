-- One row per normalised query that passes the privacy rule, with its traffic and locale language.
--
-- In:   query_pairs (query_pairs.sql); engagements(query, action, user_id, locale): valid rows
--       (user_id / locale NULL when the input has no such column); query_norm (query_norm.sql);
--       action_weights(action, weight).
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
    FROM query_pairs
    WHERE kept
    GROUP BY query
),
traffic AS (
    SELECT query, sum(events) AS events, sum(engaged_events) AS engaged_events
    FROM query_pairs
    WHERE query IN (SELECT query FROM passing)
    GROUP BY query
),
events AS (
    -- the same events query_pairs.sql counts: a weighted action and a query that survived scrubbing
    SELECT n.query,
           e.action <> 'impression' AS engaged,
           e.user_id,
           lower(trim(e.locale)) AS locale
    FROM engagements AS e
    JOIN query_norm AS n ON e.query = n.raw_query
    JOIN action_weights AS w ON e.action = w.action
    WHERE n.query IN (SELECT query FROM passing)
),
users AS (
    SELECT query, count(DISTINCT user_id) FILTER (WHERE engaged) AS users
    FROM events
    GROUP BY query
),
locale_votes AS (
    -- en_US, fr-FR, pt_BR.UTF-8, zh-Hant-TW -> en, fr, pt, zh-tw; anything else is not a locale
    SELECT query,
           CASE WHEN lang <> 'zh' THEN lang
                WHEN regexp_matches(locale, '[-_](tw|hk|mo|hant)([-_.@]|$)') THEN 'zh-tw'
                ELSE 'zh-cn' END AS lang,
           count(*) AS n
    FROM (SELECT query, locale, regexp_extract(locale, '^([a-z]{2,3})([-_][a-z0-9]{1,8})*(\.[a-z0-9-]+)?(@[a-z0-9]+)?$', 1) AS lang
          FROM events
          WHERE locale IS NOT NULL)
    WHERE lang <> ''
    GROUP BY ALL
),
locale_language AS (
    SELECT query, first(lang ORDER BY n DESC, lang ASC) AS locale_language
    FROM locale_votes
    GROUP BY query
)
SELECT t.query,
       CAST(t.events AS BIGINT) AS events,
       CAST(t.engaged_events AS BIGINT) AS engaged_events,
       CASE WHEN $use_users THEN CAST(u.users AS BIGINT) END AS users,
       l.locale_language,
       p.top_pins
FROM traffic AS t
JOIN passing AS p USING (query)
JOIN users AS u USING (query)
LEFT JOIN locale_language AS l USING (query)
ORDER BY t.events DESC, t.query ASC
