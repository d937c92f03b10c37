//! Where zone rules come from: the system's tz database when there is one, else the
//! rules compiled into the binary (docs/semantics.md, "Zone rules").
//!
//! A country that changes its DST rules ships as a tzdata update of the operating
//! system; cron and APScheduler follow it, and so does kairos: named zones read their
//! rules from the TZif files of a zoneinfo directory (`/usr/share/zoneinfo`, or
//! `KAIROS_TZDIR`), parsed by `jiff`, and fall back to chrono-tz's compiled-in rules
//! for a zone the directory lacks or cannot be read. [`reload`] reads the directory
//! again (the daemon's reload does it), so an update applies without a rebuild.
//!
//! # Ground rules
//! - A [`super::Zone`] names its zone (a chrono-tz identifier, which is what is stored
//!   and packed); only its *rules* come from here. A zone new in the system's data
//!   but unknown to chrono-tz cannot be named.
//! - The rules are process-wide, like the system's own time zone: one source for
//!   every scheduler in the process. Files are read lazily, each zone once per
//!   source, and each thread keeps the source it last saw until a reload, so looking
//!   an offset up takes no lock after the first.
//! - Any file problem (missing, unreadable, not TZif) means the compiled-in rules for
//!   that zone, with a warning; never an error at a fire time.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use chrono::FixedOffset;
use chrono_tz::Tz;

/// The environment variable naming the zoneinfo directory to read, or
/// [`COMPILED_IN`] for the rules compiled in.
pub const TZDIR_ENV: &str = "KAIROS_TZDIR";

/// The value of [`TZDIR_ENV`] that selects the compiled-in rules.
pub const COMPILED_IN: &str = "compiled-in";

/// Where the system keeps its tz database on Linux and the BSDs.
pub const SYSTEM_TZDIR: &str = "/usr/share/zoneinfo";

/// Which zone rules are in use, as `kairos check` and `/health` show them.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TzDataInfo {
    /// `system` (TZif files of a zoneinfo directory) or `compiled-in`.
    pub source: &'static str,
    /// The zoneinfo directory, for `system`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// The tz database release (`2025b`), or `unknown` when the directory does not
    /// say.
    pub version: String,
}

impl std::fmt::Display for TzDataInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.dir {
            Some(dir) => write!(f, "{} ({}, {})", self.version, self.source, dir.display()),
            None => write!(f, "{} ({})", self.version, self.source),
        }
    }
}

impl TzDataInfo {
    /// What a store records as the rules its next run times follow
    /// ([`crate::store::Cluster::zone_rules`]): source, release and directory. `None`
    /// when the release is `unknown`: such rules cannot be told from the next ones,
    /// so every start recomputes the zoned jobs' next run times.
    pub fn fingerprint(&self) -> Option<String> {
        (self.version != "unknown").then(|| self.to_string())
    }
}

/// What [`reload`] changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TzDataChange {
    /// The rules in use before.
    pub before: TzDataInfo,
    /// The rules in use now.
    pub after: TzDataInfo,
    /// The zones, among those read before, whose rules now differ.
    pub changed: Vec<Tz>,
}

impl TzDataChange {
    /// Whether zone `tz`'s rules may have changed: its file did, or the release or
    /// source did (a zone not read in this process may have been computed with the
    /// old release by another, or before a restart's reload).
    pub fn affects(&self, tz: Tz) -> bool {
        self.before != self.after || self.changed.contains(&tz)
    }

    /// Whether any zone's rules may have changed.
    pub fn is_empty(&self) -> bool {
        self.before == self.after && self.changed.is_empty()
    }
}

/// One source of rules with the zones read from it so far.
struct TzData {
    info: TzDataInfo,
    /// By chrono-tz discriminant: the zone's file, parsed, with its bytes (to tell a
    /// changed file at a reload); `None` when it could not be had (compiled-in
    /// rules). Unset until first asked for.
    zones: Box<[OnceLock<Option<SystemZone>>]>,
}

struct SystemZone {
    rules: jiff::tz::TimeZone,
    bytes: Vec<u8>,
}

fn current() -> &'static RwLock<Arc<TzData>> {
    static CURRENT: OnceLock<RwLock<Arc<TzData>>> = OnceLock::new();
    CURRENT.get_or_init(|| RwLock::new(Arc::new(TzData::open(configured_dir()))))
}

fn loaded() -> Arc<TzData> {
    // A panic while swapping cannot leave a half-built source: the Arc is whole.
    Arc::clone(
        &current()
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner()),
    )
}

/// Bumped by each [`reload`] after the swap, so a thread that sees the new number
/// finds the new source.
static GENERATION: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// This thread's copy of the source in use and its generation: a cron search looks
    /// offsets up thousands of times, and threads sharing a lock (or a reference
    /// count) for each would contend on it.
    static LOCAL: RefCell<Option<(u64, Arc<TzData>)>> = const { RefCell::new(None) };
}

/// Calls `f` with the source in use.
fn with_current<R>(f: impl FnOnce(&TzData) -> R) -> R {
    let generation = GENERATION.load(Ordering::Acquire);
    LOCAL.with(|local| {
        let fresh = matches!(&*local.borrow(), Some((seen, _)) if *seen == generation);
        if !fresh {
            *local.borrow_mut() = Some((generation, loaded()));
        }
        match &*local.borrow() {
            Some((_, data)) => f(data),
            None => f(&loaded()),
        }
    })
}

/// The rules in use.
pub fn info() -> TzDataInfo {
    loaded().info.clone()
}

/// Reads the zone rules again: the setting ([`TZDIR_ENV`]), the directory's version
/// and, as each zone is next asked for, its file. Returns what changed among the
/// zones in use.
pub fn reload() -> TzDataChange {
    let fresh = Arc::new(TzData::open(configured_dir()));
    let old = {
        let mut slot = current()
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        std::mem::replace(&mut *slot, Arc::clone(&fresh))
    };
    GENERATION.fetch_add(1, Ordering::AcqRel);
    let changed = chrono_tz::TZ_VARIANTS
        .iter()
        .zip(old.zones.iter())
        .filter_map(|(tz, before)| {
            let before = before.get()?;
            let after = fresh.zone(*tz);
            let differs = match (before, after) {
                (Some(before), Some(after)) => before.bytes != after.bytes,
                (None, None) => false,
                _ => true,
            };
            differs.then_some(*tz)
        })
        .collect();
    TzDataChange {
        before: old.info.clone(),
        after: fresh.info.clone(),
        changed,
    }
}

/// The offset of zone `tz` at `unix_seconds` from the system's rules, `None` when the
/// compiled-in rules apply to it.
pub(crate) fn system_offset(tz: Tz, unix_seconds: i64) -> Option<FixedOffset> {
    with_current(|data| {
        let zone = data.zone(tz)?;
        let timestamp = jiff::Timestamp::from_second(unix_seconds).unwrap_or(if unix_seconds < 0 {
            jiff::Timestamp::MIN
        } else {
            jiff::Timestamp::MAX
        });
        FixedOffset::east_opt(zone.rules.to_offset(timestamp).seconds())
    })
}

/// Whether zone `tz` has rules from the system (else the compiled-in ones apply).
pub(crate) fn has_system_rules(tz: Tz) -> bool {
    with_current(|data| data.zone(tz).is_some())
}

/// Set by [`use_rules_from`]: it outranks [`TZDIR_ENV`].
static CHOSEN: RwLock<Option<Option<PathBuf>>> = RwLock::new(None);

/// Set by [`configure`] (the daemon's `[scheduler] tzdir`): [`TZDIR_ENV`] outranks it.
static CONFIGURED: RwLock<Option<Option<PathBuf>>> = RwLock::new(None);

/// Takes the zone rules from the zoneinfo directory `dir`, or the compiled-in rules
/// (`Some(None)`), unless [`TZDIR_ENV`] names a source; `None` forgets the setting.
/// The config's `[scheduler] tzdir` is this (docs/semantics.md, "Zone rules"): the
/// environment wins, so a one-off run can try other rules without editing the config.
/// Read at the next [`reload`].
pub fn configure(dir: Option<Option<PathBuf>>) {
    *CONFIGURED
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = dir;
}

/// Takes the zone rules from the zoneinfo directory `dir`, or from the compiled-in
/// rules (`None`), for the rest of the process and whatever [`TZDIR_ENV`] says, and
/// reads them: for a program that keeps its own tz database, and for tests whose
/// reference is the compiled-in rules (chrono-tz's tables end with 2099, where the
/// system's TZif files go on with their last rules). Returns what changed, as
/// [`reload`] does; the scheduler's [`crate::scheduler::Scheduler::reload_zone_rules`]
/// moves next run times for it.
pub fn use_rules_from(dir: Option<PathBuf>) -> TzDataChange {
    *CHOSEN
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(dir);
    reload()
}

/// The zoneinfo directory the setting names; `None` for the compiled-in rules.
fn configured_dir() -> Option<PathBuf> {
    if let Some(chosen) = CHOSEN
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone()
    {
        return chosen;
    }
    match std::env::var_os(TZDIR_ENV) {
        Some(value) if value == COMPILED_IN => None,
        Some(value) if !value.is_empty() => Some(PathBuf::from(value)),
        _ => match CONFIGURED
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
        {
            Some(configured) => configured,
            None => Some(PathBuf::from(SYSTEM_TZDIR)).filter(|dir| dir.join("UTC").is_file()),
        },
    }
}

impl TzData {
    fn open(dir: Option<PathBuf>) -> TzData {
        let zones = chrono_tz::TZ_VARIANTS
            .iter()
            .map(|_| OnceLock::new())
            .collect();
        let info = match dir {
            Some(dir) if dir.is_dir() => TzDataInfo {
                source: "system",
                version: directory_version(&dir).unwrap_or_else(|| "unknown".to_owned()),
                dir: Some(dir),
            },
            other => {
                if let Some(dir) = other {
                    tracing::warn!(
                        dir = %dir.display(),
                        "{TZDIR_ENV} is not a directory; using the compiled-in zone rules"
                    );
                }
                TzDataInfo {
                    source: COMPILED_IN,
                    dir: None,
                    version: chrono_tz::IANA_TZDB_VERSION.to_owned(),
                }
            }
        };
        TzData { info, zones }
    }

    fn zone(&self, tz: Tz) -> Option<&SystemZone> {
        let dir = self.info.dir.as_deref()?;
        self.zones
            .get(tz as usize)?
            .get_or_init(|| read_zone(dir, tz.name()))
            .as_ref()
    }
}

fn read_zone(dir: &Path, name: &str) -> Option<SystemZone> {
    let path = dir.join(name);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) => {
            // Minimal tzdata packages leave zones out: theirs are the compiled-in rules.
            tracing::debug!(path = %path.display(), %error, "zone file not read; compiled-in rules");
            return None;
        }
    };
    match jiff::tz::TimeZone::tzif(name, &bytes) {
        Ok(rules) => Some(SystemZone { rules, bytes }),
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "zone file is not TZif; compiled-in rules");
            None
        }
    }
}

/// The release a zoneinfo directory holds: its `+VERSION` file (Debian, Alpine), or the
/// `# version` line that opens `tzdata.zi`.
fn directory_version(dir: &Path) -> Option<String> {
    if let Ok(text) = std::fs::read_to_string(dir.join("+VERSION")) {
        let version = text.trim();
        if !version.is_empty() {
            return Some(version.to_owned());
        }
    }
    let text = std::fs::read_to_string(dir.join("tzdata.zi")).ok()?;
    let first = text.lines().next()?;
    let version = first.strip_prefix("# version")?.trim();
    (!version.is_empty()).then(|| version.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_comes_from_version_or_tzdata_zi() {
        let dir = std::env::temp_dir().join(format!("kairos-tzversion-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temp dir");
        assert_eq!(directory_version(&dir), None);
        std::fs::write(dir.join("tzdata.zi"), "# version 2031z\n# more\n").expect("write");
        assert_eq!(directory_version(&dir).as_deref(), Some("2031z"));
        std::fs::write(dir.join("+VERSION"), "2032a\n").expect("write");
        assert_eq!(directory_version(&dir).as_deref(), Some("2032a"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_missing_or_foreign_file_means_the_compiled_in_rules() {
        let dir = std::env::temp_dir().join(format!("kairos-tzfiles-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("Europe")).expect("a temp dir");
        std::fs::write(dir.join("Europe/Berlin"), "not a zone file").expect("write");
        assert!(read_zone(&dir, "Europe/Berlin").is_none());
        assert!(read_zone(&dir, "Asia/Tokyo").is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
