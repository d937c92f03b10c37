//! Config generations, the scheduler's side: which config the job store holds, whether
//! this node's config may replace it, and what this node's config is (for `/health`
//! and the web page). The daemon's sync (`daemon/sync.rs`) asks here before it
//! touches a config job; docs/config-reload.md says why the rule is what it is.
//!
//! # Ground rules
//! - The order between configs is the store's generation counter, bumped by a
//!   compare-and-set ([`crate::store::Cluster::record_config_generation`]); no file time
//!   and no clock takes part, so a node whose clock is wrong decides like the others.
//! - The default job store (`[job_defaults] jobstore`) keeps the generations: one
//!   counter per scheduler, however many stores its config jobs are spread over. If
//!   the default store cannot be shared and another can, the first such store (by
//!   name) keeps them instead: that is where other nodes' configs meet this one's.
//! - On a store that cannot be shared ([`crate::store::Cluster::is_shared`]: memory,
//!   SQLite) every config applies: the files are the only truth there is, whatever their
//!   times.

use serde::Serialize;

use super::{Scheduler, SchedulerError};
use crate::store::{ConfigGeneration, JobStore, StoreError};

/// How often [`Scheduler::claim_config_generation`] reads again after another node
/// recorded a generation first. Each retry means another config was applied in the
/// meantime; this many in a row is a store that keeps refusing, not a race.
const CLAIM_ATTEMPTS: usize = 16;

/// Where this node's config stands against the store's generations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Standing {
    /// The store's newest generation holds this node's config: the node applies it.
    Current {
        /// That generation.
        generation: ConfigGeneration,
        /// Whether this node recorded it just now (new content, a rollback on a
        /// single-node store, or a forced reload).
        recorded: bool,
    },
    /// This node's config was applied before, as generation `was`, and a newer one
    /// replaced it: the node leaves the store alone until it is given the newer files
    /// or told to roll back with a forced reload.
    Superseded {
        /// The older generation that held this node's config.
        was: u64,
        /// The store's newest generation.
        newest: ConfigGeneration,
    },
}

impl Standing {
    /// Whether the node applies its config.
    pub fn applies(&self) -> bool {
        matches!(self, Standing::Current { .. })
    }

    /// One line for logs, `kairos check` and the reload answer.
    pub fn describe(&self) -> String {
        match self {
            Standing::Current {
                generation,
                recorded: true,
            } => format!(
                "applied as config generation {} (hash {}){}",
                generation.generation,
                generation.hash,
                if generation.forced { ", forced" } else { "" }
            ),
            Standing::Current { generation, .. } => format!(
                "the job store holds this config: generation {} (hash {})",
                generation.generation, generation.hash
            ),
            Standing::Superseded { was, newest } => format!(
                "not applied: this config is generation {was}, superseded by generation {} \
                 (hash {}, applied by node {:?}); give this node the newer files, or roll \
                 back with a forced reload (kairos jobs reload --force)",
                newest.generation, newest.hash, newest.node_id
            ),
        }
    }
}

/// What the store holds against what this node's config is, as `/health`, the web
/// page and `kairos check` show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConfigState {
    /// The store's newest config generation; `None` before any config was applied.
    pub store: Option<ConfigGeneration>,
    /// The hash of this node's config, when it has one (a daemon started from files).
    pub node_hash: Option<String>,
    /// Where this node's config stood at its last start or reload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<Standing>,
    /// Whether the store holds this node's config now (another node may have applied
    /// a newer one since this node's last reload).
    pub current: bool,
    /// Whether the store may be shared by several nodes (then superseded configs wait
    /// for a forced reload).
    pub shared: bool,
}

impl ConfigState {
    /// One line: what the store holds and whether it is this node's config.
    pub fn describe(&self) -> String {
        let store = match &self.store {
            Some(newest) => format!(
                "the job store holds config generation {} (hash {}, applied by node {:?}{})",
                newest.generation,
                newest.hash,
                newest.node_id,
                if newest.forced { ", forced" } else { "" }
            ),
            None => "the job store holds no config generation yet".to_owned(),
        };
        match (&self.node_hash, &self.node) {
            (None, _) => format!("{store}; this node was not started from config files"),
            (Some(_), _) if self.current => format!("{store}: this node's config"),
            (Some(hash), Some(standing @ Standing::Superseded { .. })) => {
                format!(
                    "{store}; this node's config (hash {hash}) was {}",
                    standing.describe()
                )
            }
            (Some(hash), _) => format!(
                "{store}; this node's config (hash {hash}) was applied before that one; \
                 give this node the newer files"
            ),
        }
    }
}

/// What a start or a reload (not forced) of a config with `hash` would do against
/// the store's generations (`history`, newest first), in one line: `kairos check`
/// says it without touching the store.
pub fn describe_claim(history: &[ConfigGeneration], hash: &str, shared: bool) -> String {
    match judge(history, hash, shared, false) {
        Judgement::Current(generation) => Standing::Current {
            generation,
            recorded: false,
        }
        .describe(),
        Judgement::Superseded { was, newest } => Standing::Superseded { was, newest }.describe(),
        Judgement::Record { generation, .. } => match history.first() {
            None => format!(
                "the job store holds no config generation yet: a start or reload applies \
                 this config as generation {generation}"
            ),
            Some(newest) => format!(
                "the job store holds config generation {} (hash {}, applied by node {:?}): \
                 a start or reload applies this config as generation {generation}",
                newest.generation, newest.hash, newest.node_id
            ),
        },
    }
}

/// What [`judge`] decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Judgement {
    /// The newest generation holds the content already.
    Current(ConfigGeneration),
    /// Record the content as the next generation, then apply it.
    Record {
        /// The next generation's number.
        generation: u64,
        /// Whether it rolls back to superseded content.
        forced: bool,
    },
    /// Leave the store alone.
    Superseded {
        /// The older generation that held the content.
        was: u64,
        /// The newest generation.
        newest: ConfigGeneration,
    },
}

/// The rule of docs/config-reload.md, on `history` (the store's generations, newest
/// first): content the newest generation holds is current; content never applied is
/// new and recorded; content applied before and replaced since is superseded on a
/// shared store unless `force`, and recorded again (a rollback) otherwise.
pub(crate) fn judge(
    history: &[ConfigGeneration],
    hash: &str,
    shared: bool,
    force: bool,
) -> Judgement {
    let next = history
        .first()
        .map_or(1, |newest| newest.generation.saturating_add(1));
    match history.first() {
        Some(newest) if newest.hash == hash => Judgement::Current(newest.clone()),
        Some(newest) => match history.iter().find(|older| older.hash == hash) {
            Some(older) if shared && !force => Judgement::Superseded {
                was: older.generation,
                newest: newest.clone(),
            },
            Some(_) => Judgement::Record {
                generation: next,
                forced: shared,
            },
            None => Judgement::Record {
                generation: next,
                forced: false,
            },
        },
        None => Judgement::Record {
            generation: next,
            forced: false,
        },
    }
}

impl Scheduler {
    /// The store that keeps the config generations (see the ground rules).
    fn generation_store(&self) -> Result<&std::sync::Arc<dyn JobStore>, SchedulerError> {
        let default = self.inner.store(&self.inner.defaults.jobstore)?;
        if default.is_shared() {
            return Ok(default);
        }
        Ok(self
            .inner
            .stores
            .values()
            .find(|store| store.is_shared())
            .unwrap_or(default))
    }

    /// The configs applied to the default job store, newest first, at most `limit`.
    pub async fn config_generations(
        &self,
        limit: usize,
    ) -> Result<Vec<ConfigGeneration>, SchedulerError> {
        Ok(self.generation_store()?.config_generations(limit).await?)
    }

    /// Decides whether this node's config (the jobs hash `hash`) may replace what the
    /// store holds, recording it as the next generation when it is new (or when
    /// `force`d, or on a store that cannot be shared). Another node recording a
    /// generation at the same moment makes this read again and decide again.
    pub async fn claim_config_generation(
        &self,
        hash: &str,
        force: bool,
    ) -> Result<Standing, SchedulerError> {
        let store = self.generation_store()?;
        for _ in 0..CLAIM_ATTEMPTS {
            let history = store.config_generations(usize::MAX).await?;
            match judge(&history, hash, store.is_shared(), force) {
                Judgement::Current(generation) => {
                    return Ok(Standing::Current {
                        generation,
                        recorded: false,
                    })
                }
                Judgement::Superseded { was, newest } => {
                    return Ok(Standing::Superseded { was, newest })
                }
                Judgement::Record { generation, forced } => {
                    let next = ConfigGeneration {
                        generation,
                        hash: hash.to_owned(),
                        node_id: self.inner.id.clone(),
                        forced,
                    };
                    if store.record_config_generation(next.clone()).await? {
                        return Ok(Standing::Current {
                            generation: next,
                            recorded: true,
                        });
                    }
                }
            }
        }
        Err(SchedulerError::Store(StoreError::unavailable(format!(
            "config generations kept being recorded by other nodes ({CLAIM_ATTEMPTS} tries)"
        ))))
    }

    /// Remembers where this node's config stands (`hash`, and what its last start or
    /// reload found), for [`Scheduler::config_state`].
    pub fn set_config_status(&self, hash: String, standing: Standing) {
        let mut status = self
            .inner
            .config_status
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *status = Some((hash, standing));
    }

    /// The store's newest config generation against this node's config, read now.
    pub async fn config_state(&self) -> Result<ConfigState, SchedulerError> {
        let store = self.generation_store()?;
        let newest = store.config_generations(1).await?.into_iter().next();
        let (node_hash, node) = self
            .inner
            .config_status
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
            .map_or((None, None), |(hash, standing)| {
                (Some(hash), Some(standing))
            });
        let current = match (&newest, &node_hash) {
            (Some(newest), Some(hash)) => newest.hash == *hash,
            _ => false,
        };
        Ok(ConfigState {
            store: newest,
            node_hash,
            node,
            current,
            shared: store.is_shared(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generation(generation: u64, hash: &str) -> ConfigGeneration {
        ConfigGeneration {
            generation,
            hash: hash.to_owned(),
            node_id: "n".to_owned(),
            forced: false,
        }
    }

    #[test]
    fn the_rule_of_the_reload_table() {
        // Newest first: a, then b, then c.
        let history = [generation(3, "c"), generation(2, "b"), generation(1, "a")];
        for shared in [true, false] {
            for force in [true, false] {
                assert_eq!(
                    judge(&[], "a", shared, force),
                    Judgement::Record {
                        generation: 1,
                        forced: false
                    }
                );
                assert_eq!(
                    judge(&history, "c", shared, force),
                    Judgement::Current(generation(3, "c"))
                );
                assert_eq!(
                    judge(&history, "d", shared, force),
                    Judgement::Record {
                        generation: 4,
                        forced: false
                    }
                );
            }
        }
        assert_eq!(
            judge(&history, "a", true, false),
            Judgement::Superseded {
                was: 1,
                newest: generation(3, "c")
            }
        );
        assert_eq!(
            judge(&history, "b", true, true),
            Judgement::Record {
                generation: 4,
                forced: true
            }
        );
        // One node: a rollback is an edit like any other.
        assert_eq!(
            judge(&history, "a", false, false),
            Judgement::Record {
                generation: 4,
                forced: false
            }
        );
    }
}
