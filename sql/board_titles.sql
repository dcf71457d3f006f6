-- Board titles per pin.
--
-- In:   saves(pin_id, board_id) and boards(board_id, title): valid rows only (validate.py).
--       normalize_phrase(VARCHAR): Python UDF (pinfeatures.textnorm) that applies Unicode NFKC,
--       case folding, e-mail/phone/URL scrubbing and whitespace collapsing.
-- Params: $top_k  how many titles to keep per pin.
-- Out:  pin_id, boards: the normalised titles of the boards the pin was saved to, ranked by how
--       many saves put the pin in a board with that title (most first), ties broken by the title,
--       at most $top_k. Titles that are empty after scrubbing are not counted.
WITH title_norm AS (
    -- normalise each distinct raw title once, not once per board or save
    SELECT raw.title AS raw_title, normalize_phrase(raw.title) AS title
    FROM (SELECT DISTINCT title FROM boards WHERE title IS NOT NULL) AS raw
),
board_norm AS (
    SELECT b.board_id, n.title
    FROM boards AS b
    JOIN title_norm AS n ON b.title = n.raw_title
    WHERE n.title <> ''
),
title_saves AS (
    SELECT s.pin_id, bn.title, count(*) AS saves
    FROM saves AS s
    JOIN board_norm AS bn USING (board_id)
    GROUP BY s.pin_id, bn.title
)
SELECT pin_id,
       list(title ORDER BY saves DESC, title ASC)[1:$top_k] AS boards
FROM title_saves
GROUP BY pin_id
