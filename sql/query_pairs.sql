-- Every (query, pin) pair, scored, with the privacy verdict.
--
-- In:   engagements(query, pin_id, action, user_id, country, locale): valid rows (user_id,
--       country and locale are NULL when the input has no such column); query_norm(raw_query,
--       events, qid) and query_names(qid, query) (query_norm.sql; qid: an integer id of the
--       normalised query, NULL when scrubbing left nothing); action_weights(action, weight): one row per action (config
--       `action_weights`).
-- Params: $min_users  the privacy threshold k;
--         $use_users  true: k distinct users; false (no user_id column): k engaged events.
-- Out:  TEMP TABLE pair_parts: the events, grouped, in two kinds of rows (row_kind):
--         'events': qid, pin_id, country, locale (as written), events, engaged_events
--                   (non-impression), score (action-weighted events);
--         'user':   qid, pin_id, user_id: one row per distinct user with an engaged event
--                   through the pair (the other columns NULL);
--       TEMP TABLE query_pairs: qid, pin_id, events (all), engaged_events, users
--       (distinct users over engaged events), score, country (most frequent, ties by name; NULL
--       unless kept: no output shows another pair's), kept (passes the threshold).
-- Rules: impressions alone never qualify a query (engaged_events > 0); a query that is empty
--       after scrubbing is dropped. Scores are summed as DECIMAL so the sum, and so every tie,
--       is the same whatever order the threads add in.
-- Why one table of two kinds: joining every event (a real log has tens of millions) to its
--       normalised query is the costly part; DuckDB streams the joined events to both halves of
--       the UNION ALL at once, and everything after (here and in query_parts.sql) reads the
--       groups, not the events.
-- Why qid: the joined events are materialised once for the two halves and grouped twice; an
--       integer key in place of the query text makes both cost half (1M-pin benchmark: 5.6 ->
--       3.8 s). Readers join query_names for the text of the pairs they show (the kept ones).
CREATE OR REPLACE TEMP TABLE pair_parts AS
WITH events AS (
    SELECT n.qid,
           e.pin_id,
           e.country,
           e.locale,
           e.user_id,
           CAST(w.weight AS DECIMAL(18, 6)) AS weight,
           e.action <> 'impression' AS engaged
    FROM engagements AS e
    JOIN query_norm AS n ON e.query = n.raw_query
    JOIN action_weights AS w ON e.action = w.action
    WHERE n.qid IS NOT NULL
)
SELECT 'events' AS row_kind, qid, pin_id, country, locale, NULL::VARCHAR AS user_id,
       count(*) AS events,
       count(*) FILTER (WHERE engaged) AS engaged_events,
       sum(weight) AS score
FROM events
GROUP BY qid, pin_id, country, locale
UNION ALL
SELECT DISTINCT 'user', qid, pin_id, NULL, NULL, user_id, NULL, NULL, NULL
FROM events
WHERE engaged AND user_id IS NOT NULL;

CREATE OR REPLACE TEMP TABLE query_pairs AS
WITH per_pair AS (
    SELECT qid, pin_id,
           sum(events) AS events,
           sum(engaged_events) AS engaged_events,
           sum(score) AS score
    FROM pair_parts
    WHERE row_kind = 'events'
    GROUP BY qid, pin_id
),
users AS (
    SELECT qid, pin_id, count(*) AS users
    FROM pair_parts
    WHERE row_kind = 'user'
    GROUP BY qid, pin_id
),
pairs AS (
    SELECT p.qid,
           p.pin_id,
           p.events,
           p.engaged_events,
           coalesce(u.users, 0) AS users,
           p.score,
           p.engaged_events > 0
             AND (CASE WHEN $use_users THEN coalesce(u.users, 0) ELSE p.engaged_events END) >= $min_users AS kept
    FROM per_pair AS p
    LEFT JOIN users AS u USING (qid, pin_id)
),
countries AS (
    -- the vote of the kept pairs only: an ordered aggregate over every pair costs seconds
    SELECT qid, pin_id, first(country ORDER BY events DESC, country ASC) AS country
    FROM (SELECT qid, pin_id, country, sum(events) AS events
          FROM pair_parts
          SEMI JOIN (SELECT qid, pin_id FROM pairs WHERE kept) AS k USING (qid, pin_id)
          WHERE row_kind = 'events' AND country IS NOT NULL
          GROUP BY qid, pin_id, country)
    GROUP BY qid, pin_id
)
SELECT p.*, c.country
FROM pairs AS p
LEFT JOIN countries AS c USING (qid, pin_id);
