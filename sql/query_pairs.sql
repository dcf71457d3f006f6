-- Every (query, pin) pair, scored, and the pairs that pass the privacy threshold.
--
-- In:   raw_pairs (query_norm.sql); query_remap(raw_query, query): each raw query whose normal
--       form differs from it ('' when scrubbing left nothing: its events are dropped and counted
--       in the manifest); engagements(query, pin_id, action, user_id, country, locale) and
--       action_weights as for query_norm.sql (user_id, country, locale NULL when the input has no
--       such column).
-- Params: $min_users  the privacy threshold k;
--         $use_users  true: k distinct users; false (no user_id column): k engaged events;
--         $all_queries  true (a shard): every query's users and locales are wanted (query_parts.sql).
-- Out:  TEMP TABLE remap_moves(raw_query, query): the raw queries whose pairs move or merge: each
--       one remapped, and each normal form one is remapped to that is not remapped itself;
--       TEMP TABLE query_pairs(query, pin_id, events, engaged_events, score): raw_pairs, renamed,
--       under their normalised query (raw queries that normalise alike fall together), all events
--       (impressions too) summed, none with an empty query; scrubbed_empty(events): the events of
--       the raw queries scrubbing emptied; moved_pairs: a step;
--       TEMP TABLE pair_users(query, pin_id, user_id): one row per distinct user with an engaged
--       event through the pair, for every pair of the queries that have a pair that can pass
--       (engaged_events >= k: a pair has at most that many users), or of every query with
--       $all_queries; empty without $use_users;
--       TEMP TABLE candidate_raw(raw_query, query): the raw queries of those queries;
--       TEMP VIEW candidate_events(query, pin_id, action, user_id, country, locale): their events;
--       TEMP TABLE candidate_parts(query, pin_id, country, locale, events): their events grouped
--       by pin, country and locale as written, what the country and locale votes read (with
--       $all_queries, one row per raw form of the query: the readers sum them);
--       TEMP TABLE passing_pairs(query, pin_id, events, engaged_events, users, score, country):
--       the pairs that pass the threshold, with their distinct users over engaged events (0
--       without $use_users) and their most frequent country (ties by name; NULL when no event
--       has one); passing and country_votes are its steps.
-- Rules: impressions alone never qualify a query (engaged_events > 0).
-- Why the events are read again: distinct users need every engaged event's user, and the votes
--       every event's country and locale, but only for the queries that can pass (1M-pin
--       benchmark: 7.6k of 3.9M queries): a second and third read of just their events costs less
--       than carrying user, country and locale through the grouping of every event.
-- Why most groups are kept as they are: 99.8% of raw queries are their own normal form and no
--       other raw query normalises to them; their (raw query, pin) groups are already the pairs.
CREATE OR REPLACE TEMP TABLE remap_moves AS
SELECT raw_query, query
FROM query_remap
UNION ALL
SELECT DISTINCT m.query AS raw_query, m.query
FROM query_remap AS m
ANTI JOIN query_remap AS own ON own.raw_query = m.query
WHERE m.query <> '';

-- raw_pairs become query_pairs in place: the groups of the raw queries that move go, and come back
-- regrouped under their normal form (a copy of every group cost 0.5 s of the benchmark's 5.3M;
-- this, 0.1 s). The events that scrubbing emptied are counted first, for the manifest.
CREATE OR REPLACE TEMP TABLE scrubbed_empty AS
SELECT coalesce(sum(r.events), 0) AS events
FROM raw_pairs AS r
JOIN query_remap AS m USING (raw_query)
WHERE m.query = '';

CREATE OR REPLACE TEMP TABLE moved_pairs AS
SELECT m.query, r.pin_id, CAST(sum(r.events) AS BIGINT) AS events,
       CAST(sum(r.engaged_events) AS BIGINT) AS engaged_events, sum(r.score) AS score
FROM raw_pairs AS r
JOIN remap_moves AS m USING (raw_query)
WHERE m.query <> ''
GROUP BY m.query, r.pin_id;

-- (no raw query is null or blank: validate.py rejects those rows, empty_query)
DELETE FROM raw_pairs
WHERE raw_query IN (SELECT raw_query FROM remap_moves);

INSERT INTO raw_pairs SELECT * FROM moved_pairs;

ALTER TABLE raw_pairs RENAME TO query_pairs;

ALTER TABLE query_pairs RENAME raw_query TO query;

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

-- the events of those queries, under their query: read twice, by the two statements after (one
-- materialised read for both cost more, 2.5 s against 1.8 on the 1M-pin benchmark)
CREATE OR REPLACE TEMP VIEW candidate_events AS
SELECT c.query, e.pin_id, e.action, e.user_id, e.country, e.locale
FROM engagements AS e
JOIN candidate_raw AS c ON e.query = c.raw_query
SEMI JOIN action_weights AS w ON e.action = w.action;

CREATE OR REPLACE TEMP TABLE pair_users AS
SELECT DISTINCT query, pin_id, user_id
FROM candidate_events
WHERE $use_users AND action <> 'impression' AND user_id IS NOT NULL;

-- by pin, country and locale. A shard wants every query: there the events are grouped by their
-- raw query and moved by the small remap after (a join of every event to every raw query cost
-- half as much again)
CREATE OR REPLACE TEMP TABLE candidate_parts AS
SELECT query, pin_id, country, locale, count(*) AS events
FROM candidate_events
WHERE NOT $all_queries
GROUP BY query, pin_id, country, locale
UNION ALL
SELECT coalesce(m.query, r.raw_query) AS query, r.pin_id, r.country, r.locale, r.events
FROM (SELECT e.query AS raw_query, e.pin_id, e.country, e.locale, count(*) AS events
      FROM engagements AS e
      SEMI JOIN action_weights AS w ON e.action = w.action
      WHERE $all_queries
      GROUP BY e.query, e.pin_id, e.country, e.locale) AS r
LEFT JOIN query_remap AS m USING (raw_query)
WHERE $all_queries AND coalesce(m.query, r.raw_query) <> '';

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
