//! Whether output gets color: the one rule the CLI's tables and the daemon's log lines
//! share.
//!
//! Color only goes to a terminal, and never when `NO_COLOR` is set to anything but an
//! empty string (the convention of no-color.org, which `ls`, `git` and ripgrep follow):
//! a pipe, a file or the journal gets plain text.

use std::ffi::OsStr;

/// Whether output to a stream gets color, given whether that stream is a terminal;
/// reads `NO_COLOR` from the environment.
pub fn wanted(is_terminal: bool) -> bool {
    decide(is_terminal, std::env::var_os("NO_COLOR").as_deref())
}

/// [`wanted`], with `NO_COLOR`'s value passed in.
pub fn decide(is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    is_terminal && no_color.is_none_or(OsStr::is_empty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_terminal_without_no_color_gets_color() {
        assert!(decide(true, None));
        assert!(
            decide(true, Some(OsStr::new(""))),
            "an empty NO_COLOR is unset"
        );
        assert!(!decide(true, Some(OsStr::new("1"))));
        assert!(!decide(false, None));
        assert!(!decide(false, Some(OsStr::new("1"))));
    }
}
