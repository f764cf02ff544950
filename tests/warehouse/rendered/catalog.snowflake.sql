-- 14 statements of the shared SQL, rendered for snowflake

CREATE SCHEMA IF NOT EXISTS activation;

CREATE TABLE IF NOT EXISTS activation.consent_intake (consent_id VARCHAR PRIMARY KEY, customer_id BIGINT, subject_key VARCHAR NOT NULL, purpose VARCHAR NOT NULL, status VARCHAR NOT NULL, recorded_at TIMESTAMPNTZ NOT NULL, source VARCHAR, notice_version VARCHAR);

CREATE TABLE IF NOT EXISTS activation.source_views (view_name VARCHAR PRIMARY KEY, definition VARCHAR NOT NULL);

CREATE TABLE IF NOT EXISTS activation.request_intake (request_id VARCHAR PRIMARY KEY, customer_id BIGINT, subject_key VARCHAR, request_type VARCHAR NOT NULL, received_at TIMESTAMPNTZ NOT NULL);

SELECT * FROM (SELECT c.customer_id, c.email, c.country, c.country_name, c.created_at, c.last_contact_at, l.loyalty_tier, l.lifetime_value, l.preferred_store FROM customers AS c LEFT JOIN crm.loyalty AS l ON l.customer_ref = c.customer_id) AS s LIMIT 0;

SELECT * FROM events AS s LIMIT 0;

SELECT * FROM web.events AS s LIMIT 0;

SELECT * FROM consents AS s LIMIT 0;

SELECT * FROM privacy_requests AS s LIMIT 0;

SELECT table_schema || '.' || table_name FROM information_schema.tables WHERE table_catalog = CURRENT_DATABASE() AND table_schema = ? AND table_type = 'VIEW';

SELECT view_name, definition FROM activation.source_views;

SELECT COUNT(*), MIN(k) FROM (SELECT s."customer_id" AS k FROM (SELECT c.customer_id, c.email, c.country, c.country_name, c.created_at, c.last_contact_at, l.loyalty_tier, l.lifetime_value, l.preferred_store FROM customers AS c LEFT JOIN crm.loyalty AS l ON l.customer_ref = c.customer_id) AS s WHERE NOT s."customer_id" IS NULL GROUP BY s."customer_id" HAVING COUNT(*) > 1);

SELECT * FROM activation.src_customers LIMIT 0;

SELECT * FROM activation.src_events LIMIT 0;

SELECT DISTINCT CAST("event_type" AS VARCHAR) AS t FROM events AS s WHERE NOT "event_type" IS NULL ORDER BY t LIMIT 201;

SELECT DISTINCT CAST("action" AS VARCHAR) AS t FROM web.events AS s WHERE NOT "action" IS NULL ORDER BY t LIMIT 201;

SELECT CAST(s."status" AS VARCHAR) AS v, COUNT(*) FROM consents AS s WHERE CAST(s."status" AS VARCHAR) IS NULL OR NOT CAST(s."status" AS VARCHAR) IN ('granted', 'withdrawn') GROUP BY CAST(s."status" AS VARCHAR) ORDER BY v;
