-- q13: bounded side input join. Each bid joined with a side table that maps
-- key k (0..9999) to 'nexmark-side-<k>', on auction mod 10000;
-- nexmark_flink.py writes the CSV file and replaces __SIDE_INPUT_PATH__.
--
-- Differs from the suite: the suite's q13 is a processing-time lookup join,
--   FROM (SELECT *, PROCTIME() AS p_time FROM bid) B
--   JOIN side_input FOR SYSTEM_TIME AS OF B.p_time AS S ON ...
-- over a table of the legacy 'connector.type' = 'filesystem' connector
-- (CsvTableSource, which could serve lookups). That connector is gone from
-- Flink 2.x, and the 'filesystem' connector is not a lookup source: Flink
-- plans FOR SYSTEM_TIME AS OF over it as a temporal join against a versioned
-- table, and rejects it (it needs a primary key and an event-time attribute;
-- processing-time temporal joins are not supported). So this is a regular
-- streaming inner join with the bounded side table. Same output (the side
-- table has one row per key), but the join keeps every bid in its state, in
-- case a matching side row arrives later, so q13's memory grows with the
-- number of bids, unlike a lookup join.
CREATE TABLE side_input (
    `key` BIGINT,
    `value` VARCHAR
) WITH (
    'connector' = 'filesystem',
    'path' = '__SIDE_INPUT_PATH__',
    'format' = 'csv'
);

CREATE TABLE nexmark_q13 (
    auction BIGINT,
    bidder BIGINT,
    price BIGINT,
    `dateTime` TIMESTAMP(3),
    `value` VARCHAR
) WITH (
    'connector' = 'blackhole'
);

INSERT INTO nexmark_q13
SELECT B.auction, B.bidder, B.price, B.`dateTime`, S.`value`
FROM bid AS B
JOIN side_input AS S
ON MOD(B.auction, 10000) = S.`key`;
