-- Per-query facts of one input (or one shard of it), in a form that adds up over shards.
--
-- In:   query_pairs, pair_users, candidate_parts, passing_pairs (query_pairs.sql).
-- Params: $all_queries  true (a shard): every query, since a query may pass the threshold through
--         another shard's pin; false (the whole input): only the queries with a passing pair
--         here, the only ones queries.sql reads (a fraction of a long-tail log's distinct queries).
-- Out:  TEMP TABLE query_traffic(query, events, engaged_events): each query's events over this
--       input's pins (passing pairs or not), for the queries $all_queries asks for;
--       TEMP TABLE query_users(query, user_id): the users with an engaged event through the query
--       (each once with $all_queries; once per pin otherwise);
--       TEMP TABLE query_locales(query, lang, n): events per language subtag of a well-formed
--       `locale` (en_US, fr-FR, pt_BR.UTF-8, zh-Hant-TW -> en, fr, pt, zh-tw).
-- Why parts: a query's pins are spread over the shards of a sharded build; sums, a union of
--       distinct users and summed locale votes give the whole input's answer (queries.sql).
CREATE OR REPLACE TEMP TABLE part_queries AS
SELECT query FROM query_pairs WHERE $all_queries
UNION  -- distinct
SELECT query FROM passing_pairs;

CREATE OR REPLACE TEMP TABLE query_traffic AS
SELECT query, CAST(sum(events) AS BIGINT) AS events, CAST(sum(engaged_events) AS BIGINT) AS engaged_events
FROM query_pairs
SEMI JOIN part_queries USING (query)
GROUP BY query;

-- pair_users holds every user of these queries: each has a passing pair ($all_queries: every
-- query with an engaged event, and a query without one has no users). A shard's parts are made
-- distinct (they are written out); the whole input's are only counted, distinct, by queries.sql.
CREATE OR REPLACE TEMP TABLE query_users AS
SELECT DISTINCT query, user_id
FROM pair_users
SEMI JOIN part_queries USING (query)
WHERE $all_queries
UNION ALL
SELECT query, user_id
FROM pair_users
SEMI JOIN part_queries USING (query)
WHERE NOT $all_queries;

-- the locale is lower-cased and parsed once per (query, locale), not once per group of candidate_parts
-- (MATERIALIZED: DuckDB would otherwise push the parse below the grouping)
CREATE OR REPLACE TEMP TABLE query_locales AS
WITH votes AS MATERIALIZED (
    SELECT query, lower(trim(locale)) AS locale, sum(events) AS n
    FROM candidate_parts
    SEMI JOIN part_queries USING (query)
    WHERE locale IS NOT NULL
    GROUP BY query, lower(trim(locale))
)
SELECT query,
       CASE WHEN lang <> 'zh' THEN lang
            WHEN regexp_matches(locale, '[-_](tw|hk|mo|hant)([-_.@]|$)') THEN 'zh-tw'
            ELSE 'zh-cn' END AS lang,
       CAST(sum(n) AS BIGINT) AS n
FROM (SELECT query, locale, n,
             regexp_extract(locale, '^([a-z]{2,3})([-_][a-z0-9]{1,8})*(\.[a-z0-9-]+)?(@[a-z0-9]+)?$', 1) AS lang
      FROM votes)
WHERE lang <> ''
GROUP BY ALL;
