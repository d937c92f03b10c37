//! The news app's counters: the default set `stats.correct` corrects when
//! `[tasks.stats]` names no `counters` (docs/news-app.md).
//!
//! Each query returns (member, count) rows and is plain SQL that runs unchanged on
//! MySQL/MariaDB, PostgreSQL and SQLite. Zero counts never appear (a GROUP BY yields no
//! group without rows), which is what "correct" asks: a member with no count is absent.
//!
//! The original job had two cross-join bugs: `count:user:liked` listed
//! `news_attitude, news_article_basic` with no join condition, so every like counted
//! once per article in the table, and `count:art:reply` counted replies of every
//! comment for each comment. Here every query that reads two tables joins them on the
//! key that relates them, and replies are grouped by the comment they answer.

use super::Counter;

/// (key, query) of each default counter, in the order they run.
const DEFAULTS: &[(&str, &str)] = &[
    (
        "count:user:arts",
        "SELECT user_id, COUNT(*) FROM news_article_basic WHERE status = 2 GROUP BY user_id",
    ),
    (
        "count:art:collecting",
        "SELECT article_id, COUNT(*) FROM news_collection WHERE is_deleted = 0 GROUP BY article_id",
    ),
    (
        "count:user:art:collecting",
        "SELECT user_id, COUNT(*) FROM news_collection WHERE is_deleted = 0 GROUP BY user_id",
    ),
    (
        "count:art:dislike",
        "SELECT article_id, COUNT(*) FROM news_attitude WHERE attitude = 0 GROUP BY article_id",
    ),
    (
        "count:art:liking",
        "SELECT article_id, COUNT(*) FROM news_attitude WHERE attitude = 1 GROUP BY article_id",
    ),
    (
        "count:comm:liking",
        "SELECT comment_id, COUNT(*) FROM news_comment_liking WHERE is_deleted = 0 \
         GROUP BY comment_id",
    ),
    (
        "count:art:comm",
        "SELECT article_id, COUNT(*) FROM news_comment WHERE status = 1 GROUP BY article_id",
    ),
    (
        "count:art:reply",
        "SELECT parent_id, COUNT(*) FROM news_comment \
         WHERE status = 1 AND parent_id IS NOT NULL GROUP BY parent_id",
    ),
    (
        "count:user:followings",
        "SELECT user_id, COUNT(*) FROM user_relation WHERE relation = 1 GROUP BY user_id",
    ),
    (
        "count:user:fans",
        "SELECT target_user_id, COUNT(*) FROM user_relation WHERE relation = 1 \
         GROUP BY target_user_id",
    ),
    (
        "count:user:liked",
        "SELECT article.user_id, COUNT(*) FROM news_attitude AS attitude \
         JOIN news_article_basic AS article ON article.article_id = attitude.article_id \
         WHERE attitude.attitude = 1 GROUP BY article.user_id",
    ),
];

/// The default counters.
pub(crate) fn news_app() -> Vec<Counter> {
    DEFAULTS
        .iter()
        .map(|(key, query)| Counter {
            key: (*key).to_owned(),
            query: (*query).to_owned(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_counter_has_a_distinct_key() {
        let counters = news_app();
        let mut keys: Vec<&str> = counters.iter().map(|c| c.key.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), counters.len());
        assert_eq!(counters.len(), 11);
    }
}
