-- DuckDB against the Iceberg REST catalog, data in Shoal.
INSTALL httpfs; LOAD httpfs;
INSTALL iceberg; LOAD iceberg;

CREATE SECRET shoal (
    TYPE s3, KEY_ID 'admin', SECRET 'password', REGION 'us-east-1',
    ENDPOINT 'shoal:9000', URL_STYLE 'path', USE_SSL false
);

ATTACH 'warehouse' AS lake (TYPE iceberg, ENDPOINT 'http://rest:8181', AUTHORIZATION_TYPE 'none');

-- Plain Parquet on Shoal works too:
COPY (SELECT range AS id, 'row ' || range AS label FROM range(1000)) TO 's3://warehouse/raw/numbers.parquet';
SELECT count(*) AS rows, max(id) AS max_id FROM read_parquet('s3://warehouse/raw/numbers.parquet');
