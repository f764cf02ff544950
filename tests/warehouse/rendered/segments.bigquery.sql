-- 14 statements of the shared SQL, rendered for bigquery

BEGIN TRANSACTION;

CREATE OR REPLACE TEMPORARY TABLE _segment_members_new AS SELECT customer_id FROM (SELECT DISTINCT c.customer_id FROM activation.src_customers AS c WHERE (c.customer_id IN (SELECT e.customer_id FROM activation.src_events AS e WHERE (e.event_type = ? AND e.occurred_at <= ? AND e.occurred_at >= ?)) AND NOT (c.customer_id IN (SELECT e.customer_id FROM activation.src_events AS e WHERE (e.event_type = ? AND e.occurred_at <= ? AND e.occurred_at >= ?))))) AS q;

DELETE FROM activation.segment_members AS sm WHERE sm.segment = ? AND NOT EXISTS(SELECT 1 FROM _segment_members_new AS n WHERE n.customer_id = sm.customer_id);

UPDATE activation.segment_members SET computed_at = ? WHERE segment = ?;

INSERT INTO activation.segment_members (segment, customer_id, computed_at) SELECT ?, customer_id, ? FROM _segment_members_new AS n WHERE NOT EXISTS(SELECT 1 FROM activation.segment_members AS sm WHERE sm.segment = ? AND sm.customer_id = n.customer_id);

DROP TABLE _segment_members_new;

COMMIT TRANSACTION;

SELECT COUNT(*) FROM activation.segment_members WHERE segment = ?;

CREATE OR REPLACE TEMPORARY TABLE _segment_members_new AS SELECT customer_id FROM (SELECT DISTINCT c.customer_id FROM activation.src_customers AS c WHERE (COALESCE(c.`loyalty_tier` IN (?, ?), FALSE) AND COALESCE(c.`lifetime_value` >= ?, FALSE))) AS q;

CREATE OR REPLACE TEMPORARY TABLE _segment_members_new AS SELECT customer_id FROM (SELECT DISTINCT c.customer_id FROM activation.src_customers AS c WHERE (c.customer_id IN (SELECT e.customer_id FROM activation.src_events AS e WHERE (e.event_type = ? AND e.occurred_at <= ? AND e.occurred_at >= ?) GROUP BY e.customer_id HAVING (SUM(e.value) >= ?)) AND NOT (c.customer_id IN (SELECT e.customer_id FROM activation.src_events AS e WHERE (e.event_type = ? AND e.occurred_at <= ? AND e.occurred_at >= ?))))) AS q;

CREATE OR REPLACE TEMPORARY TABLE _segment_members_new AS SELECT customer_id FROM (SELECT DISTINCT customer_id FROM (SELECT customer_id FROM activation.src_events GROUP BY customer_id HAVING COUNT(DISTINCT IF(event_type = 'purchase', order_id, NULL)) >= 3 AND COUNTIF(event_type = 'refund') = 0) AS s WHERE NOT customer_id IS NULL) AS q;

CREATE OR REPLACE TEMPORARY TABLE _segment_members_new AS SELECT customer_id FROM (SELECT DISTINCT c.customer_id FROM activation.src_customers AS c WHERE c.customer_id IN (SELECT e.customer_id FROM activation.src_events AS e WHERE (e.event_type = ? AND e.occurred_at <= ? AND e.occurred_at >= ? AND INSTR(LOWER(e.`description`), LOWER(?)) > 0))) AS q;

CREATE OR REPLACE TEMPORARY TABLE _segment_members_new AS SELECT customer_id FROM (SELECT DISTINCT c.customer_id FROM activation.src_customers AS c WHERE (c.customer_id IN (SELECT e.customer_id FROM activation.src_events AS e WHERE (e.event_type = ? AND e.occurred_at <= ?)) AND NOT (c.customer_id IN (SELECT e.customer_id FROM activation.src_events AS e WHERE (e.event_type = ? AND e.occurred_at <= ?) GROUP BY e.customer_id HAVING (COUNT(DISTINCT COALESCE(e.order_id, 'event:' || e.event_id)) >= ?))))) AS q;

CREATE OR REPLACE TEMPORARY TABLE _segment_members_new AS SELECT customer_id FROM (SELECT DISTINCT c.customer_id FROM activation.src_customers AS c WHERE (COALESCE(c.`country` IN (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?), FALSE) AND c.customer_id IN (SELECT e.customer_id FROM activation.src_events AS e WHERE (e.event_type = ? AND e.occurred_at <= ? AND e.occurred_at >= ?)))) AS q;
