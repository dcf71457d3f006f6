-- Every distinct raw query, to be normalised once each.
--
-- In:   engagements(query, ...): valid rows.
-- Out:  raw_query, events: one row per distinct value (NULL included), with its number of events.
--       aggregate.py normalises the column in one call of pinfeatures.build.scrub.normalize_phrases
--       (NFKC, case fold, e-mail/phone/URL scrub, whitespace collapse) and registers, for the SQL
--       that follows, query_norm(raw_query, events, qid) and query_names(qid, query): qid is an
--       integer id of the normalised query (raw queries that normalise alike share it), NULL when
--       the raw query was nothing but personal data (those events are dropped and counted in the
--       manifest). One call, not the normalize_phrase UDF: DuckDB hands a UDF 2,048 rows at a
--       time, and a long-tail log has millions of distinct queries.
SELECT query AS raw_query, count(*) AS events
FROM engagements
GROUP BY query
