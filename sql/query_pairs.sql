-- Every (query, pin) pair, scored, with the privacy verdict.
--
-- In:   engagements(query, pin_id, action, user_id, country): valid rows (user_id / country are
--       NULL when the input has no such column); query_norm (query_norm.sql);
--       action_weights(action, weight): one row per action (config `action_weights`).
-- Params: $min_users  the privacy threshold k;
--         $use_users  true: k distinct users; false (no user_id column): k engaged events.
-- Out:  TEMP TABLE query_pairs: query, pin_id, events (all), engaged_events (non-impression),
--       users (distinct users over engaged events), score (action-weighted events), country
--       (most frequent, ties by name), kept (passes the threshold).
-- Rules: impressions alone never qualify a query (engaged_events > 0); a query that is empty
--       after scrubbing is dropped. Scores are summed as DECIMAL so the sum, and so every tie,
--       is the same whatever order the threads add in.
CREATE OR REPLACE TEMP TABLE query_pairs AS
WITH events AS (
    SELECT e.pin_id,
           n.query,
           CAST(w.weight AS DECIMAL(18, 6)) AS weight,
           e.action <> 'impression' AS engaged,
           e.user_id,
           e.country
    FROM engagements AS e
    JOIN query_norm AS n ON e.query = n.raw_query
    JOIN action_weights AS w ON e.action = w.action
    WHERE n.query <> ''
),
per_country AS (
    -- one row per (query, pin, country) first, so the country vote needs no second pass
    SELECT query, pin_id, country,
           count(*) AS events,
           count(*) FILTER (WHERE engaged) AS engaged_events,
           sum(weight) AS score
    FROM events
    GROUP BY query, pin_id, country
),
per_pair AS (
    SELECT query, pin_id,
           sum(events) AS events,
           sum(engaged_events) AS engaged_events,
           sum(score) AS score,
           first(country ORDER BY events DESC, country ASC) FILTER (WHERE country IS NOT NULL) AS country
    FROM per_country
    GROUP BY query, pin_id
),
users AS (
    SELECT query, pin_id, count(DISTINCT user_id) AS users
    FROM events
    WHERE engaged
    GROUP BY query, pin_id
)
SELECT p.query,
       p.pin_id,
       p.events,
       p.engaged_events,
       coalesce(u.users, 0) AS users,
       p.score,
       p.country,
       p.engaged_events > 0
         AND (CASE WHEN $use_users THEN coalesce(u.users, 0) ELSE p.engaged_events END) >= $min_users AS kept
FROM per_pair AS p
LEFT JOIN users AS u USING (query, pin_id)
