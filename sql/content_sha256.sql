-- The sha256 of a pin's five sources: what its texts are made of. Two feature rows with the same
-- content_sha256 give the same texts under the same text layout and budgets.
--
-- In:   features (title, description, caption VARCHAR; boards, queries VARCHAR[]), registered by
--       pinfeatures.buildfolder.
-- Params: none.
-- Out:  content_sha256 (lowercase hex) of title, description, caption, boards, queries joined by
--       U+001F, list items joined by U+001E, a null value or list as U+0000; one row per input
--       row, in input order. Unambiguous because the text stage removes control characters from
--       every value (a plain join: about half the time of hashing a JSON rendering).
SELECT sha256(concat_ws(chr(31),
                        coalesce(title, chr(0)),
                        coalesce(description, chr(0)),
                        coalesce(caption, chr(0)),
                        coalesce(array_to_string(boards, chr(30)), chr(0)),
                        coalesce(array_to_string(queries, chr(30)), chr(0)))) AS content_sha256
FROM features
