//! The daemon's log output: which events pass (the `[log]` level, or `RUST_LOG`), how a
//! line looks (text or JSON), and where it goes (stderr, which systemd hands to journald).
//!
//! The library itself only emits `tracing` events and never installs a subscriber; that
//! is the embedding program's choice. This module is the choice `kairos run` makes.
//!
//! # Ground rules
//! - `RUST_LOG`, when set and not empty, replaces the configured level entirely, so an
//!   operator can turn on `kairos::store=trace` for one run without editing the config.
//! - Colors only on a terminal: escape codes in a file or the journal are noise.
//! - Under journald (stderr is the stream `$JOURNAL_STREAM` names) lines carry no
//!   timestamp and no colors, since journald stamps every line itself, and each line
//!   starts with its syslog priority (`<3>` … `<7>`, the `sd-daemon(3)` convention) so
//!   that `journalctl -p warning` works. journald strips the prefix before storing.

use std::fmt;
use std::io::IsTerminal;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::LogFormat;

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// The configured level is not a level name nor a list of `target=level` directives.
    #[error(
        "invalid log level {level:?}: expected one of off, error, warn, info, debug, trace \
         (or directives such as \"info,kairos::store=debug\"){}",
        reason.as_deref().map(|reason| format!(": {reason}")).unwrap_or_default()
    )]
    InvalidLevel {
        /// The level as given.
        level: String,
        /// What the filter parser said, when it said something.
        reason: Option<String>,
    },
    /// `RUST_LOG` is set but is not a valid filter.
    #[error("invalid RUST_LOG {value:?}: {source}")]
    InvalidRustLog {
        /// The variable's value.
        value: String,
        /// What the filter parser said.
        source: tracing_subscriber::filter::ParseError,
    },
    /// A global subscriber was already installed (`init` was called twice, or the
    /// embedding program installed its own).
    #[error("logging is already set up: {0}")]
    AlreadyInitialized(#[from] tracing_subscriber::util::TryInitError),
}

/// Installs the process-wide subscriber that writes to stderr.
///
/// `level` is a level name (`info`) or `tracing` filter directives
/// (`info,kairos::store=debug`); a non-empty `RUST_LOG` overrides it. Call once, early in
/// `main`; events emitted before it are dropped.
pub fn init(level: &str, format: LogFormat) -> Result<(), LoggingError> {
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = filter(level, rust_log.as_deref())?;
    let layer = output_layer(format, Destination::detect(), std::io::stderr);
    tracing_subscriber::registry()
        .with(layer.with_filter(filter))
        .try_init()?;
    Ok(())
}

/// The filter: `RUST_LOG` when it is set and not empty, else the configured level.
fn filter(level: &str, rust_log: Option<&str>) -> Result<EnvFilter, LoggingError> {
    if let Some(value) = rust_log.filter(|value| !value.trim().is_empty()) {
        return EnvFilter::try_new(value).map_err(|source| LoggingError::InvalidRustLog {
            value: value.to_string(),
            source,
        });
    }
    check_level(level)?;
    // The config may say "warn, kairos=debug"; EnvFilter takes no spaces around commas.
    let directives: Vec<&str> = level.split(',').map(str::trim).collect();
    EnvFilter::try_new(directives.join(",")).map_err(|error| LoggingError::InvalidLevel {
        level: level.to_string(),
        reason: Some(error.to_string()),
    })
}

/// Rejects what `EnvFilter` would quietly take for something else: a bare word that is
/// not a level (`verbose`) parses as a target name with every level enabled for it, and
/// an empty string or a number parses as a level. Directives with `=` are left to the
/// parser, which does reject a bad level after the `=`.
fn check_level(level: &str) -> Result<(), LoggingError> {
    const LEVEL_NAMES: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let is_level_name = |word: &str| {
        LEVEL_NAMES
            .iter()
            .any(|name| name.eq_ignore_ascii_case(word))
    };
    let mut directives = level.split(',').map(str::trim).peekable();
    let well_formed = directives.peek().is_some_and(|first| !first.is_empty())
        && directives.all(|directive| directive.contains('=') || is_level_name(directive));
    if well_formed {
        Ok(())
    } else {
        Err(LoggingError::InvalidLevel {
            level: level.to_string(),
            reason: None,
        })
    }
}

/// Where stderr goes, which decides timestamps, colors and priority prefixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Destination {
    /// A terminal: colors, unless `NO_COLOR` is set (`crate::color`).
    Terminal,
    /// A file or a pipe: plain text.
    Plain,
    /// journald's stream socket: no timestamps, no colors, priority prefixes.
    Journal,
}

impl Destination {
    fn detect() -> Destination {
        if stderr_is_journal() {
            Destination::Journal
        } else if std::io::stderr().is_terminal() {
            Destination::Terminal
        } else {
            Destination::Plain
        }
    }
}

/// Whether stderr is the journald stream that `$JOURNAL_STREAM` (`DEVICE:INODE`) names.
///
/// Comparing with stderr, rather than trusting the variable alone, is what
/// `systemd.exec(5)` asks for: the variable is inherited by anything the service starts,
/// including a `kairos` whose stderr a script redirected to a file.
fn stderr_is_journal() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;

    let Some(journal_stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    // fstat(2) through a duplicate of fd 2, which std closes again when the File drops.
    let metadata = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map(std::fs::File::from)
        .and_then(|stderr| stderr.metadata());
    metadata.is_ok_and(|metadata| names_file(&journal_stream, metadata.dev(), metadata.ino()))
}

/// Whether a `$JOURNAL_STREAM` value (`DEVICE:INODE`, in decimal) names the file with
/// this device and inode number.
fn names_file(journal_stream: &std::ffi::OsStr, device: u64, inode: u64) -> bool {
    journal_stream
        .to_str()
        .and_then(|value| value.split_once(':'))
        .is_some_and(|(stream_device, stream_inode)| {
            stream_device.parse() == Ok(device) && stream_inode.parse() == Ok(inode)
        })
}

/// The formatting layer for `log_format` and `destination`, writing to `make_writer`.
fn output_layer<S, W>(
    log_format: LogFormat,
    destination: Destination,
    make_writer: W,
) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
    W: for<'writer> MakeWriter<'writer> + Send + Sync + 'static,
{
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(make_writer)
        .with_ansi(destination == Destination::Terminal && crate::color::wanted(true));
    match (log_format, destination) {
        (LogFormat::Text, Destination::Journal) => layer
            .event_format(JournalPriority(
                format::format().without_time().with_ansi(false),
            ))
            .boxed(),
        (LogFormat::Text, _) => layer.boxed(),
        // JSON keeps its timestamp under journald: it is a field consumers parse. The
        // prefix still goes in front, and journald strips it, so what it stores is
        // exactly one JSON object, with the priority recorded beside it.
        (LogFormat::Json, Destination::Journal) => layer
            .with_ansi(false)
            .fmt_fields(JsonFields::new())
            .event_format(JournalPriority(format::format().json()))
            .boxed(),
        (LogFormat::Json, _) => layer.with_ansi(false).json().boxed(),
    }
}

/// A formatter that puts the event's syslog priority in front of every line `inner`
/// writes, so journald files each line of a multi-line message at the event's level
/// (it reads the prefix per line).
struct JournalPriority<F>(F);

impl<S, N, F> FormatEvent<S, N> for JournalPriority<F>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
    N: for<'writer> FormatFields<'writer> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut formatted = String::new();
        self.0
            .format_event(ctx, Writer::new(&mut formatted), event)?;
        write_with_priority(&mut writer, *event.metadata().level(), &formatted)
    }
}

/// Writes `formatted` with `<priority>` in front of each line. The text formatter pads
/// the level to five columns (` INFO`); that leading space is dropped, since journald
/// would keep it in the message.
fn write_with_priority(out: &mut impl fmt::Write, level: Level, formatted: &str) -> fmt::Result {
    let priority = syslog_priority(level);
    for line in formatted.trim_start_matches(' ').lines() {
        writeln!(out, "<{priority}>{line}")?;
    }
    Ok(())
}

/// The syslog priority journald records for a `tracing` level (`syslog(3)`: 3 err,
/// 4 warning, 6 info, 7 debug). `tracing` has no notice level and nothing finer than
/// debug, so 5 is unused and trace shares 7.
pub(crate) fn syslog_priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A `MakeWriter` that collects everything written, for asserting exact lines.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Captured {
        fn text(&self) -> String {
            let bytes = self.0.lock().map(|bytes| bytes.clone()).unwrap_or_default();
            String::from_utf8_lossy(&bytes).into_owned()
        }
    }

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| io::Error::other("poisoned"))?
                .extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'writer> MakeWriter<'writer> for Captured {
        type Writer = Captured;

        fn make_writer(&'writer self) -> Captured {
            self.clone()
        }
    }

    /// Runs `emit` under a subscriber with `format` and `destination`, returns the output.
    fn output_of(log_format: LogFormat, destination: Destination, emit: impl FnOnce()) -> String {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::registry().with(
            output_layer(log_format, destination, captured.clone())
                .with_filter(tracing_subscriber::filter::LevelFilter::TRACE),
        );
        tracing::subscriber::with_default(subscriber, emit);
        captured.text()
    }

    #[test]
    fn levels_map_to_syslog_priorities() {
        assert_eq!(syslog_priority(Level::ERROR), 3);
        assert_eq!(syslog_priority(Level::WARN), 4);
        assert_eq!(syslog_priority(Level::INFO), 6);
        assert_eq!(syslog_priority(Level::DEBUG), 7);
        assert_eq!(syslog_priority(Level::TRACE), 7);
    }

    #[test]
    fn every_line_gets_the_priority_prefix() -> fmt::Result {
        let mut out = String::new();
        write_with_priority(&mut out, Level::WARN, " WARN kairos: first\nsecond\n")?;
        assert_eq!(out, "<4>WARN kairos: first\n<4>second\n");
        Ok(())
    }

    #[test]
    fn journal_text_has_prefix_and_no_timestamp_or_colors() {
        let output = output_of(LogFormat::Text, Destination::Journal, || {
            tracing::error!(target: "kairos::store", job = "nightly", "store unreachable");
            tracing::info!(target: "kairos::scheduler", "started");
        });
        assert_eq!(
            output,
            "<3>ERROR kairos::store: store unreachable job=\"nightly\"\n\
             <6>INFO kairos::scheduler: started\n"
        );
    }

    #[test]
    fn journal_json_is_one_prefixed_object_per_line() -> Result<(), serde_json::Error> {
        let output = output_of(LogFormat::Json, Destination::Journal, || {
            tracing::warn!(target: "kairos::executor", job = "nightly", "pool full");
        });
        let line = output.strip_suffix('\n').unwrap_or(&output);
        assert!(!line.contains('\n'), "one line: {output:?}");
        let object = line
            .strip_prefix("<4>")
            .unwrap_or_else(|| panic!("prefix: {line:?}"));
        let value: serde_json::Value = serde_json::from_str(object)?;
        assert_eq!(value["level"], "WARN");
        assert_eq!(value["target"], "kairos::executor");
        assert_eq!(value["fields"]["message"], "pool full");
        assert_eq!(value["fields"]["job"], "nightly");
        assert!(value["timestamp"].is_string());
        Ok(())
    }

    #[test]
    fn json_has_timestamp_level_target_fields() -> Result<(), serde_json::Error> {
        let output = output_of(LogFormat::Json, Destination::Plain, || {
            tracing::debug!(target: "kairos::daemon", attempt = 2, "reloading");
        });
        let value: serde_json::Value = serde_json::from_str(output.trim_end())?;
        assert_eq!(value["level"], "DEBUG");
        assert_eq!(value["target"], "kairos::daemon");
        assert_eq!(value["fields"]["message"], "reloading");
        assert_eq!(value["fields"]["attempt"], 2);
        assert!(value["timestamp"].is_string());
        Ok(())
    }

    #[test]
    fn journal_stream_must_name_stderr() {
        use std::ffi::OsStr;
        assert!(names_file(OsStr::new("64769:123456"), 64769, 123456));
        assert!(!names_file(OsStr::new("64769:123456"), 64769, 654321));
        assert!(!names_file(OsStr::new("64769:123456"), 1, 123456));
        assert!(!names_file(OsStr::new("64769"), 64769, 123456));
        assert!(!names_file(OsStr::new(""), 0, 0));
    }

    #[test]
    fn plain_text_has_a_timestamp_and_no_colors() {
        let output = output_of(LogFormat::Text, Destination::Plain, || {
            tracing::info!(target: "kairos", "hello");
        });
        assert!(output.ends_with(" INFO kairos: hello\n"), "{output:?}");
        assert!(
            output.starts_with(|c: char| c.is_ascii_digit()),
            "{output:?}"
        );
        assert!(!output.contains('\u{1b}'), "{output:?}");
    }

    #[test]
    fn rust_log_overrides_the_level() -> Result<(), LoggingError> {
        assert_eq!(
            filter("info", Some("kairos=trace"))?.to_string(),
            "kairos=trace"
        );
        // An empty RUST_LOG (`RUST_LOG= kairos run`) means "not set".
        assert_eq!(filter("warn", Some("  "))?.to_string(), "warn");
        Ok(())
    }

    #[test]
    fn levels_and_directives_are_accepted() {
        for level in [
            "info",
            "DEBUG",
            "off",
            "warn,kairos::store=trace",
            "kairos=debug",
        ] {
            assert!(filter(level, None).is_ok(), "{level}");
        }
        // Spaces after commas, as people write lists.
        let spaced = filter("warn, kairos::store=trace", None).map(|filter| filter.to_string());
        assert_eq!(spaced.ok().as_deref(), Some("kairos::store=trace,warn"));
    }

    #[test]
    fn an_invalid_level_is_named() {
        for level in ["verbose", "", "3", "info,loud", "kairos=verbose"] {
            let error = filter(level, None).err().map(|error| error.to_string());
            let error = error.unwrap_or_else(|| panic!("{level:?} was accepted"));
            assert!(
                error.starts_with(&format!("invalid log level {level:?}")),
                "{error}"
            );
        }
    }

    #[test]
    fn an_invalid_rust_log_is_named() {
        let error = filter("info", Some("kairos=loud"))
            .err()
            .map(|error| error.to_string());
        assert!(
            error
                .as_deref()
                .is_some_and(|error| error.starts_with("invalid RUST_LOG \"kairos=loud\"")),
            "{error:?}"
        );
    }
}
