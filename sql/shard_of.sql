-- The shard of each row's pin, for a sharded build (pinfeatures/build/shard.py).
--
-- In:   ids(pin_id VARCHAR), in row order.
-- Params: $n  the number of shards.
-- Out:  shard (UINTEGER) per row, in row order: the first 32 bits of md5(pin_id) (hex digest of
--       the UTF-8 id) modulo $n, i.e. int(hashlib.md5(pin_id.encode()).hexdigest()[:8], 16) % n.
--       md5 is the same in every DuckDB, Python and Spark version (DuckDB's hash() may change).
--       A NULL pin id goes to shard 0: such a row is rejected whatever its shard.
SELECT CAST(coalesce(CAST(('0x' || md5(pin_id)[1:8]) AS UBIGINT) % $n, 0) AS UINTEGER) AS shard
FROM ids
