-- The sha256 of a pin's five sources: what its texts are made of. Two feature rows with the same
-- content_sha256 give the same texts under the same text layout and budgets.
--
-- In:   features (title, description, caption VARCHAR; boards, queries VARCHAR[]), registered by
--       pinfeatures.buildfolder.
-- Params: none.
-- Out:  content_sha256 (lowercase hex) over the JSON array [title, description, caption, boards,
--       queries] (null stays null, a list keeps its order), one row per input row, in input order.
SELECT sha256(to_json([to_json(title), to_json(description), to_json(caption), to_json(boards), to_json(queries)])) AS content_sha256
FROM features
