-- 40 statements of the shared SQL, rendered for bigquery

CREATE OR REPLACE TEMPORARY TABLE sync_person_acts AS SELECT customer_id, request_type AS act FROM activation.src_privacy_requests WHERE request_type IN ('erasure', 'objection') AND NOT customer_id IS NULL UNION ALL SELECT customer_id, 'withdrawn' AS act FROM activation.audience_exclusions WHERE segment = @segment AND EXISTS(SELECT 1 FROM UNNEST(@withdrawn) AS _col WHERE _col = reason) UNION ALL SELECT DISTINCT l.customer_id, 'withdrawn' AS act FROM (/* only customers with some non-grant record can have one as their latest: the */ /* window then sorts their records alone (a fifth of them in the benchmark) */ SELECT c.customer_id, pm.purpose, c.status, c.recorded_at FROM activation.src_consents AS c JOIN (SELECT p.raw, d.name AS purpose, p.raw = d.name AS exact FROM (SELECT DISTINCT purpose AS raw FROM activation.src_consents WHERE NOT purpose IS NULL) AS p JOIN (SELECT IF(pos = pos_2, name, NULL) AS name, IF(pos = pos_3, key, NULL) AS key FROM UNNEST(GENERATE_ARRAY(0, GREATEST(ARRAY_LENGTH(@purposes), ARRAY_LENGTH(@purpose_keys)) - 1)) AS pos CROSS JOIN UNNEST(@purposes) AS name WITH OFFSET AS pos_2 CROSS JOIN UNNEST(@purpose_keys) AS key WITH OFFSET AS pos_3 WHERE (pos = pos_2 OR (pos > (ARRAY_LENGTH(@purposes) - 1) AND pos_2 = (ARRAY_LENGTH(@purposes) - 1))) AND (pos = pos_3 OR (pos > (ARRAY_LENGTH(@purpose_keys) - 1) AND pos_3 = (ARRAY_LENGTH(@purpose_keys) - 1)))) AS d ON TRIM(REGEXP_REPLACE(LOWER(p.raw), '[ \t\n\r\f\v_-]+', '_'), '_') = d.key) AS pm ON pm.raw = c.purpose WHERE (pm.exact OR c.status <> 'granted') AND c.customer_id IN (SELECT customer_id FROM activation.src_consents WHERE status <> 'granted') QUALIFY ROW_NUMBER() OVER (PARTITION BY c.customer_id, pm.purpose ORDER BY recorded_at DESC, (status = 'granted') ASC NULLS LAST, consent_id DESC) = 1) AS l LEFT JOIN (SELECT customer_id, recorded_at FROM activation.src_consents WHERE purpose = @purpose AND status = 'granted') AS g ON g.customer_id = l.customer_id AND g.recorded_at > l.recorded_at WHERE l.status <> 'granted' AND (l.purpose = @purpose OR g.customer_id IS NULL);

CREATE SCHEMA IF NOT EXISTS activation;

CREATE TABLE IF NOT EXISTS activation.segment_members (segment STRING NOT NULL, customer_id INT64 NOT NULL, computed_at DATETIME NOT NULL, PRIMARY KEY (segment, customer_id));

CREATE TABLE IF NOT EXISTS activation.audience_members (segment STRING NOT NULL, subject_key STRING NOT NULL, google_key STRING NOT NULL, customer_id INT64 NOT NULL, email STRING NOT NULL, legal_basis STRING NOT NULL, consent_ref STRING NOT NULL, computed_at DATETIME NOT NULL);

CREATE TABLE IF NOT EXISTS activation.audience_exclusions (segment STRING NOT NULL, customer_id INT64 NOT NULL, reason STRING NOT NULL, computed_at DATETIME NOT NULL, PRIMARY KEY (segment, customer_id));

CREATE TABLE IF NOT EXISTS activation.customer_keys (customer_id INT64 NOT NULL, email_fingerprint INT64 NOT NULL, email STRING, subject_key STRING, google_key STRING, address_id INT64);

CREATE TABLE IF NOT EXISTS activation.customer_keys_rules (version INT64 NOT NULL);

CREATE TABLE IF NOT EXISTS activation.customer_key_history (customer_id INT64 NOT NULL, subject_key STRING NOT NULL, google_key STRING, superseded_at DATETIME NOT NULL);

CREATE TABLE IF NOT EXISTS activation.sync_state (segment STRING NOT NULL, destination STRING NOT NULL, subject_key STRING NOT NULL, destination_ref STRING, fields_hash STRING NOT NULL, synced_at DATETIME NOT NULL, PRIMARY KEY (segment, destination, subject_key));

CREATE TABLE IF NOT EXISTS activation.sync_rejections (segment STRING NOT NULL, destination STRING NOT NULL, subject_key STRING NOT NULL, fields_hash STRING NOT NULL, operation STRING NOT NULL, reason STRING NOT NULL, permanent BOOL NOT NULL, rejected_at DATETIME NOT NULL, remove_reason STRING, attempts INT64 NOT NULL DEFAULT 1, retry_at DATETIME, platform_status STRING);

CREATE TABLE IF NOT EXISTS activation.sync_retired_keys (segment STRING NOT NULL, destination STRING NOT NULL, subject_key STRING NOT NULL, identifiers STRING NOT NULL, retired_at DATETIME NOT NULL, PRIMARY KEY (segment, destination, subject_key, identifiers));

CREATE TABLE IF NOT EXISTS activation.sync_journal (segment STRING NOT NULL, destination STRING NOT NULL, run STRING NOT NULL, seq INT64 NOT NULL, kind STRING NOT NULL, line STRING NOT NULL, written_at DATETIME NOT NULL);

CREATE TABLE IF NOT EXISTS activation.pair_locks (segment STRING NOT NULL, destination STRING NOT NULL, owner STRING NOT NULL, host STRING NOT NULL, pid INT64 NOT NULL, process_started STRING, acquired_at DATETIME NOT NULL, heartbeat_at DATETIME NOT NULL, lease_s FLOAT64 NOT NULL, PRIMARY KEY (segment, destination));

CREATE TABLE IF NOT EXISTS activation.destination_request_journal (segment STRING NOT NULL, destination STRING NOT NULL, run STRING NOT NULL, seq INT64 NOT NULL, pos INT64 NOT NULL, kind STRING NOT NULL, line STRING NOT NULL, written_at DATETIME NOT NULL);

CREATE TABLE IF NOT EXISTS activation.destination_requests (segment STRING NOT NULL, destination STRING NOT NULL, request_id STRING NOT NULL, audience_id STRING NOT NULL, op STRING NOT NULL, remove_reason STRING, subject_key STRING NOT NULL, send_key STRING NOT NULL, fields_hash STRING NOT NULL, destination_ref STRING, fields_json STRING NOT NULL, submitted_at DATETIME NOT NULL);

CREATE TABLE IF NOT EXISTS activation.customer_phone_keys (customer_id INT64 PRIMARY KEY, fingerprint INT64 NOT NULL, google_hash STRING, meta_hash STRING);

CREATE TABLE IF NOT EXISTS activation.departures (segment STRING NOT NULL, destination STRING NOT NULL, subject_key STRING NOT NULL, left_at DATETIME NOT NULL, PRIMARY KEY (segment, destination, subject_key));

CREATE TABLE IF NOT EXISTS activation.destination_suppressions (destination STRING NOT NULL, subject_key STRING NOT NULL, status STRING NOT NULL, suppressed_at DATETIME NOT NULL, destination_ref STRING, PRIMARY KEY (destination, subject_key));

CREATE TABLE IF NOT EXISTS activation.suppression_list (subject_key STRING NOT NULL PRIMARY KEY, google_key STRING, request_type STRING NOT NULL, suppressed_at DATETIME NOT NULL);

CREATE TABLE IF NOT EXISTS activation.erasure_receipts (request_id STRING NOT NULL, segment STRING NOT NULL, destination STRING NOT NULL, audience_id STRING NOT NULL, action STRING NOT NULL, outcome STRING NOT NULL, detail STRING NOT NULL, sent_at DATETIME NOT NULL);

CREATE TABLE IF NOT EXISTS activation.request_processing (request_id STRING NOT NULL PRIMARY KEY, subjects INT64 NOT NULL, purged_rows INT64 NOT NULL, processed_at DATETIME NOT NULL, matched BOOL);

ALTER TABLE activation.sync_rejections ADD COLUMN IF NOT EXISTS remove_reason STRING;

ALTER TABLE activation.sync_rejections ADD COLUMN IF NOT EXISTS attempts INT64 DEFAULT 1;

ALTER TABLE activation.sync_rejections ADD COLUMN IF NOT EXISTS retry_at DATETIME;

ALTER TABLE activation.sync_rejections ADD COLUMN IF NOT EXISTS platform_status STRING;

ALTER TABLE activation.destination_suppressions ADD COLUMN IF NOT EXISTS destination_ref STRING;

CREATE SCHEMA IF NOT EXISTS activation;

CREATE TABLE IF NOT EXISTS activation.consent_intake (consent_id STRING PRIMARY KEY, customer_id INT64, subject_key STRING NOT NULL, purpose STRING NOT NULL, status STRING NOT NULL, recorded_at DATETIME NOT NULL, source STRING, notice_version STRING);

CREATE TABLE IF NOT EXISTS activation.source_views (view_name STRING PRIMARY KEY, definition STRING NOT NULL);

CREATE TABLE IF NOT EXISTS activation.request_intake (request_id STRING PRIMARY KEY, customer_id INT64, subject_key STRING, request_type STRING NOT NULL, received_at DATETIME NOT NULL);

ALTER TABLE activation.request_processing ADD COLUMN IF NOT EXISTS matched BOOL;

ALTER TABLE activation.customer_keys ADD COLUMN IF NOT EXISTS address_id INT64;

SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?;

CREATE TEMPORARY TABLE IF NOT EXISTS _address_raw (raw STRING);

DELETE FROM _address_raw;

INSERT INTO _address_raw SELECT CAST(email AS STRING) AS raw FROM activation.src_customers WHERE NOT email IS NULL AND BYTE_LENGTH(CAST(email AS STRING)) <> LENGTH(CAST(email AS STRING)) UNION DISTINCT SELECT CAST(subject_key AS STRING) AS raw FROM activation.src_privacy_requests WHERE NOT subject_key IS NULL AND BYTE_LENGTH(CAST(subject_key AS STRING)) <> LENGTH(CAST(subject_key AS STRING)) UNION DISTINCT SELECT CAST(subject_key AS STRING) AS raw FROM activation.consent_intake WHERE NOT subject_key IS NULL AND BYTE_LENGTH(CAST(subject_key AS STRING)) <> LENGTH(CAST(subject_key AS STRING));

DELETE FROM activation.address_forms WHERE NOT raw IN (SELECT raw FROM _address_raw);

SELECT raw FROM _address_raw WHERE NOT raw IN (SELECT raw FROM activation.address_forms);

DROP TABLE _address_raw;

CREATE OR REPLACE TEMPORARY TABLE _customer_key_changes AS SELECT COALESCE(c.customer_id, k.customer_id) AS customer_id, NOT c.customer_id IS NULL AS present FROM (SELECT customer_id, FARM_FINGERPRINT(email) AS fingerprint FROM activation.src_customers) AS c FULL JOIN activation.customer_keys AS k ON k.customer_id = c.customer_id AND k.email_fingerprint = c.fingerprint WHERE (k.customer_id IS NULL AND c.customer_id IN (SELECT customer_id FROM sync_person_acts)) OR c.customer_id IS NULL;

SELECT version FROM activation.customer_keys_rules;

SELECT COUNT(*) FROM _customer_key_changes;

DELETE FROM activation.customer_key_history AS h WHERE NOT EXISTS(SELECT 1 FROM activation.sync_state AS s WHERE s.subject_key = h.subject_key);

CREATE OR REPLACE TEMPORARY TABLE _customer_key_addresses AS SELECT subject_key FROM activation.customer_keys WHERE customer_id IN (SELECT customer_id FROM _customer_key_changes) AND NOT subject_key IS NULL;

INSERT INTO _customer_key_addresses SELECT subject_key FROM activation.customer_keys WHERE NOT subject_key IS NULL AND (address_id IS NULL OR customer_id IN (SELECT customer_id FROM _customer_key_changes WHERE present));

UPDATE activation.customer_keys AS k SET address_id = a.address_id FROM (SELECT subject_key, MIN(customer_id) AS address_id FROM activation.customer_keys WHERE subject_key IN (SELECT subject_key FROM _customer_key_addresses) GROUP BY subject_key) AS a WHERE k.subject_key = a.subject_key AND k.address_id IS DISTINCT FROM a.address_id;

UPDATE activation.customer_keys SET address_id = customer_id WHERE address_id IS NULL AND subject_key IS NULL;

DROP TABLE _customer_key_addresses;

DROP TABLE _customer_key_changes;

CREATE OR REPLACE TEMPORARY TABLE sync_must_leave AS WITH held AS (SELECT subject_key FROM activation.sync_state WHERE segment = ? AND destination = ? UNION DISTINCT SELECT subject_key FROM activation.sync_retired_keys WHERE segment = ? AND destination = ?), key_acts AS (SELECT k.subject_key, a.act FROM sync_person_acts AS a JOIN (SELECT customer_id, subject_key FROM activation.customer_keys UNION ALL SELECT customer_id, subject_key FROM activation.customer_key_history) AS k USING (customer_id) UNION ALL SELECT subject_key, request_type AS act FROM activation.src_privacy_requests WHERE request_type IN ('erasure', 'objection') AND NOT subject_key IS NULL UNION ALL SELECT subject_key, request_type AS act FROM activation.suppression_list), acts AS (SELECT subject_key, LOGICAL_OR(act = 'erasure') AS erased, LOGICAL_OR(act = 'objection') AS objected FROM key_acts GROUP BY subject_key) SELECT h.subject_key, CASE WHEN a.erased THEN ? WHEN a.objected THEN ? ELSE ? END AS reason FROM held AS h JOIN acts AS a USING (subject_key);

CREATE OR REPLACE TEMPORARY TABLE sync_target AS SELECT *, TO_HEX(SHA256(CAST(to_json([send_key]) AS STRING))) AS fields_hash FROM (SELECT am.subject_key, am.subject_key AS send_key FROM activation.audience_members AS am WHERE am.segment = ? AND NOT am.subject_key IN (SELECT subject_key FROM activation.suppression_list) AND NOT am.google_key IN (SELECT google_key FROM activation.suppression_list WHERE NOT google_key IS NULL));

CREATE OR REPLACE TEMPORARY TABLE sync_retired AS SELECT k.subject_key, k.identifiers FROM activation.sync_retired_keys AS k WHERE k.segment = ? AND k.destination = ? AND (k.subject_key IN (SELECT subject_key FROM sync_must_leave) OR NOT k.subject_key IN (SELECT subject_key FROM activation.sync_rejections WHERE segment = ? AND destination = ? AND operation = 'remove' AND remove_reason = ? AND retry_at > ?));

CREATE OR REPLACE TEMPORARY TABLE sync_diff AS WITH target AS (SELECT * FROM sync_target), state AS (SELECT subject_key, destination_ref, fields_hash FROM activation.sync_state WHERE segment = ? AND destination = ?), suppressed AS (SELECT DISTINCT subject_key FROM activation.destination_suppressions WHERE destination = ?), refused AS (SELECT DISTINCT subject_key, fields_hash FROM activation.sync_rejections WHERE segment = ? AND destination = ? AND permanent), awaiting AS (SELECT subject_key, MAX(IF(op <> 'remove', fields_hash, NULL)) AS add_hash, LOGICAL_OR(op = 'remove') AS removing FROM activation.destination_requests WHERE segment = ? AND destination = ? GROUP BY subject_key), retired AS (SELECT DISTINCT r.subject_key FROM sync_retired AS r JOIN sync_target AS t USING (subject_key) WHERE r.identifiers <> t.send_key), joined AS (SELECT COALESCE(t.subject_key, s.subject_key) AS subject_key, t.send_key, s.destination_ref, COALESCE(t.fields_hash, s.fields_hash) AS fields_hash, NOT t.subject_key IS NULL AS in_target, NOT s.subject_key IS NULL AS in_state, s.fields_hash = ? AS pending, s.fields_hash IS DISTINCT FROM t.fields_hash AS changed, NOT sp.subject_key IS NULL AS is_suppressed, ? = 'ad' AND NOT s.subject_key IS NULL AND t.send_key <> COALESCE(s.destination_ref, s.subject_key) AS key_changed, NOT rt.subject_key IS NULL AS has_retired, NOT rf.subject_key IS NULL AS is_refused, NOT ml.subject_key IS NULL AS must_leave, COALESCE(dp.left_at <= ?, FALSE) AS retention_over, COALESCE(aw.add_hash = t.fields_hash, FALSE) AS awaiting_add, NOT aw.add_hash IS NULL AS awaiting_any_add, COALESCE(aw.removing, FALSE) AS awaiting_remove FROM target AS t FULL OUTER JOIN state AS s ON s.subject_key = t.subject_key LEFT JOIN suppressed AS sp ON sp.subject_key = COALESCE(t.subject_key, s.subject_key) LEFT JOIN sync_must_leave AS ml ON ml.subject_key = s.subject_key LEFT JOIN activation.departures AS dp ON dp.segment = ? AND dp.destination = ? AND dp.subject_key = s.subject_key LEFT JOIN refused AS rf ON rf.subject_key = t.subject_key AND rf.fields_hash = t.fields_hash LEFT JOIN awaiting AS aw ON aw.subject_key = COALESCE(t.subject_key, s.subject_key) LEFT JOIN retired AS rt ON rt.subject_key = t.subject_key), wanted AS (SELECT *, CASE WHEN in_target AND pending AND (awaiting_add OR (key_changed AND awaiting_any_add)) THEN 'awaiting' WHEN in_target AND (key_changed OR has_retired) THEN 'rekey' WHEN in_target AND (NOT in_state OR pending) THEN 'add' WHEN in_target AND changed AND ? <> 'add_only' THEN 'update' WHEN in_target THEN 'unchanged' WHEN pending AND awaiting_remove THEN 'awaiting' WHEN ? = 'mirror' OR must_leave OR retention_over THEN 'remove' ELSE 'kept' END AS wanted FROM joined) SELECT subject_key, send_key, destination_ref, fields_hash, in_target, in_state, pending, changed, is_suppressed, key_changed, has_retired, is_refused, must_leave, retention_over, awaiting_add, awaiting_remove, CASE WHEN wanted IN ('add', 'update', 'rekey') AND is_suppressed THEN 'suppressed' WHEN wanted IN ('add', 'update') AND is_refused THEN 'skipped_rejected' ELSE wanted END AS action FROM wanted;

CREATE OR REPLACE TEMPORARY TABLE sync_remove_reasons AS SELECT d.subject_key, COALESCE(ml.reason, ?) AS reason FROM sync_diff AS d LEFT JOIN sync_must_leave AS ml ON ml.subject_key = d.subject_key WHERE d.action = 'remove';

CREATE OR REPLACE TEMPORARY TABLE sync_rekey_removes AS SELECT subject_key, identifiers, MAX(fields_hash) AS fields_hash FROM (SELECT subject_key, COALESCE(destination_ref, subject_key) AS identifiers, ? AS fields_hash FROM sync_diff WHERE action = 'rekey' AND key_changed UNION ALL SELECT r.subject_key, r.identifiers, ? AS fields_hash FROM sync_retired AS r LEFT JOIN sync_diff AS d USING (subject_key) WHERE r.identifiers IS DISTINCT FROM d.send_key) GROUP BY subject_key, identifiers;

UPDATE sync_diff SET action = 'remove_deferred' WHERE action = 'remove' AND subject_key IN (SELECT r.subject_key FROM sync_remove_reasons AS r JOIN activation.sync_rejections AS j ON j.subject_key = r.subject_key AND j.operation = 'remove' AND j.remove_reason = r.reason WHERE j.segment = ? AND j.destination = ? AND j.retry_at > ?);

DELETE FROM sync_remove_reasons WHERE subject_key IN (SELECT subject_key FROM sync_diff WHERE action = 'remove_deferred');

DROP TABLE sync_target;

SELECT action, COUNT(*) FROM sync_diff GROUP BY 1;

SELECT reason, COUNT(*) FROM sync_remove_reasons GROUP BY 1;

SELECT COUNT(*) FROM sync_rekey_removes;

CREATE OR REPLACE TEMPORARY TABLE sync_target AS SELECT *, TO_HEX(SHA256(CAST(to_json([send_key]) AS STRING))) AS fields_hash FROM (SELECT am.subject_key, am.email AS send_key FROM activation.audience_members AS am WHERE am.segment = ? AND NOT am.subject_key IN (SELECT subject_key FROM activation.suppression_list) AND NOT am.google_key IN (SELECT google_key FROM activation.suppression_list WHERE NOT google_key IS NULL));
