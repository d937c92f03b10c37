//! The `command` task's output: stdout and stderr read together, bounded to the first
//! and last bytes, so a program printing 100 MB neither blocks on a full pipe nor makes
//! the scheduler hold 100 MB.

use std::collections::VecDeque;
use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{ChildStderr, ChildStdout};

use crate::history::MAX_OUTPUT_BYTES;
use crate::task::args::utf8_prefix;

/// The child's stdout and stderr, read together into one [`Capture`].
pub(super) struct Output {
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
    capture: Capture,
    stdout_buffer: Box<[u8]>,
    stderr_buffer: Box<[u8]>,
}

impl Output {
    pub(super) fn new(stdout: Option<ChildStdout>, stderr: Option<ChildStderr>) -> Output {
        Output {
            stdout,
            stderr,
            capture: Capture::new(MAX_OUTPUT_BYTES),
            stdout_buffer: vec![0; 16 * 1024].into_boxed_slice(),
            stderr_buffer: vec![0; 16 * 1024].into_boxed_slice(),
        }
    }

    pub(super) fn is_open(&self) -> bool {
        self.stdout.is_some() || self.stderr.is_some()
    }

    /// Reads one chunk from whichever pipe has one; a pipe at its end is closed.
    /// Cancel safe: no bytes are lost if it is dropped before it returns.
    pub(super) async fn read_some(&mut self) {
        tokio::select! {
            read = read_pipe(&mut self.stdout, &mut self.stdout_buffer) => {
                self.take(read, true);
            }
            read = read_pipe(&mut self.stderr, &mut self.stderr_buffer) => {
                self.take(read, false);
            }
        }
    }

    pub(super) fn take(&mut self, read: io::Result<usize>, from_stdout: bool) {
        match read {
            Ok(0) | Err(_) => {
                if from_stdout {
                    self.stdout = None;
                } else {
                    self.stderr = None;
                }
            }
            Ok(length) => {
                let buffer = if from_stdout {
                    &self.stdout_buffer
                } else {
                    &self.stderr_buffer
                };
                self.capture.push(&buffer[..length]);
            }
        }
    }

    /// Reads until both pipes end, for at most `grace`, then closes them.
    pub(super) async fn drain(&mut self, grace: Duration) {
        let _ = tokio::time::timeout(grace, async {
            while self.is_open() {
                self.read_some().await;
            }
        })
        .await;
        self.stdout = None;
        self.stderr = None;
    }

    pub(super) fn into_text(self) -> String {
        self.capture.into_text()
    }
}

/// Reads from `pipe`, or waits forever once it is closed.
async fn read_pipe<R: AsyncRead + Unpin>(
    pipe: &mut Option<R>,
    buffer: &mut [u8],
) -> io::Result<usize> {
    match pipe {
        Some(pipe) => pipe.read(buffer).await,
        None => std::future::pending().await,
    }
}

/// Bounded output: the first and the last bytes, and how many there were in all.
pub(super) struct Capture {
    head: Vec<u8>,
    tail: VecDeque<u8>,
    /// How many bytes each of `head` and `tail` may keep.
    half: usize,
    total: u64,
}

impl Capture {
    /// A capture whose text stays within `limit` bytes, the cut marker included.
    pub(super) fn new(limit: usize) -> Capture {
        let half = limit.saturating_sub(MARKER_ROOM) / 2;
        Capture {
            head: Vec::new(),
            tail: VecDeque::new(),
            half,
            total: 0,
        }
    }

    pub(super) fn push(&mut self, mut bytes: &[u8]) {
        self.total += bytes.len() as u64;
        let room = self.half - self.head.len();
        let (into_head, rest) = bytes.split_at(room.min(bytes.len()));
        self.head.extend_from_slice(into_head);
        bytes = rest;
        if bytes.len() >= self.half {
            self.tail.clear();
            self.tail.extend(&bytes[bytes.len() - self.half..]);
        } else {
            let overflow = (self.tail.len() + bytes.len()).saturating_sub(self.half);
            self.tail.drain(..overflow);
            self.tail.extend(bytes);
        }
    }

    pub(super) fn into_text(self) -> String {
        let mut text = utf8_prefix(&self.head);
        let kept = self.head.len() + self.tail.len();
        if self.total > kept as u64 {
            text.push_str(&format!(
                "\n[output cut: {} bytes in all, kept the first {} and the last {}]\n",
                self.total,
                self.head.len(),
                self.tail.len()
            ));
        }
        let tail: Vec<u8> = self.tail.into();
        // The tail may start inside a character; skip its continuation bytes.
        let start = tail
            .iter()
            .take(3)
            .take_while(|byte| (**byte & 0b1100_0000) == 0b1000_0000)
            .count();
        text.push_str(&String::from_utf8_lossy(&tail[start..]));
        text
    }
}

/// Room for the cut marker within the limit.
const MARKER_ROOM: usize = 128;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_keeps_head_and_tail() {
        let mut capture = Capture::new(256 + MARKER_ROOM);
        assert_eq!(capture.half, 128);
        for _ in 0..1000 {
            capture.push(&[b'a'; 100]);
        }
        capture.push(b"the end");
        let text = capture.into_text();
        assert!(text.starts_with(&"a".repeat(128)));
        assert!(text.ends_with("the end"));
        assert!(
            text.contains("[output cut: 100007 bytes in all, kept the first 128 and the last 128]")
        );
        assert!(text.len() <= 256 + MARKER_ROOM);

        let mut short = Capture::new(MAX_OUTPUT_BYTES);
        short.push(b"hello ");
        short.push(b"world");
        assert_eq!(short.into_text(), "hello world");
    }

    #[test]
    fn capture_cuts_on_character_boundaries() {
        // Three bytes each side: "é" and half of the next one in the head, half of one
        // and "é" in the tail.
        let mut capture = Capture::new(6 + MARKER_ROOM);
        capture.push("ééééé".as_bytes());
        assert_eq!(
            capture.into_text(),
            "é\n[output cut: 10 bytes in all, kept the first 3 and the last 3]\né"
        );
    }
}
