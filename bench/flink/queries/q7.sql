-- q7: highest bid. Per 10 s tumbling window, the bid(s) with the highest
-- price.
--
-- Differs from the suite's q7.sql only in the order of the selected columns:
-- the suite selects (auction, price, bidder, ...) into a sink declared as
-- (auction, bidder, price, ...), i.e. it writes the price into the bidder
-- column and vice versa. Same work, columns in the declared order here.
CREATE TABLE nexmark_q7 (
    auction BIGINT,
    bidder BIGINT,
    price BIGINT,
    `dateTime` TIMESTAMP(3),
    extra VARCHAR
) WITH (
    'connector' = 'blackhole'
);

INSERT INTO nexmark_q7
SELECT B.auction, B.bidder, B.price, B.`dateTime`, B.extra
FROM bid AS B
JOIN (
    SELECT MAX(price) AS maxprice, window_end AS `dateTime`
    FROM TABLE(
        TUMBLE(TABLE bid, DESCRIPTOR(`dateTime`), INTERVAL '10' SECOND))
    GROUP BY window_start, window_end
) AS B1
ON B.price = B1.maxprice
WHERE B.`dateTime` BETWEEN B1.`dateTime` - INTERVAL '10' SECOND AND B1.`dateTime`;
