-- Per-query facts of one input (or one shard of it), in a form that adds up over shards.
--
-- In:   query_pairs, pair_parts (query_pairs.sql), query_names(qid, query).
-- Params: $all_queries  true (a shard): every query, since a query may pass the threshold through
--         another shard's pin; false (the whole input): only the queries with a kept pair here,
--         the only ones queries.sql reads (a fraction of a long-tail log's distinct queries).
-- Out:  TEMP TABLE query_traffic(query, events, engaged_events): each query's events over this
--       input's pins (kept pairs or not), for the queries $all_queries asks for;
--       TEMP TABLE query_users(query, user_id): the distinct users with an engaged event through
--       the query;
--       TEMP TABLE query_locales(query, lang, n): events per language subtag of a well-formed
--       `locale` (en_US, fr-FR, pt_BR.UTF-8, zh-Hant-TW -> en, fr, pt, zh-tw).
-- Why parts: a query's pins are spread over the shards of a sharded build; sums, a union of
--       distinct users and summed locale votes give the whole input's answer (queries.sql).
-- Work is keyed by qid (an integer, query_pairs.sql); the text is joined on last.
CREATE OR REPLACE TEMP TABLE part_queries AS
SELECT DISTINCT qid FROM query_pairs WHERE $all_queries OR kept;

CREATE OR REPLACE TEMP TABLE query_traffic AS
SELECT n.query, t.events, t.engaged_events
FROM (SELECT qid, CAST(sum(events) AS BIGINT) AS events, CAST(sum(engaged_events) AS BIGINT) AS engaged_events
      FROM query_pairs
      SEMI JOIN part_queries USING (qid)
      GROUP BY qid) AS t
JOIN query_names AS n USING (qid);

CREATE OR REPLACE TEMP TABLE query_users AS
SELECT n.query, u.user_id
FROM (SELECT DISTINCT qid, user_id
      FROM pair_parts
      SEMI JOIN part_queries USING (qid)
      WHERE row_kind = 'user') AS u
JOIN query_names AS n USING (qid);

-- the locale is lower-cased and parsed once per (query, locale), not once per event
CREATE OR REPLACE TEMP TABLE query_locales AS
SELECT n.query, l.lang, l.n
FROM (SELECT qid,
             CASE WHEN lang <> 'zh' THEN lang
                  WHEN regexp_matches(locale, '[-_](tw|hk|mo|hant)([-_.@]|$)') THEN 'zh-tw'
                  ELSE 'zh-cn' END AS lang,
             CAST(sum(n) AS BIGINT) AS n
      FROM (SELECT qid, locale, n,
                   regexp_extract(locale, '^([a-z]{2,3})([-_][a-z0-9]{1,8})*(\.[a-z0-9-]+)?(@[a-z0-9]+)?$', 1) AS lang
            FROM (SELECT qid, lower(trim(locale)) AS locale, sum(events) AS n
                  FROM pair_parts
                  SEMI JOIN part_queries USING (qid)
                  WHERE row_kind = 'events' AND locale IS NOT NULL
                  GROUP BY qid, lower(trim(locale))))
      WHERE lang <> ''
      GROUP BY ALL) AS l
JOIN query_names AS n USING (qid);
