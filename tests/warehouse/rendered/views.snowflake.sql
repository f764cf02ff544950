-- 12 statements of the shared SQL, rendered for snowflake

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

CREATE OR REPLACE VIEW activation.src_customers AS SELECT CAST(s."customer_id" AS BIGINT) AS customer_id, CAST(s."email" AS VARCHAR) AS email, s."country" AS "country", s."country_name" AS "country_name", s."created_at" AS "created_at", s."last_contact_at" AS "last_contact_at", s."loyalty_tier" AS "loyalty_tier", s."lifetime_value" AS "lifetime_value", s."preferred_store" AS "preferred_store", CAST(s."created_at" AS TIMESTAMPNTZ) AS collected_at, CAST(s."last_contact_at" AS TIMESTAMPNTZ) AS last_own_action_at, CAST([CAST(s."last_contact_at" AS TIMESTAMPNTZ)] AS ARRAY(TIMESTAMPNTZ)) AS own_action_times FROM (SELECT c.customer_id, c.email, c.country, c.country_name, c.created_at, c.last_contact_at, l.loyalty_tier, l.lifetime_value, l.preferred_store FROM customers AS c LEFT JOIN crm.loyalty AS l ON l.customer_ref = c.customer_id) AS s;

INSERT INTO activation.source_views VALUES (?, ?) ON CONFLICT(view_name) DO UPDATE SET definition = excluded.definition;

CREATE OR REPLACE VIEW activation.src_events AS SELECT CAST(s."event_id" AS VARCHAR) AS event_id, CAST(s."customer_id" AS BIGINT) AS customer_id, CAST(s."event_type" AS VARCHAR) AS event_type, CAST(s."occurred_at" AS TIMESTAMPNTZ) AS occurred_at, CAST(s."value" AS DOUBLE) AS value, CAST(s."invoice_no" AS VARCHAR) AS order_id, COALESCE(CAST(s."event_type" AS VARCHAR) = 'purchase', FALSE) AS is_purchase, COALESCE(CAST(s."event_type" AS VARCHAR) IN ('add_to_cart', 'checkout_started', 'purchase'), FALSE) AS own_action, s."invoice_no" AS "invoice_no", s."stock_code" AS "stock_code", s."description" AS "description", s."quantity" AS "quantity", s."unit_price" AS "unit_price", CAST(NULL AS VARCHAR) AS "sku", CAST(NULL AS VARCHAR) AS "page_path" FROM events AS s UNION ALL SELECT CAST(s."event_uuid" AS VARCHAR) AS event_id, CAST(s."visitor_customer_id" AS BIGINT) AS customer_id, CAST(s."action" AS VARCHAR) AS event_type, CAST(s."happened_at" AS TIMESTAMPNTZ) AS occurred_at, CAST(NULL AS DOUBLE) AS value, CAST(NULL AS VARCHAR) AS order_id, COALESCE(CAST(s."action" AS VARCHAR) = 'purchase', FALSE) AS is_purchase, COALESCE(CAST(s."action" AS VARCHAR) IN ('add_to_cart', 'checkout_started', 'purchase'), FALSE) AS own_action, CAST(NULL AS VARCHAR) AS "invoice_no", CAST(NULL AS VARCHAR) AS "stock_code", CAST(NULL AS VARCHAR) AS "description", CAST(NULL AS INT) AS "quantity", CAST(NULL AS DOUBLE) AS "unit_price", s."sku" AS "sku", s."page_path" AS "page_path" FROM web.events AS s;
