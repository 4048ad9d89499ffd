//! Line-oriented I/O for NDJSON streams: a reader with a size cap and a
//! writer that puts each event on stdout as one whole, flushed line.

use crate::event::Event;
use std::io::{self, BufRead, Write};
use std::sync::Mutex;

/// The default cap on one input line (64 KiB): far above any event a pup
/// tool writes, small enough that a stream of garbage cannot eat memory.
pub const MAX_LINE: usize = 64 * 1024;

/// One line read by [`LineReader`].
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// A line without its newline (and without a `\r` before it).
    Text(&'a str),
    /// A line longer than the cap; its bytes were discarded. `len` is how
    /// many bytes it had.
    TooLong { len: usize },
    /// A line that is not UTF-8.
    NotUtf8,
}

/// Reads lines from a stream, never holding more than `cap` bytes of one.
pub struct LineReader<R> {
    inner: R,
    cap: usize,
    buf: Vec<u8>,
    /// 1-based number of the line last returned.
    pub line_no: u64,
}

impl<R: BufRead> LineReader<R> {
    pub fn new(inner: R, cap: usize) -> LineReader<R> {
        LineReader {
            inner,
            cap,
            buf: Vec::new(),
            line_no: 0,
        }
    }

    /// The next line, or `None` at the end of the stream. A last line
    /// without a newline is still returned.
    pub fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        self.buf.clear();
        let mut len = 0usize;
        let mut saw_any = false;
        loop {
            let chunk = match self.inner.fill_buf() {
                Ok(c) => c,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if chunk.is_empty() {
                if !saw_any {
                    return Ok(None);
                }
                break;
            }
            saw_any = true;
            let (part, done) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (&chunk[..i], Some(i + 1)),
                None => (chunk, None),
            };
            len += part.len();
            if len <= self.cap {
                self.buf.extend_from_slice(part);
            }
            let used = done.unwrap_or(chunk.len());
            self.inner.consume(used);
            if done.is_some() {
                break;
            }
        }
        self.line_no += 1;
        if len > self.cap {
            self.buf.clear();
            return Ok(Some(Line::TooLong { len }));
        }
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        match std::str::from_utf8(&self.buf) {
            Ok(s) => Ok(Some(Line::Text(s))),
            Err(_) => Ok(Some(Line::NotUtf8)),
        }
    }
}

/// Writes whole lines to stdout, one at a time, flushed at once.
///
/// Many threads share one writer; the lock is held for one line, so lines
/// never interleave and each reaches the reader as soon as it is made.
pub struct LineWriter {
    out: Mutex<io::Stdout>,
}

impl Default for LineWriter {
    fn default() -> Self {
        LineWriter::new()
    }
}

impl LineWriter {
    pub fn new() -> LineWriter {
        LineWriter {
            out: Mutex::new(io::stdout()),
        }
    }

    /// Writes `line` and a newline, then flushes.
    pub fn write_line(&self, line: &str) -> io::Result<()> {
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        let out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = out.lock();
        out.write_all(&buf)?;
        out.flush()
    }

    /// Writes an event as one JSON line.
    pub fn write_event(&self, ev: &Event) -> io::Result<()> {
        self.write_line(&ev.to_line())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], cap: usize) -> Vec<String> {
        let mut r = LineReader::new(input, cap);
        let mut out = Vec::new();
        while let Some(l) = r.next_line().unwrap() {
            out.push(match l {
                Line::Text(s) => format!("T:{s}"),
                Line::TooLong { len } => format!("L:{len}"),
                Line::NotUtf8 => "U".to_string(),
            });
        }
        out
    }

    #[test]
    fn splits_lines_and_keeps_a_last_line_without_newline() {
        assert_eq!(lines(b"a\r\nbb\n\nc", 10), ["T:a", "T:bb", "T:", "T:c"]);
        assert!(lines(b"", 10).is_empty());
    }

    #[test]
    fn an_overlong_line_is_reported_and_the_next_line_read_whole() {
        let mut input = vec![b'x'; 100];
        input.extend_from_slice(b"\nok\n\xff\n");
        assert_eq!(lines(&input, 10), ["L:100", "T:ok", "U"]);
    }

    #[test]
    fn overlong_lines_across_buffer_refills_are_capped() {
        let mut input = vec![b'y'; 20_000];
        input.push(b'\n');
        input.extend_from_slice(b"z\n");
        let r = std::io::BufReader::with_capacity(16, &input[..]);
        let mut r = LineReader::new(r, 100);
        assert_eq!(r.next_line().unwrap(), Some(Line::TooLong { len: 20_000 }));
        assert_eq!(r.next_line().unwrap(), Some(Line::Text("z")));
        assert_eq!(r.line_no, 2);
    }
}
