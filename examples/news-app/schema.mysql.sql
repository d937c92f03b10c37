-- The news app's tables (shared/reference/toutiao-counters.md) plus the shop's `orders`
-- table, for MySQL 8 and MariaDB 10.6+. The columns are the ones the app's counters and
-- orders.cancel read; the app itself has more.
--
--   mysql -h 127.0.0.1 -u root -e 'CREATE DATABASE newsapp_demo'
--   mysql -h 127.0.0.1 -u root newsapp_demo < examples/news-app/schema.mysql.sql

CREATE TABLE user_basic (
  user_id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  mobile CHAR(11) NOT NULL,
  user_name VARCHAR(32) NOT NULL,
  -- 1 active, 0 disabled
  status TINYINT NOT NULL DEFAULT 1,
  UNIQUE KEY mobile (mobile)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE user_relation (
  relation_id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  user_id BIGINT UNSIGNED NOT NULL,
  target_user_id BIGINT UNSIGNED NOT NULL,
  -- 0 unfollowed, 1 follows, 2 blocked
  relation TINYINT NOT NULL DEFAULT 0,
  create_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  update_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  UNIQUE KEY user_target (user_id, target_user_id),
  KEY user_relation (user_id, relation),
  KEY target_relation (target_user_id, relation)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE news_article_basic (
  article_id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  user_id BIGINT UNSIGNED NOT NULL,
  channel_id INT UNSIGNED NOT NULL,
  title VARCHAR(128) NOT NULL,
  -- 0 draft, 1 in review, 2 published, 3 rejected, 4 deleted, 5 banned
  status TINYINT NOT NULL DEFAULT 0,
  create_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  KEY user_status (user_id, status)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE news_collection (
  collection_id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  user_id BIGINT UNSIGNED NOT NULL,
  article_id BIGINT UNSIGNED NOT NULL,
  -- 1 un-collected
  is_deleted TINYINT NOT NULL DEFAULT 0,
  UNIQUE KEY user_article (user_id, article_id),
  KEY user_deleted (user_id, is_deleted),
  KEY article_deleted (article_id, is_deleted)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE news_attitude (
  attitude_id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  user_id BIGINT UNSIGNED NOT NULL,
  article_id BIGINT UNSIGNED NOT NULL,
  -- 0 dislike, 1 like, NULL withdrawn
  attitude TINYINT NULL,
  UNIQUE KEY user_article (user_id, article_id),
  KEY article_attitude (article_id, attitude)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE news_comment (
  comment_id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  user_id BIGINT UNSIGNED NOT NULL,
  article_id BIGINT UNSIGNED NOT NULL,
  -- set: a reply to that comment
  parent_id BIGINT UNSIGNED NULL,
  -- 0 in review, 1 approved, 2 rejected, 3 deleted
  status TINYINT NOT NULL DEFAULT 0,
  content VARCHAR(512) NOT NULL,
  KEY article_status (article_id, status),
  KEY parent_status (parent_id, status)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE news_comment_liking (
  liking_id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  user_id BIGINT UNSIGNED NOT NULL,
  comment_id BIGINT UNSIGNED NOT NULL,
  -- 1 un-liked
  is_deleted TINYINT NOT NULL DEFAULT 0,
  UNIQUE KEY user_comment (user_id, comment_id),
  KEY comment_deleted (comment_id, is_deleted)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- The shop's orders, for orders.cancel ([tasks.orders] table = "orders").
CREATE TABLE orders (
  id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  user_id BIGINT UNSIGNED NOT NULL,
  amount_cents INT UNSIGNED NOT NULL,
  -- unpaid, paid or cancelled
  status VARCHAR(16) NOT NULL DEFAULT 'unpaid',
  created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  cancelled_at DATETIME NULL,
  KEY status (status)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
