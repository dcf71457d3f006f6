-- The events grouped once by (raw query, pin), and the raw queries that need normalising.
--
-- In:   engagements(query, pin_id, action): valid rows; action_weights(action, weight): one row
--       per action (config `action_weights`).
-- Params: $normal_pattern, $normal_max_chars, $normal_excluded_word: the rule of
--         pinfeatures.build.scrub.normal_phrases (a raw query it holds is its own normal form).
-- Out:  TEMP TABLE raw_pairs(raw_query, pin_id, events, engaged_events, score): the events grouped
--       by raw query and pin; engaged_events the non-impression ones, score the action-weighted
--       events, summed as DECIMAL so the sum, and so every tie, is the same whatever order the
--       threads add in;
--       and, returned: raw_query, every distinct raw query the rule cannot vouch for. aggregate.py
--       normalises those in one call of normalize_phrases (NFKC, case fold, e-mail/phone/URL
--       scrub, whitespace collapse) and registers query_remap(raw_query, query) for the ones whose
--       normal form differs ('' when nothing is left after scrubbing), for query_pairs.sql.
-- Why:  the tens of millions of events of a real log are read and grouped once, by the floor's
--       keys, raw query and pin (1M-pin benchmark: 20M events, 5.3M groups); everything after
--       works on these groups. Country and locale are not keys here: only the queries that can
--       pass need them, and query_pairs.sql reads them for those alone (as keys here they cost
--       a third more, and a regrouping of every group to take them out again). Most raw queries
--       are typed in normal form (99.8% of the benchmark's 3.9M distinct queries): the rule's one
--       regex test keeps them out of the normalising, and the few that change are moved by a
--       small map (query_pairs.sql), the rest of the groups kept as they are.
CREATE OR REPLACE TEMP TABLE raw_pairs AS
SELECT e.query AS raw_query,
       e.pin_id,
       count(*) AS events,
       count(*) FILTER (WHERE e.action <> 'impression') AS engaged_events,
       sum(CAST(w.weight AS DECIMAL(18, 6))) AS score
FROM engagements AS e
JOIN action_weights AS w ON e.action = w.action
GROUP BY e.query, e.pin_id;

SELECT DISTINCT raw_query
FROM raw_pairs
WHERE raw_query IS NOT NULL
  AND NOT (length(raw_query) <= $normal_max_chars
           AND regexp_full_match(raw_query, $normal_pattern)
           AND NOT contains(raw_query, $normal_excluded_word))
