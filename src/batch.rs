//! Batch plumbing: an ordered, bounded, multi-core pipeline and a JSON Lines reader.
//!
//! [`run_ordered`] is `reader thread → N workers → reorder buffer → sink`: items are read on one
//! thread, grouped into chunks, worked on by `jobs` threads and handed to the sink on the calling
//! thread in input order. Memory is bounded whatever the input length: at most
//! `jobs × IN_FLIGHT_PER_JOB` chunks are between the reader and the sink at any time (a credit is
//! taken for each chunk read and given back when the sink has consumed it), so a slow worker
//! holds the reader back instead of letting the reorder buffer grow.
//!
//! [`Lines`] reads one order per line from any [`BufRead`] with a reused buffer, skipping blank
//! lines and bounding each line to [`MAX_LINE`] bytes. [`seen::SeenIds`] applies the
//! duplicate-id rule in bounded memory.

pub mod seen;

use std::collections::BTreeMap;
use std::io::BufRead;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

/// Items per chunk handed to a worker (amortizes channel and lock costs).
pub const CHUNK: usize = 256;

/// Chunks in flight per worker (between the reader and the sink).
const IN_FLIGHT_PER_JOB: usize = 4;

/// The largest line [`Lines`] reads (1 MiB: an order with Model 2 data is a few KiB).
pub const MAX_LINE: usize = 1024 * 1024;

/// The number of workers by default: the cores available to this process.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// Runs `work` over every item of `source` on `jobs` threads (at least one) and calls `sink`
/// with the results in input order, on the calling thread. Returns when `source` is exhausted
/// and every result has been sunk. A panic in `work` or `source` propagates.
pub fn run_ordered<I, O, S, W, K>(source: S, jobs: usize, work: W, sink: K)
where
    I: Send,
    O: Send,
    S: Iterator<Item = I> + Send,
    W: Fn(I) -> O + Sync,
    K: FnMut(O),
{
    run_ordered_chunks(
        source,
        jobs,
        |chunk: Vec<I>| chunk.into_iter().map(&work).collect(),
        sink,
    );
}

/// [`run_ordered`] with `work` called once per chunk (up to [`CHUNK`] items, in input order),
/// returning that chunk's results in the same order: lets a worker do per-chunk set-up, such as
/// taking the chunk's ICC key pairs from the store in one transaction.
pub fn run_ordered_chunks<I, O, S, W, K>(source: S, jobs: usize, work: W, mut sink: K)
where
    I: Send,
    O: Send,
    S: Iterator<Item = I> + Send,
    W: Fn(Vec<I>) -> Vec<O> + Sync,
    K: FnMut(O),
{
    let jobs = jobs.max(1);
    let in_flight = jobs * IN_FLIGHT_PER_JOB;
    let (credit_tx, credit_rx) = sync_channel::<()>(in_flight);
    for _ in 0..in_flight {
        // Cannot fail: the receiver is alive and the channel has room for every credit.
        let _ = credit_tx.send(());
    }
    let (chunk_tx, chunk_rx) = sync_channel::<(u64, Vec<I>)>(in_flight);
    let chunk_rx = Arc::new(Mutex::new(chunk_rx));
    let (done_tx, done_rx) = sync_channel::<(u64, Vec<O>)>(in_flight);
    std::thread::scope(|scope| {
        scope.spawn(move || read_chunks(source, &credit_rx, &chunk_tx));
        for _ in 0..jobs {
            let rx = Arc::clone(&chunk_rx);
            let tx = done_tx.clone();
            let work = &work;
            scope.spawn(move || work_chunks(&rx, &tx, work));
        }
        drop(done_tx);
        reorder(&done_rx, &credit_tx, &mut sink);
    });
}

fn read_chunks<I, S: Iterator<Item = I>>(
    mut source: S,
    credits: &Receiver<()>,
    out: &SyncSender<(u64, Vec<I>)>,
) {
    let mut seq = 0u64;
    loop {
        if credits.recv().is_err() {
            return;
        }
        let chunk: Vec<I> = source.by_ref().take(CHUNK).collect();
        if chunk.is_empty() || out.send((seq, chunk)).is_err() {
            return;
        }
        seq += 1;
    }
}

fn work_chunks<I, O, W: Fn(Vec<I>) -> Vec<O>>(
    rx: &Mutex<Receiver<(u64, Vec<I>)>>,
    tx: &SyncSender<(u64, Vec<O>)>,
    work: &W,
) {
    loop {
        // A worker that panicked while holding the lock held no item: the queue is intact.
        let next = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
        let Ok((seq, chunk)) = next else { return };
        let out: Vec<O> = work(chunk);
        if tx.send((seq, out)).is_err() {
            return;
        }
    }
}

fn reorder<O, K: FnMut(O)>(rx: &Receiver<(u64, Vec<O>)>, credits: &SyncSender<()>, sink: &mut K) {
    let mut pending: BTreeMap<u64, Vec<O>> = BTreeMap::new();
    let mut next = 0u64;
    for (seq, chunk) in rx {
        pending.insert(seq, chunk);
        while let Some(chunk) = pending.remove(&next) {
            chunk.into_iter().for_each(&mut *sink);
            next += 1;
            // The reader may have stopped (end of input): a credit nobody takes is fine.
            let _ = credits.try_send(());
        }
    }
}

/// One non-blank line of a JSON Lines input.
#[derive(Debug)]
pub enum Line {
    /// The line's text (without the line end) and its number.
    Text {
        /// The text, zeroized when dropped (orders carry card data).
        text: crate::domain::wipe::WipedString,
        /// 1-based number counted from the first non-blank line (as [`crate::domain::order`]
        /// numbers the lines of a whole file).
        line_no: usize,
    },
    /// A line that cannot be an order: longer than [`MAX_LINE`] or not UTF-8 (the rule).
    Refused {
        /// 1-based number, as for `Text`.
        line_no: usize,
        /// The rule broken.
        rule: String,
    },
}

/// Reads non-blank lines from `R`, one [`Line`] each; stops at the end or at a read error
/// (kept in [`Lines::error`]).
pub struct Lines<R> {
    reader: R,
    buf: zeroize::Zeroizing<Vec<u8>>,
    /// Physical lines read so far, counted from the first non-blank line.
    counted: usize,
    started: bool,
    /// The read error that ended the input, if any.
    pub error: Arc<Mutex<Option<std::io::Error>>>,
}

impl<R: BufRead> Lines<R> {
    /// Reads from `reader`; the first line may start with a byte order mark (skipped).
    pub fn new(reader: R) -> Self {
        Self {
            reader,
            buf: zeroize::Zeroizing::new(Vec::with_capacity(4096)),
            counted: 0,
            started: false,
            error: Arc::new(Mutex::new(None)),
        }
    }

    /// Reads one physical line into `buf` (at most `MAX_LINE + 1` bytes kept); `None` at the
    /// end. Returns whether the line was longer than [`MAX_LINE`].
    fn read_physical(&mut self) -> Option<bool> {
        self.buf.clear();
        let mut too_long = false;
        loop {
            let (done, used) = match self.reader.fill_buf() {
                Ok([]) => return (!self.buf.is_empty() || too_long).then_some(too_long),
                Ok(avail) => {
                    let (done, used) = match find_newline(avail) {
                        Some(i) => (true, i + 1),
                        None => (false, avail.len()),
                    };
                    let room = (MAX_LINE + 1).saturating_sub(self.buf.len());
                    let take = used.min(room);
                    too_long |= take < used;
                    self.buf.extend_from_slice(&avail[..take]);
                    (done, used)
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    *self.error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    return None;
                }
            };
            self.reader.consume(used);
            if done {
                return Some(too_long);
            }
        }
    }
}

/// The index of the first `\n` in `bytes` (`memchr`: a vector compare at a time).
fn find_newline(bytes: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', bytes)
}

impl<R: BufRead> Iterator for Lines<R> {
    type Item = Line;

    fn next(&mut self) -> Option<Line> {
        loop {
            let too_long = self.read_physical()?;
            let mut bytes: &[u8] = &self.buf;
            if !self.started {
                bytes = bytes.strip_prefix("\u{feff}".as_bytes()).unwrap_or(bytes);
            }
            let blank = !too_long && bytes.iter().all(u8::is_ascii_whitespace);
            if !self.started && blank {
                continue;
            }
            self.started = true;
            self.counted += 1;
            if blank {
                continue;
            }
            let line_no = self.counted;
            if too_long || bytes.len() > MAX_LINE + 1 {
                return Some(Line::Refused {
                    line_no,
                    rule: format!("longer than the limit of {MAX_LINE} bytes"),
                });
            }
            let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
            let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
            // `simdutf8`: the same verdict as `std::str::from_utf8`, many bytes at a time.
            return Some(match simdutf8::basic::from_utf8(bytes) {
                Ok(s) => Line::Text {
                    text: crate::domain::wipe::WipedString::new(s.to_string()),
                    line_no,
                },
                Err(_) => Line::Refused {
                    line_no,
                    rule: "not valid UTF-8".into(),
                },
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_input_order_whatever_the_jobs() {
        for jobs in [1, 2, 3, 8] {
            let mut out = Vec::new();
            // Uneven work so that chunks finish out of order.
            run_ordered(
                0..10_000u64,
                jobs,
                |i| {
                    if i % 700 == 0 {
                        std::thread::sleep(std::time::Duration::from_millis(2));
                    }
                    i * 3
                },
                |o| out.push(o),
            );
            let expected: Vec<u64> = (0..10_000u64).map(|i| i * 3).collect();
            assert_eq!(out, expected, "jobs {jobs}");
        }
    }

    #[test]
    fn the_newline_is_found_at_every_place_of_a_word() {
        for len in 0..40 {
            for at in 0..len {
                let mut b = vec![b'x'; len];
                b[at] = b'\n';
                if at + 3 < len {
                    b[at + 3] = b'\n';
                }
                assert_eq!(find_newline(&b), Some(at), "{len} {at}");
            }
            assert_eq!(find_newline(&vec![0x8A; len]), None, "{len}");
        }
    }

    #[test]
    fn an_empty_source_sinks_nothing() {
        let mut n = 0;
        run_ordered(std::iter::empty::<u8>(), 4, |i| i, |_| n += 1);
        assert_eq!(n, 0);
    }

    fn texts(input: &[u8]) -> Vec<(usize, String)> {
        Lines::new(input)
            .map(|l| match l {
                Line::Text { text, line_no } => (line_no, text.to_string()),
                Line::Refused { line_no, rule } => (line_no, format!("refused: {rule}")),
            })
            .collect()
    }

    #[test]
    fn lines_skip_blanks_and_count_from_the_first_non_blank_line() {
        let got = texts(b"\n  \n\xEF\xBB\xBF{\"a\":1}\r\n\n{\"b\":2}\n   \n{\"c\":3}");
        assert_eq!(
            got,
            vec![
                (1, "{\"a\":1}".to_string()),
                (3, "{\"b\":2}".to_string()),
                (5, "{\"c\":3}".to_string())
            ]
        );
    }

    #[test]
    fn overlong_and_non_utf8_lines_are_refused_and_reading_goes_on() {
        let mut input = vec![b'x'; MAX_LINE + 10];
        input.extend_from_slice(b"\n\xFF\xFE\n{}\n");
        let got = texts(&input);
        assert_eq!(got.len(), 3);
        assert!(got[0].1.starts_with("refused: longer than"), "{:?}", got[0]);
        assert_eq!(got[1], (2, "refused: not valid UTF-8".to_string()));
        assert_eq!(got[2], (3, "{}".to_string()));
    }
}
