-- The news app's tables (shared/reference/toutiao-counters.md) plus the shop's `orders`
-- table, for PostgreSQL 12+. The same names and columns as schema.mysql.sql, so the
-- default counter queries run unchanged.
--
-- As in schema.mysql.sql, each secondary index holds a counter's GROUP BY column and its
-- filter column (group column first), so the counters of stats.correct can be answered
-- by index-only scans (once VACUUM has set the visibility map).
--
--   createdb -h 127.0.0.1 -U postgres newsapp_demo
--   psql -h 127.0.0.1 -U postgres newsapp_demo < examples/news-app/schema.postgres.sql

CREATE TABLE user_basic (
  user_id BIGINT NOT NULL PRIMARY KEY,
  mobile CHAR(11) NOT NULL UNIQUE,
  user_name VARCHAR(32) NOT NULL,
  -- 1 active, 0 disabled
  status SMALLINT NOT NULL DEFAULT 1
);

CREATE TABLE user_relation (
  relation_id BIGINT NOT NULL PRIMARY KEY,
  user_id BIGINT NOT NULL,
  target_user_id BIGINT NOT NULL,
  -- 0 unfollowed, 1 follows, 2 blocked
  relation SMALLINT NOT NULL DEFAULT 0,
  create_time TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
  update_time TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
  UNIQUE (user_id, target_user_id)
);
CREATE INDEX user_relation_user_relation ON user_relation (user_id, relation);
CREATE INDEX user_relation_target_relation ON user_relation (target_user_id, relation);

CREATE TABLE news_article_basic (
  article_id BIGINT NOT NULL PRIMARY KEY,
  user_id BIGINT NOT NULL,
  channel_id INTEGER NOT NULL,
  title VARCHAR(128) NOT NULL,
  -- 0 draft, 1 in review, 2 published, 3 rejected, 4 deleted, 5 banned
  status SMALLINT NOT NULL DEFAULT 0,
  create_time TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX news_article_basic_user_status ON news_article_basic (user_id, status);

CREATE TABLE news_collection (
  collection_id BIGINT NOT NULL PRIMARY KEY,
  user_id BIGINT NOT NULL,
  article_id BIGINT NOT NULL,
  -- 1 un-collected
  is_deleted SMALLINT NOT NULL DEFAULT 0,
  UNIQUE (user_id, article_id)
);
CREATE INDEX news_collection_user_deleted ON news_collection (user_id, is_deleted);
CREATE INDEX news_collection_article_deleted ON news_collection (article_id, is_deleted);

CREATE TABLE news_attitude (
  attitude_id BIGINT NOT NULL PRIMARY KEY,
  user_id BIGINT NOT NULL,
  article_id BIGINT NOT NULL,
  -- 0 dislike, 1 like, NULL withdrawn
  attitude SMALLINT NULL,
  UNIQUE (user_id, article_id)
);
CREATE INDEX news_attitude_article_attitude ON news_attitude (article_id, attitude);

CREATE TABLE news_comment (
  comment_id BIGINT NOT NULL PRIMARY KEY,
  user_id BIGINT NOT NULL,
  article_id BIGINT NOT NULL,
  -- set: a reply to that comment
  parent_id BIGINT NULL,
  -- 0 in review, 1 approved, 2 rejected, 3 deleted
  status SMALLINT NOT NULL DEFAULT 0,
  content VARCHAR(512) NOT NULL
);
CREATE INDEX news_comment_article_status ON news_comment (article_id, status);
CREATE INDEX news_comment_parent_status ON news_comment (parent_id, status);

CREATE TABLE news_comment_liking (
  liking_id BIGINT NOT NULL PRIMARY KEY,
  user_id BIGINT NOT NULL,
  comment_id BIGINT NOT NULL,
  -- 1 un-liked
  is_deleted SMALLINT NOT NULL DEFAULT 0,
  UNIQUE (user_id, comment_id)
);
CREATE INDEX news_comment_liking_comment_deleted ON news_comment_liking (comment_id, is_deleted);

-- The shop's orders, for orders.cancel ([tasks.orders] table = "orders").
CREATE TABLE orders (
  id BIGINT NOT NULL PRIMARY KEY,
  user_id BIGINT NOT NULL,
  amount_cents INTEGER NOT NULL,
  -- unpaid, paid or cancelled
  status VARCHAR(16) NOT NULL DEFAULT 'unpaid',
  created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
  cancelled_at TIMESTAMP NULL
);
CREATE INDEX orders_status ON orders (status);
