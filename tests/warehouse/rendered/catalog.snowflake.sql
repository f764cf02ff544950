-- 15 statements of the shared SQL, rendered for snowflake

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

SELECT COUNT(*), MIN(k) FROM (SELECT s."contact_id" AS k FROM crm.contacts AS s WHERE NOT s."contact_id" IS NULL GROUP BY s."contact_id" HAVING COUNT(*) > 1);

SELECT * FROM activation.src_customers LIMIT 0;

SELECT * FROM activation.src_events LIMIT 0;

SELECT DISTINCT CAST("action" AS VARCHAR) AS t FROM web.events AS s WHERE NOT "action" IS NULL ORDER BY t LIMIT 201;

SELECT CAST(s."consent_status" AS VARCHAR) AS v, COUNT(*) FROM cmp.consent_events AS s WHERE CAST(s."consent_status" AS VARCHAR) IS NULL OR NOT CAST(s."consent_status" AS VARCHAR) IN ('OPT_IN', 'OPT_OUT') GROUP BY CAST(s."consent_status" AS VARCHAR) ORDER BY v;

SELECT CAST(s."purpose_name" AS VARCHAR) AS v, COUNT(*) FROM cmp.consent_events AS s WHERE CAST(s."purpose_name" AS VARCHAR) IS NULL OR NOT CAST(s."purpose_name" AS VARCHAR) IN ('newsletter', 'personalised_ads') GROUP BY CAST(s."purpose_name" AS VARCHAR) ORDER BY v;
