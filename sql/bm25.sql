-- BM25 scores of (query, pin) pairs, one corpus per variant. Used by pinfeatures/evaluate/lexical.py.
--
-- In:   (registered by lexical.bm25_scores)
--       docs(variant, pin_id, tokens VARCHAR[])   every non-empty text of the variant: the corpus
--       queries(query, tokens VARCHAR[])          tokenised the same way as the texts
--       pairs(pair_id, variant, query, pin_id)    the pairs to score
-- Params: $k1, $b.
-- Out:  pair_id, score (DOUBLE); 0 for a pair whose text shares no term with the query,
--       NULL when the pin has no (non-empty) text in that variant.
--
-- score(q, d) = sum over query tokens t (repeats count) of
--     idf(t) * tf(t, d) * (k1 + 1) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl))
-- idf(t)  = ln(1 + (N - n(t) + 0.5) / (n(t) + 0.5))   (Lucene's form: never negative)
-- N, avgdl, n(t) are counted over the variant's corpus.
WITH
qterms AS (
    SELECT query, unnest(tokens) AS term FROM queries
),
vocab AS (
    SELECT DISTINCT term FROM qterms
),
stats AS (
    SELECT variant, count(*)::DOUBLE AS n_docs, avg(len(tokens))::DOUBLE AS avgdl
    FROM docs GROUP BY variant
),
-- only occurrences of terms some query uses matter; the semi-join keeps this small
doc_terms AS (
    SELECT t.variant, t.pin_id, t.term
    FROM (SELECT variant, pin_id, unnest(tokens) AS term FROM docs) AS t
    SEMI JOIN vocab ON t.term = vocab.term
),
df AS (
    SELECT variant, term, count(DISTINCT pin_id)::DOUBLE AS n_t
    FROM doc_terms GROUP BY variant, term
),
judged_docs AS (
    SELECT DISTINCT variant, pin_id FROM pairs
),
tf AS (
    SELECT d.variant, d.pin_id, d.term, count(*)::DOUBLE AS tf
    FROM doc_terms AS d
    SEMI JOIN judged_docs AS j ON d.variant = j.variant AND d.pin_id = j.pin_id
    GROUP BY d.variant, d.pin_id, d.term
),
doc_len AS (
    SELECT d.variant, d.pin_id, len(d.tokens)::DOUBLE AS dl
    FROM docs AS d
    SEMI JOIN judged_docs AS j ON d.variant = j.variant AND d.pin_id = j.pin_id
),
term_scores AS (
    SELECT p.pair_id,
           ln(1.0 + (s.n_docs - df.n_t + 0.5) / (df.n_t + 0.5))
             * tf.tf * ($k1 + 1.0)
             / (tf.tf + $k1 * (1.0 - $b + $b * dl.dl / s.avgdl)) AS term_score
    FROM pairs AS p
    JOIN qterms AS q ON q.query = p.query
    JOIN tf ON tf.variant = p.variant AND tf.pin_id = p.pin_id AND tf.term = q.term
    JOIN df ON df.variant = p.variant AND df.term = q.term
    JOIN doc_len AS dl ON dl.variant = p.variant AND dl.pin_id = p.pin_id
    JOIN stats AS s ON s.variant = p.variant
)
SELECT p.pair_id,
       CASE WHEN any_value(dl.dl) IS NULL THEN NULL          -- no text: not a document
            ELSE coalesce(sum(ts.term_score), 0.0) END::DOUBLE AS score
FROM pairs AS p
LEFT JOIN doc_len AS dl ON dl.variant = p.variant AND dl.pin_id = p.pin_id
LEFT JOIN term_scores AS ts ON ts.pair_id = p.pair_id
GROUP BY p.pair_id
ORDER BY p.pair_id
