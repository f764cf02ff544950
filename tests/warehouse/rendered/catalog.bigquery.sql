-- 15 statements of the shared SQL, rendered for bigquery

CREATE SCHEMA IF NOT EXISTS activation;

CREATE TABLE IF NOT EXISTS activation.consent_intake (consent_id STRING PRIMARY KEY, customer_id INT64, subject_key STRING NOT NULL, purpose STRING NOT NULL, status STRING NOT NULL, recorded_at DATETIME NOT NULL, source STRING, notice_version STRING);

CREATE TABLE IF NOT EXISTS activation.source_views (view_name STRING PRIMARY KEY, definition STRING NOT NULL);

CREATE TABLE IF NOT EXISTS activation.request_intake (request_id STRING PRIMARY KEY, customer_id INT64, subject_key STRING, request_type STRING NOT NULL, received_at DATETIME NOT NULL);

SELECT * FROM crm.contacts AS s LIMIT 0;

SELECT * FROM (SELECT * FROM shop.order_lines WHERE line_type = 'SALE') AS s LIMIT 0;

SELECT * FROM (SELECT * FROM shop.order_lines WHERE line_type = 'RETURN') AS s LIMIT 0;

SELECT * FROM web.events AS s LIMIT 0;

SELECT * FROM cmp.consent_events AS s LIMIT 0;

SELECT * FROM support.privacy_tickets AS s LIMIT 0;

SELECT table_name FROM information_schema.tables WHERE table_catalog = CURRENT_DATABASE() AND table_schema = ? AND table_type = 'VIEW';

SELECT view_name, definition FROM activation.source_views;

SELECT COUNT(*), MIN(k) FROM (SELECT s.`contact_id` AS k FROM crm.contacts AS s WHERE NOT s.`contact_id` IS NULL GROUP BY s.`contact_id` HAVING COUNT(*) > 1);

SELECT * FROM activation.src_customers LIMIT 0;

SELECT * FROM activation.src_events LIMIT 0;

SELECT DISTINCT CAST(`action` AS STRING) AS t FROM web.events AS s WHERE NOT `action` IS NULL ORDER BY t NULLS LAST LIMIT 201;

SELECT CAST(s.`consent_status` AS STRING) AS v, COUNT(*) FROM cmp.consent_events AS s WHERE CAST(s.`consent_status` AS STRING) IS NULL OR NOT CAST(s.`consent_status` AS STRING) IN ('OPT_IN', 'OPT_OUT') GROUP BY v ORDER BY v NULLS LAST;

SELECT CAST(s.`purpose_name` AS STRING) AS v, COUNT(*) FROM cmp.consent_events AS s WHERE CAST(s.`purpose_name` AS STRING) IS NULL OR NOT CAST(s.`purpose_name` AS STRING) IN ('newsletter', 'personalised_ads') GROUP BY v ORDER BY v NULLS LAST;
