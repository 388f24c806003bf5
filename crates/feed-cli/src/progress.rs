//! Progress of a long `ingest` on a terminal: how much of the input has
//! been read (and so stored, batch by batch), redrawn on one stderr line at
//! most five times a second. Nothing is drawn when stderr is piped.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::time::{Duration, Instant};

/// A reader that reports how much of its input has been consumed.
pub struct Reading<R> {
    inner: R,
    read: u64,
    total: Option<u64>,
    sink: Option<Box<dyn Write>>,
    every: Duration,
    shown: Option<Instant>,
}

impl<R: BufRead> Reading<R> {
    /// Wraps `inner`, `total` bytes long if known; draws on stderr when it
    /// is a terminal.
    pub fn stderr(inner: R, total: Option<u64>) -> Reading<R> {
        let sink: Option<Box<dyn Write>> = std::io::stderr()
            .is_terminal()
            .then(|| Box::new(std::io::stderr()) as _);
        Reading::new(inner, total, sink, Duration::from_millis(200))
    }

    /// Wraps `inner`, drawing on `sink` (if any) at most once per `every`.
    pub fn new(
        inner: R,
        total: Option<u64>,
        sink: Option<Box<dyn Write>>,
        every: Duration,
    ) -> Reading<R> {
        Reading {
            inner,
            read: 0,
            total,
            sink,
            every,
            shown: None,
        }
    }
}

impl<R> Reading<R> {
    fn count(&mut self, n: usize) {
        self.read += n as u64;
        let due = self.shown.is_none_or(|t| t.elapsed() >= self.every);
        if due && self.sink.is_some() {
            self.draw();
        }
    }

    fn draw(&mut self) {
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        let text = match self.total {
            Some(t) if t > 0 => format!(
                "\ringest: {:.1} of {:.1} MiB ({:.0}%)",
                mib(self.read),
                mib(t),
                100.0 * self.read.min(t) as f64 / t as f64
            ),
            _ => format!("\ringest: {:.1} MiB read", mib(self.read)),
        };
        if let Some(s) = self.sink.as_mut() {
            // Progress is a courtesy: a failing terminal stops it, nothing else.
            if s.write_all(text.as_bytes())
                .and_then(|()| s.flush())
                .is_err()
            {
                self.sink = None;
            }
        }
        self.shown = Some(Instant::now());
    }
}

impl<R: BufRead> Read for Reading<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count(n);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Reading<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, n: usize) {
        self.inner.consume(n);
        self.count(n);
    }
}

impl<R> Drop for Reading<R> {
    fn drop(&mut self) {
        // The final figure, then the end of the line, so the summary
        // starts on its own.
        if self.shown.is_some() && self.sink.is_some() {
            self.draw();
            if let Some(s) = self.sink.as_mut() {
                let _ = s.write_all(b"\n");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A sink the test can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn reports_what_was_read_and_ends_its_line() {
        let input = vec![b'x'; 3 << 20];
        let sink = Shared::default();
        let mut r = Reading::new(
            &input[..],
            Some(input.len() as u64),
            Some(Box::new(sink.clone())),
            Duration::ZERO,
        );
        let mut out = Vec::new();
        r.read_to_end(&mut out).expect("read");
        drop(r);
        assert_eq!(out.len(), input.len());
        let shown = String::from_utf8(sink.0.lock().expect("lock").clone()).expect("UTF-8");
        assert!(shown.contains("ingest: 3.0 of 3.0 MiB (100%)"), "{shown:?}");
        assert!(shown.ends_with('\n'), "{shown:?}");
    }

    #[test]
    fn draws_nothing_without_a_terminal() {
        let input = b"line\n".repeat(1000);
        let mut r = Reading::new(&input[..], None, None, Duration::ZERO);
        let mut lines = 0;
        let mut buf = String::new();
        while r.read_line(&mut buf).expect("read") > 0 {
            lines += 1;
        }
        assert_eq!(lines, 1000);
        assert_eq!(r.read, input.len() as u64);
    }
}
