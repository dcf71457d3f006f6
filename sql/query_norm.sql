-- Normalised form of every distinct raw query, computed once per distinct string.
--
-- In:   engagements(query, ...): valid rows; normalize_phrase(VARCHAR): Python UDF
--       (pinfeatures.textnorm: NFKC, case fold, e-mail/phone/URL scrub, whitespace collapse).
-- Out:  TEMP TABLE query_norm(raw_query, query); query = '' when the raw query was nothing but
--       personal data (those events are dropped and counted in the manifest).
CREATE OR REPLACE TEMP TABLE query_norm AS
SELECT raw.query AS raw_query,
       normalize_phrase(raw.query) AS query
FROM (SELECT DISTINCT query FROM engagements) AS raw
