-- 9 statements of the shared SQL, rendered for snowflake

CREATE SCHEMA IF NOT EXISTS activation;

CREATE TABLE IF NOT EXISTS activation.consent_intake (consent_id VARCHAR PRIMARY KEY, customer_id BIGINT, subject_key VARCHAR NOT NULL, purpose VARCHAR NOT NULL, status VARCHAR NOT NULL, recorded_at TIMESTAMPNTZ NOT NULL, source VARCHAR, notice_version VARCHAR);

CREATE TABLE IF NOT EXISTS activation.source_views (view_name VARCHAR PRIMARY KEY, definition VARCHAR NOT NULL);

CREATE TABLE IF NOT EXISTS activation.request_intake (request_id VARCHAR PRIMARY KEY, customer_id BIGINT, subject_key VARCHAR, request_type VARCHAR NOT NULL, received_at TIMESTAMPNTZ NOT NULL);

SELECT * FROM crm.contacts AS s LIMIT 0;

SELECT * FROM (SELECT * FROM shop.order_lines WHERE line_type = 'SALE') AS s LIMIT 0;

SELECT * FROM (SELECT * FROM shop.order_lines WHERE line_type = 'RETURN') AS s LIMIT 0;

SELECT * FROM web.events AS s LIMIT 0;

SELECT * FROM cmp.consent_events AS s LIMIT 0;

SELECT * FROM support.privacy_tickets AS s LIMIT 0;

SELECT table_name FROM information_schema.tables WHERE table_catalog = CURRENT_DATABASE() AND table_schema = ? AND table_type = 'VIEW';

SELECT view_name, definition FROM activation.source_views;
