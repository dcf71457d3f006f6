-- Every (query, pin) pair, scored, and the pairs that pass the privacy threshold.
--
-- In:   raw_parts (query_norm.sql); query_remap(raw_query, query): each raw query whose normal
--       form differs from it ('' when scrubbing left nothing: its events are dropped and counted
--       in the manifest); engagements(query, pin_id, action, user_id) and action_weights as for
--       query_norm.sql (user_id NULL when the input has no such column).
-- Params: $min_users  the privacy threshold k;
--         $use_users  true: k distinct users; false (no user_id column): k engaged events;
--         $all_queries  true (a shard): every query's users are wanted (query_parts.sql).
-- Out:  TEMP VIEW pair_parts(query, pin_id, country, locale, events, engaged_events, score):
--       raw_parts under their normalised query (raw queries that normalise alike fall together),
--       none with an empty query;
--       TEMP TABLE query_pairs(query, pin_id, events, engaged_events, score): every pair, all
--       events (impressions too) summed;
--       TEMP TABLE pair_users(query, pin_id, user_id): one row per distinct user with an engaged
--       event through the pair, for every pair of the queries that have a pair that can pass
--       (engaged_events >= k: a pair has at most that many users), or of every query with
--       $all_queries; empty without $use_users;
--       TEMP TABLE candidate_raw(raw_query, query): the raw queries of those queries;
--       TEMP VIEW candidate_parts(query, pin_id, country, locale, events): their raw_parts;
--       TEMP TABLE passing_pairs(query, pin_id, events, engaged_events, users, score, country):
--       the pairs that pass the threshold, with their distinct users over engaged events (0
--       without $use_users) and their most frequent country (ties by name; NULL when no event
--       has one); passing and country_votes are its steps.
-- Rules: impressions alone never qualify a query (engaged_events > 0).
-- Why the users come apart: distinct users need every engaged event's user, a second read of the
--       events; only the events of queries that can pass are read (1M-pin benchmark: 7.6k of
--       3.9M queries), and of those, only the engaged ones.
CREATE OR REPLACE TEMP VIEW pair_parts AS
SELECT coalesce(m.query, r.raw_query) AS query,
       r.pin_id, r.country, r.locale, r.events, r.engaged_events, r.score
FROM raw_parts AS r
LEFT JOIN query_remap AS m USING (raw_query)
WHERE coalesce(m.query, r.raw_query) <> '';

CREATE OR REPLACE TEMP TABLE query_pairs AS
SELECT query, pin_id, sum(events) AS events, sum(engaged_events) AS engaged_events, sum(score) AS score
FROM pair_parts
GROUP BY query, pin_id;

-- the raw queries of those queries: the ones remapped to them, and each query itself (a normal
-- form is its own: it is never remapped, and it is a raw query too wherever one was typed so)
CREATE OR REPLACE TEMP TABLE candidate_raw AS
WITH candidates AS (
    SELECT DISTINCT query
    FROM query_pairs
    WHERE $all_queries OR (engaged_events > 0 AND engaged_events >= $min_users)
)
SELECT m.raw_query, m.query
FROM query_remap AS m
SEMI JOIN candidates AS c USING (query)
UNION ALL
SELECT query AS raw_query, query
FROM candidates;

CREATE OR REPLACE TEMP TABLE pair_users AS
SELECT DISTINCT c.query, e.pin_id, e.user_id
FROM engagements AS e
JOIN candidate_raw AS c ON e.query = c.raw_query
SEMI JOIN action_weights AS w ON e.action = w.action
WHERE $use_users AND e.action <> 'impression' AND e.user_id IS NOT NULL;

-- raw_parts of those queries, under their query (a join to a few thousand raw queries, not a
-- map of every one): what the country and locale votes read
CREATE OR REPLACE TEMP VIEW candidate_parts AS
SELECT c.query, r.pin_id, r.country, r.locale, r.events
FROM raw_parts AS r
JOIN candidate_raw AS c USING (raw_query);

CREATE OR REPLACE TEMP TABLE passing AS
WITH users AS (
    SELECT query, pin_id, count(*) AS users
    FROM pair_users
    GROUP BY query, pin_id
)
SELECT p.query, p.pin_id, p.events, p.engaged_events, coalesce(u.users, 0) AS users, p.score
FROM query_pairs AS p
LEFT JOIN users AS u USING (query, pin_id)
-- a pair has at most as many users as engaged events: that cheap test first, before the join
WHERE p.engaged_events > 0 AND p.engaged_events >= $min_users
  AND (CASE WHEN $use_users THEN coalesce(u.users, 0) ELSE p.engaged_events END) >= $min_users;

-- the country vote of the passing pairs only (an ordered aggregate over every pair costs
-- seconds): events per country, the most of them, the first country by name among those. Hash
-- aggregates and joins of tables, all of which DuckDB can spill (an ordered aggregate, or a
-- CTE read twice, it holds in memory)
CREATE OR REPLACE TEMP TABLE country_votes AS
SELECT query, pin_id, country, sum(events) AS events
FROM candidate_parts
SEMI JOIN passing USING (query, pin_id)
WHERE country IS NOT NULL
GROUP BY query, pin_id, country;

CREATE OR REPLACE TEMP TABLE passing_pairs AS
WITH countries AS (
    SELECT v.query, v.pin_id, min(v.country) AS country
    FROM country_votes AS v
    JOIN (SELECT query, pin_id, max(events) AS events FROM country_votes GROUP BY query, pin_id) AS top USING (query, pin_id, events)
    GROUP BY v.query, v.pin_id
)
SELECT p.*, c.country
FROM passing AS p
LEFT JOIN countries AS c USING (query, pin_id);
