-- Per-query facts of one input (or one shard of it), in a form that adds up over shards.
--
-- In:   query_pairs (query_pairs.sql); query_events (query_events.sql).
-- Out:  TEMP TABLE query_traffic(query, events, engaged_events): each query's events over this
--       input's pins (kept pairs or not);
--       TEMP TABLE query_users(query, user_id): the distinct users with an engaged event through
--       the query;
--       TEMP TABLE query_locales(query, lang, n): events per language subtag of a well-formed
--       `locale` (en_US, fr-FR, pt_BR.UTF-8, zh-Hant-TW -> en, fr, pt, zh-tw).
-- Why parts: a query's pins are spread over the shards of a sharded build; sums, a union of
--       distinct users and summed locale votes give the whole input's answer (queries.sql).
CREATE OR REPLACE TEMP TABLE query_traffic AS
SELECT query, CAST(sum(events) AS BIGINT) AS events, CAST(sum(engaged_events) AS BIGINT) AS engaged_events
FROM query_pairs
GROUP BY query;

CREATE OR REPLACE TEMP TABLE query_users AS
SELECT DISTINCT query, user_id
FROM query_events
WHERE engaged AND user_id IS NOT NULL;

CREATE OR REPLACE TEMP TABLE query_locales AS
SELECT query,
       CASE WHEN lang <> 'zh' THEN lang
            WHEN regexp_matches(locale, '[-_](tw|hk|mo|hant)([-_.@]|$)') THEN 'zh-tw'
            ELSE 'zh-cn' END AS lang,
       CAST(count(*) AS BIGINT) AS n
FROM (SELECT query, locale, regexp_extract(locale, '^([a-z]{2,3})([-_][a-z0-9]{1,8})*(\.[a-z0-9-]+)?(@[a-z0-9]+)?$', 1) AS lang
      FROM query_events
      WHERE locale IS NOT NULL)
WHERE lang <> ''
GROUP BY ALL;

