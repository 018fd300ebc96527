-- Source table and views of the Nexmark suite (nexmark-flink ddl_gen.sql +
-- ddl_views.sql), with the `nexmark` datagen connector replaced by the
-- filesystem connector over the NDJSON file of `sluice nexmark gen` (see
-- docs/NEXMARK.md, "The NDJSON file format"). nexmark_flink.py replaces
-- __INPUT_PATH__ with the file's absolute path.
--
-- Only the object of the event's type is present on a line; the JSON format
-- reads the absent ones as NULL rows. Timestamps use Flink SQL's default
-- format 'yyyy-MM-dd HH:mm:ss.SSS' (json.timestamp-format.standard = SQL).

CREATE TABLE datagen (
    event_type INT,
    person ROW<
        id BIGINT,
        name VARCHAR,
        emailAddress VARCHAR,
        creditCard VARCHAR,
        city VARCHAR,
        state VARCHAR,
        `dateTime` TIMESTAMP(3),
        extra VARCHAR>,
    auction ROW<
        id BIGINT,
        itemName VARCHAR,
        description VARCHAR,
        initialBid BIGINT,
        reserve BIGINT,
        `dateTime` TIMESTAMP(3),
        expires TIMESTAMP(3),
        seller BIGINT,
        category BIGINT,
        extra VARCHAR>,
    bid ROW<
        auction BIGINT,
        bidder BIGINT,
        price BIGINT,
        channel VARCHAR,
        url VARCHAR,
        `dateTime` TIMESTAMP(3),
        extra VARCHAR>,
    `dateTime` AS
        CASE
            WHEN event_type = 0 THEN person.`dateTime`
            WHEN event_type = 1 THEN auction.`dateTime`
            ELSE bid.`dateTime`
        END,
    WATERMARK FOR `dateTime` AS `dateTime` - INTERVAL '4' SECOND
) WITH (
    'connector' = 'filesystem',
    'path' = '__INPUT_PATH__',
    'format' = 'json',
    'json.fail-on-missing-field' = 'false',
    'json.ignore-parse-errors' = 'false',
    'json.timestamp-format.standard' = 'SQL'
);

CREATE VIEW person AS
SELECT
    person.id,
    person.name,
    person.emailAddress,
    person.creditCard,
    person.city,
    person.state,
    `dateTime`,
    person.extra
FROM datagen WHERE event_type = 0;

CREATE VIEW auction AS
SELECT
    auction.id,
    auction.itemName,
    auction.description,
    auction.initialBid,
    auction.reserve,
    `dateTime`,
    auction.expires,
    auction.seller,
    auction.category,
    auction.extra
FROM datagen WHERE event_type = 1;

CREATE VIEW bid AS
SELECT
    bid.auction,
    bid.bidder,
    bid.price,
    bid.channel,
    bid.url,
    `dateTime`,
    bid.extra
FROM datagen WHERE event_type = 2;

-- q12 and q13 need a processing-time attribute on the bids.
CREATE VIEW bid_proctime AS
SELECT
    auction,
    bidder,
    price,
    channel,
    url,
    `dateTime`,
    extra,
    PROCTIME() AS p_time
FROM bid;
