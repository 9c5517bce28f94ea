-- Nothing changes on PostgreSQL: replicas share the table, and its primary key on `id` is
-- what lets exactly one of them claim a key (SQLite's table changed, see its 0007).
SELECT 1;
