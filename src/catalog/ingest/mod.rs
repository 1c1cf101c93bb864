//! Streaming CSV ingest: validate an uploaded file against a dataset's schema, pseudonymize its
//! identifying columns and write it as a columnar dataset version.
//!
//! The file streams through once, in bounded memory, as a pipeline of chunks:
//!
//! * The calling thread reads blocks of about 1 MiB, hashes them (sha256 of the exact
//!   bytes, in order), counts them against the size limit and scans them for newlines (lines
//!   longer than [`MAX_LINE_BYTES`] are refused) and for quotes, following the quoting as the
//!   `csv` crate does, so that each chunk ends at the last newline outside quotes; the bytes
//!   after it are carried into the next chunk. Each chunk carries its sequence number and the
//!   line it starts on.
//! * A pool of worker threads (one per core, at least two) splits the rows of a chunk with a
//!   small RFC 4180 splitter that reads fields in place (quoted fields with `""` and newlines,
//!   `\n`, `\r\n` or `\r` line ends, a last line without newline, blank lines skipped),
//!   parses every cell by its declared type and nullability, replaces a value of an
//!   `identifier` or `privacy_unit` column by its keyed pseudonym ([`PseudonymKey`]) after it
//!   has been validated (gathered in a [`PseudonymBatch`] of [`PSEUDONYM_BATCH`] values, hashed
//!   several at a time), and encodes the rows column by column as they are stored.
//! * A writer thread takes the chunks back in file order, adds up rows and errors and appends
//!   the encoded columns, then returns each chunk to the reader for reuse. A fixed number of
//!   chunks circulate, so memory does not grow with the file.
//!
//! The first line must name the declared columns, in order. The stored version holds no raw
//! identifier. A file with any bad row is refused whole: nothing of it is kept, and the caller
//! gets the first [`MAX_LISTED_ERRORS`] errors in file order (line where the row starts,
//! column, reason) and the total count; once a bad row is seen nothing more is pseudonymized or
//! written, but every row is still checked so the count is exact. A good file becomes a
//! finished version directory inside a work directory ([`Ingested`]); the caller moves it to its
//! final place with [`Ingested::persist`], and it is removed if dropped without that.
//!
//! Files: this one the pipeline and its API; `csv` the reading side (chunks, the splitter);
//! `values` how each cell is parsed by its declared type.

use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, mpsc};

/// The platform's pseudonymization key, shared with the sandbox crate (one implementation).
pub use dataop_sandbox::columnar::PseudonymKey;
use dataop_sandbox::columnar::{
    self, ColumnChunk, ColumnRole, ColumnSpec, ColumnType, PseudonymBatch, Storage, VersionMeta,
    VersionWriter,
};
use sha2::{Digest, Sha256};

mod csv;
mod values;

use csv::*;
use values::*;

/// How many row errors a refusal lists; the rest are only counted.
pub const MAX_LISTED_ERRORS: usize = 100;

/// Longest physical line accepted, in bytes; a longer one is refused before it is buffered.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// Longest row accepted, in bytes, when quoted values make it span several lines; a longer
/// one is refused as a too-long line (the one where the row starts), so memory stays bounded.
pub const MAX_ROW_BYTES: usize = 16 << 20;

/// Largest number of characters a text cell may hold when its column declares no limit.
pub const DEFAULT_TEXT_CHARS: u32 = 1000;

/// A declared column as the ingest needs it: the stored spec and the text length limit.
#[derive(Debug, Clone)]
pub struct IngestColumn {
    /// Name, type, role and nullability.
    pub spec: ColumnSpec,
    /// Longest text accepted, in characters (text columns only).
    pub max_chars: u32,
    /// Smallest value accepted (integer columns only).
    pub min: Option<i64>,
    /// Largest value accepted (integer columns only).
    pub max: Option<i64>,
}

/// Why one cell or row was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The row does not have one field per declared column.
    FieldCount {
        /// Declared columns.
        expected: usize,
        /// Fields found.
        found: usize,
    },
    /// Empty value in a column that is not nullable.
    Required,
    /// Not a whole number in the 64-bit range.
    NotInteger,
    /// A whole number outside the column's declared bounds.
    OutOfRange {
        /// The smallest value accepted, if declared.
        min: Option<i64>,
        /// The largest value accepted, if declared.
        max: Option<i64>,
    },
    /// Not a decimal number with at most `scale` decimals in range.
    NotDecimal {
        /// Declared number of decimals.
        scale: u32,
    },
    /// Not a calendar date written `YYYY-MM-DD`.
    NotDate,
    /// A code outside the column's declared domain.
    UnknownCode,
    /// Text longer than the column allows.
    TooLong {
        /// The limit, in characters.
        max: u32,
    },
    /// Bytes that are not UTF-8.
    NotUtf8,
    /// A control character (NUL, …) other than tab and line breaks.
    ControlChar,
}

impl Reason {
    /// The message-catalog key that explains this reason (with [`Reason::arg`] as `{n}`).
    pub fn message_key(&self) -> &'static str {
        match self {
            Self::FieldCount { .. } => "catalog.ingest.reason.field_count",
            Self::Required => "catalog.ingest.reason.required",
            Self::NotInteger => "catalog.ingest.reason.not_integer",
            Self::OutOfRange {
                min: Some(_),
                max: Some(_),
            } => "catalog.ingest.reason.out_of_range",
            Self::OutOfRange { min: Some(_), .. } => "catalog.ingest.reason.below_min",
            Self::OutOfRange { .. } => "catalog.ingest.reason.above_max",
            Self::NotDecimal { .. } => "catalog.ingest.reason.not_decimal",
            Self::NotDate => "catalog.ingest.reason.not_date",
            Self::UnknownCode => "catalog.ingest.reason.unknown_code",
            Self::TooLong { .. } => "catalog.ingest.reason.too_long",
            Self::NotUtf8 => "catalog.ingest.reason.not_utf8",
            Self::ControlChar => "catalog.ingest.reason.control_char",
        }
    }

    /// The values the message refers to: `{n}` (decimals, limit, expected fields), `{min}` and
    /// `{max}` (bounds).
    pub fn args(&self) -> Vec<(&'static str, String)> {
        let n = match self {
            Self::FieldCount { expected, .. } => Some(*expected as u64),
            Self::NotDecimal { scale } => Some(u64::from(*scale)),
            Self::TooLong { max } => Some(u64::from(*max)),
            Self::OutOfRange { min, max } => {
                return min
                    .map(|v| ("min", v.to_string()))
                    .into_iter()
                    .chain(max.map(|v| ("max", v.to_string())))
                    .collect();
            }
            _ => None,
        };
        n.map(|n| ("n", n.to_string())).into_iter().collect()
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FieldCount { expected, found } => {
                write!(f, "expected {expected} fields, found {found}")
            }
            Self::Required => f.write_str("a value is required"),
            Self::NotInteger => f.write_str("not a whole number"),
            Self::OutOfRange { min, max } => {
                let show = |b: &Option<i64>| b.map_or("…".to_owned(), |v| v.to_string());
                write!(f, "outside {}..={}", show(min), show(max))
            }
            Self::NotDecimal { scale } => write!(f, "not a number with at most {scale} decimals"),
            Self::NotDate => f.write_str("not a date YYYY-MM-DD"),
            Self::UnknownCode => f.write_str("not one of the declared codes"),
            Self::TooLong { max } => write!(f, "longer than {max} characters"),
            Self::NotUtf8 => f.write_str("not UTF-8 text"),
            Self::ControlChar => f.write_str("holds a control character"),
        }
    }
}

/// One refused cell (or row, when `column` is `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// 1-based line of the file where the row starts (the header is line 1).
    pub line: u64,
    /// The column, when the error is about one cell.
    pub column: Option<String>,
    /// What is wrong.
    pub reason: Reason,
    /// The start of the offending value, except for identifying columns (never echoed).
    pub value: Option<String>,
}

/// Why a whole file was refused.
#[derive(Debug)]
pub enum IngestError {
    /// Reading the upload or writing the version failed.
    Io(io::Error),
    /// The file is larger than the limit (checked while streaming).
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// A physical line is longer than [`MAX_LINE_BYTES`].
    LineTooLong {
        /// The line where it happened.
        line: u64,
    },
    /// The file is empty: no header line.
    Empty,
    /// The header line does not name the declared columns in order.
    BadHeader {
        /// Declared column names.
        expected: Vec<String>,
        /// Names found in the file.
        found: Vec<String>,
    },
    /// The header is right but there is no data row.
    NoRows,
    /// Some rows are bad: the first errors and how many there are in all.
    Rejected {
        /// The first [`MAX_LISTED_ERRORS`] errors, in file order.
        errors: Vec<RowError>,
        /// Number of errors in the whole file.
        total: u64,
        /// Data rows read.
        rows: u64,
    },
}

impl fmt::Display for IngestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "i/o error: {e}"),
            Self::TooLarge { limit } => write!(f, "the file is larger than {limit} bytes"),
            Self::LineTooLong { line } => {
                write!(f, "line {line} is longer than {MAX_LINE_BYTES} bytes")
            }
            Self::Empty => f.write_str("the file is empty"),
            Self::BadHeader { expected, found } => write!(
                f,
                "the header must be `{}`, found `{}`",
                expected.join(","),
                found.join(",")
            ),
            Self::NoRows => f.write_str("the file has no data rows"),
            Self::Rejected { total, rows, .. } => {
                write!(f, "{total} errors in {rows} rows; the file is refused")
            }
        }
    }
}

impl std::error::Error for IngestError {}

impl From<io::Error> for IngestError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// A finished version directory in the work directory; removed on drop unless persisted.
#[derive(Debug)]
pub struct Ingested {
    /// The metadata written to `meta.json`.
    pub meta: VersionMeta,
    /// Data rows.
    pub rows: u64,
    /// Bytes of the uploaded file.
    pub bytes: u64,
    /// sha256 of the uploaded file, lower-case hex.
    pub sha256: String,
    dir: TempDir,
}

impl Ingested {
    /// Where the finished version lies now.
    pub fn dir(&self) -> &Path {
        &self.dir.0
    }

    /// Moves the version to `dest` (which must not exist; its parent is created) and keeps it.
    pub fn persist(mut self, dest: &Path) -> io::Result<()> {
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        if dest.exists() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the version directory already exists",
            ));
        }
        std::fs::rename(&self.dir.0, dest)?;
        self.dir.0 = PathBuf::new();
        Ok(())
    }
}

#[derive(Debug)]
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.0.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Validates and pseudonymizes the CSV `input` against `columns` and writes it as a finished
/// version in a new directory under `work_dir`. Refuses the whole file on the first problem
/// that stops reading (size, line length, header) or, after reading it all, if any row is bad.
pub fn ingest<R: Read>(
    input: R,
    columns: &[IngestColumn],
    key: &PseudonymKey,
    limit_bytes: u64,
    work_dir: &Path,
) -> Result<Ingested, IngestError> {
    ingest_chunked(input, columns, key, limit_bytes, work_dir, CHUNK_BYTES)
}

/// Pseudonyms a worker gathers before it hashes them (their blocks, 64 bytes each, stay in the
/// core's cache).
const PSEUDONYM_BATCH: usize = 512;

/// Bytes the reader gathers before it cuts a chunk at the last row boundary.
const CHUNK_BYTES: usize = 1 << 20;

/// Largest piece asked of the input at once (hashed and scanned while it is in the cache).
const READ_BYTES: usize = 1 << 18;

/// [`ingest`] with chunks of about `chunk_bytes` bytes (tests use tiny ones).
fn ingest_chunked<R: Read>(
    input: R,
    columns: &[IngestColumn],
    key: &PseudonymKey,
    limit_bytes: u64,
    work_dir: &Path,
    chunk_bytes: usize,
) -> Result<Ingested, IngestError> {
    std::fs::create_dir_all(work_dir)?;
    let dir = TempDir(work_dir.join(format!("ingest-{}", uuid::Uuid::new_v4().simple())));
    let prepared: Vec<Prepared> = columns.iter().map(Prepared::new).collect();
    let width = prepared.len();
    let mut reader = Reader::new(input, limit_bytes, chunk_bytes);
    let mut splitter = Splitter::default();

    // The header: the first record, read from the first chunk that holds one.
    let mut first = Chunk::new(chunk_bytes, width);
    let (found, start, first_line) = loop {
        if !reader.fill(&mut first)? {
            return Err(IngestError::Empty);
        }
        let mut newlines = 0;
        let start = skip_blank(&first.data[..first.end], 0, &mut newlines);
        if start < first.end {
            let next = splitter.split(&first.data[..first.end], start, &mut newlines);
            let found: Vec<String> = (0..splitter.fields.len())
                .map(|i| {
                    let f = splitter.field(&first.data, i);
                    let f = if i == 0 {
                        f.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(f)
                    } else {
                        f
                    };
                    String::from_utf8_lossy(f.trim_ascii()).into_owned()
                })
                .collect();
            break (found, next, first.first_line + newlines);
        }
        // Only blank lines so far: drop them.
        let mut rest = Chunk::new(chunk_bytes, width);
        reader.carry(&mut first, &mut rest);
        first = rest;
    };
    let expected: Vec<String> = columns.iter().map(|c| c.spec.name.clone()).collect();
    if found != expected {
        return Err(IngestError::BadHeader { expected, found });
    }
    first.start = start;
    first.first_line = first_line;

    let specs: Vec<ColumnSpec> = columns.iter().map(|c| c.spec.clone()).collect();
    let writer = VersionWriter::create(&dir.0, specs)?;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
    // Every chunk in flight is one of these: the pool bounds the memory.
    let pool = 2 * threads + 2;
    let (job_tx, job_rx) = mpsc::sync_channel::<Chunk>(pool);
    let (done_tx, done_rx) = mpsc::sync_channel::<Chunk>(pool);
    let (free_tx, free_rx) = mpsc::sync_channel::<Chunk>(pool);
    let job_rx = Mutex::new(job_rx);
    let refused = AtomicBool::new(false);

    let outcome = std::thread::scope(|scope| -> Result<Outcome, IngestError> {
        for _ in 0..threads {
            let (job_rx, done_tx, refused) = (&job_rx, done_tx.clone(), &refused);
            let prepared = &prepared;
            scope.spawn(move || {
                let mut worker = Worker {
                    prepared,
                    key,
                    refused,
                    splitter: Splitter::default(),
                    pending: Pending::default(),
                };
                loop {
                    let job = job_rx
                        .lock()
                        .map_err(|_| ())
                        .and_then(|rx| rx.recv().map_err(|_| ()));
                    let Ok(mut chunk) = job else { break };
                    worker.parse(&mut chunk);
                    if done_tx.send(chunk).is_err() {
                        break;
                    }
                }
            });
        }
        drop(done_tx);
        let collector = scope.spawn(move || collect(writer, done_rx, free_tx, chunk_bytes));

        // This thread reads: every chunk ends at a row boundary, and the bytes after it are
        // carried into the next one.
        let mut allocated = 1;
        let mut seq = 0;
        let mut current = first;
        loop {
            let mut next = match free_rx.try_recv() {
                Ok(chunk) => chunk,
                Err(_) if allocated < pool => {
                    allocated += 1;
                    Chunk::new(chunk_bytes, width)
                }
                // The collector stopped (it failed): its error is returned below.
                Err(_) => match free_rx.recv() {
                    Ok(chunk) => chunk,
                    Err(_) => break,
                },
            };
            reader.carry(&mut current, &mut next);
            current.seq = seq;
            seq += 1;
            if job_tx.send(current).is_err() {
                break;
            }
            current = next;
            if !reader.fill(&mut current)? {
                break;
            }
        }
        drop(job_tx);
        collector
            .join()
            .map_err(|_| io::Error::other("the ingest writer panicked"))?
            .map_err(IngestError::Io)
    })?;
    if outcome.total_errors > 0 {
        return Err(IngestError::Rejected {
            errors: outcome.errors,
            total: outcome.total_errors,
            rows: outcome.rows,
        });
    }
    if outcome.rows == 0 {
        return Err(IngestError::NoRows);
    }
    let meta = outcome.writer.finish()?;
    Ok(Ingested {
        meta,
        rows: outcome.rows,
        bytes: reader.bytes,
        sha256: hex::encode(reader.hasher.finalize()),
        dir,
    })
}

/// A parsing thread: splits, validates and encodes the rows of one chunk at a time.
struct Worker<'a> {
    prepared: &'a [Prepared],
    key: &'a PseudonymKey,
    /// Set once any row of the file is bad: from then on nothing needs encoding.
    refused: &'a AtomicBool,
    splitter: Splitter,
    pending: Pending,
}

/// Pseudonyms waiting to be hashed, and where each goes: the column and the byte offset of its
/// 8-byte place, written as zeros until then.
#[derive(Default)]
struct Pending {
    batch: PseudonymBatch,
    places: Vec<(usize, usize)>,
    hashed: Vec<u64>,
}

impl Pending {
    /// Hashes the waiting values into their places in `columns`.
    fn flush(&mut self, key: &PseudonymKey, columns: &mut [ColumnChunk]) {
        self.batch.hash(key, &mut self.hashed);
        for (&(column, at), p) in self.places.iter().zip(&self.hashed) {
            columns[column].data[at..at + 8].copy_from_slice(&p.to_le_bytes());
        }
        self.clear();
    }

    fn clear(&mut self) {
        self.batch.clear();
        self.places.clear();
    }
}

impl Worker<'_> {
    fn parse(&mut self, chunk: &mut Chunk) {
        let Chunk {
            data,
            start,
            end,
            first_line,
            rows,
            columns,
            errors,
            error_count,
            ..
        } = chunk;
        let data = &data[..*end];
        let width = self.prepared.len();
        let mut encode = !self.refused.load(Ordering::Relaxed);
        let mut newlines = 0;
        let mut pos = *start;
        loop {
            pos = skip_blank(data, pos, &mut newlines);
            if pos == data.len() {
                break;
            }
            let line = *first_line + newlines;
            pos = self.splitter.split(data, pos, &mut newlines);
            let splitter = &self.splitter;
            let found = splitter.fields.len();
            if found != width {
                if found == 1 && splitter.field(data, 0).trim_ascii().is_empty() {
                    // A blank line: not a row.
                    continue;
                }
                *rows += 1;
                *error_count += 1;
                if errors.len() < MAX_LISTED_ERRORS {
                    errors.push(RowError {
                        line,
                        column: None,
                        reason: Reason::FieldCount {
                            expected: width,
                            found,
                        },
                        value: None,
                    });
                }
                self.refused.store(true, Ordering::Relaxed);
                encode = false;
                continue;
            }
            *rows += 1;
            let mut row_ok = true;
            for (i, (col, out)) in self.prepared.iter().zip(columns.iter_mut()).enumerate() {
                let raw = splitter.field(data, i);
                match col.encode(raw, out) {
                    Ok(()) if col.pseudonymize && encode => {
                        self.pending.places.push((i, out.data.len()));
                        out.data.extend_from_slice(&[0; 8]);
                        self.pending.batch.push(raw.trim_ascii());
                    }
                    Ok(()) => {}
                    Err(reason) => {
                        row_ok = false;
                        *error_count += 1;
                        if errors.len() < MAX_LISTED_ERRORS {
                            errors.push(RowError {
                                line,
                                column: Some(col.name.clone()),
                                reason,
                                value: (!col.pseudonymize).then(|| excerpt(raw)),
                            });
                        }
                    }
                }
            }
            if !row_ok {
                self.refused.store(true, Ordering::Relaxed);
                encode = false;
            }
            if !encode {
                // The file will be refused: nothing more is kept.
                columns.iter_mut().for_each(ColumnChunk::clear);
                self.pending.clear();
            } else if self.pending.batch.len() >= PSEUDONYM_BATCH {
                self.pending.flush(self.key, columns);
            }
        }
        if encode {
            self.pending.flush(self.key, columns);
        }
        chunk.complete = encode;
    }
}

/// What the writing thread found, in file order.
struct Outcome {
    writer: VersionWriter,
    rows: u64,
    errors: Vec<RowError>,
    total_errors: u64,
}

/// The writing thread: takes the parsed chunks in file order, merges their counts and errors
/// and appends their columns while no row is bad; hands every chunk back to the reader.
fn collect(
    mut writer: VersionWriter,
    done: mpsc::Receiver<Chunk>,
    free: mpsc::SyncSender<Chunk>,
    chunk_bytes: usize,
) -> io::Result<Outcome> {
    let mut rows = 0;
    let mut errors = Vec::new();
    let mut total_errors = 0;
    let mut waiting: std::collections::BTreeMap<u64, Chunk> = Default::default();
    let mut next = 0;
    for chunk in done {
        waiting.insert(chunk.seq, chunk);
        while let Some(mut chunk) = waiting.remove(&next) {
            next += 1;
            rows += chunk.rows;
            total_errors += chunk.error_count;
            let room = MAX_LISTED_ERRORS - errors.len();
            errors.extend(chunk.errors.drain(..).take(room));
            if total_errors == 0 && chunk.complete {
                writer.push_columns(chunk.rows as usize, &chunk.columns)?;
            }
            chunk.recycle(chunk_bytes);
            // The reader may have finished: then the chunk is simply dropped.
            let _ = free.try_send(chunk);
        }
    }
    Ok(Outcome {
        writer,
        rows,
        errors,
        total_errors,
    })
}

/// The first 40 characters of a raw value, for an error message.
fn excerpt(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    let mut out: String = s
        .chars()
        .take(40)
        .map(|c| {
            if crate::input::allowed_char(c) {
                c
            } else {
                '\u{FFFD}'
            }
        })
        .collect();
    if s.chars().nth(40).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, ty: ColumnType, role: ColumnRole, nullable: bool) -> IngestColumn {
        IngestColumn {
            spec: ColumnSpec {
                name: name.into(),
                ty,
                role,
                nullable,
            },
            max_chars: 10,
            min: None,
            max: None,
        }
    }

    fn schema() -> Vec<IngestColumn> {
        vec![
            col("pid", ColumnType::Text, ColumnRole::PrivacyUnit, false),
            col("n", ColumnType::Integer, ColumnRole::Plain, true),
            col(
                "amount",
                ColumnType::Decimal { scale: 2 },
                ColumnRole::Sensitive,
                false,
            ),
            col("day", ColumnType::Date, ColumnRole::Plain, false),
            col(
                "sex",
                ColumnType::Category {
                    codes: vec!["M".into(), "F".into()],
                },
                ColumnRole::QuasiIdentifier,
                false,
            ),
            col("note", ColumnType::Text, ColumnRole::Plain, true),
        ]
    }

    #[test]
    fn category_lookup() {
        let few = Codes::new(&["M".into(), "F".into(), "330102".into()]);
        assert!(matches!(few, Codes::Packed(_)));
        assert_eq!(few.find(b"F"), Some(1));
        assert_eq!(few.find(b"330102"), Some(2));
        assert_eq!(few.find(b"3301020"), None);
        assert_eq!(few.find(b""), None);
        assert_eq!(few.find(b"a-much-longer-value-than-16"), None);
        let sixteen = Codes::new(&["gastroenterology".into(), "x".into()]);
        assert!(matches!(sixteen, Codes::Packed(_)));
        assert_eq!(sixteen.find(b"gastroenterology"), Some(0));
        assert_eq!(sixteen.find(b"x\0"), None);
        let many: Vec<String> = (0..500).map(|i| format!("{i:03}")).collect();
        let many_codes = Codes::new(&many);
        assert!(matches!(many_codes, Codes::Packed(_)));
        for (i, code) in many.iter().enumerate() {
            assert_eq!(many_codes.find(code.as_bytes()), Some(i as u32));
        }
        assert_eq!(many_codes.find(b"500"), None);
        assert_eq!(many_codes.find(b"00"), None);
        let long = Codes::new(&["a-much-longer-code-than-15".into(), "x".into()]);
        assert!(matches!(long, Codes::Map(_)));
        assert_eq!(long.find(b"a-much-longer-code-than-15"), Some(0));
        assert_eq!(long.find(b"y"), None);
    }

    #[test]
    fn integers() {
        assert_eq!(parse_integer(b"-42"), Some(-42));
        assert_eq!(parse_integer(b"+7"), Some(7));
        assert_eq!(parse_integer(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_integer(b"-9223372036854775807"), Some(i64::MIN + 1));
        assert_eq!(parse_integer(b"-9223372036854775808"), None);
        assert_eq!(parse_integer(b"9223372036854775808"), None);
        assert_eq!(parse_integer(b"1.0"), None);
        assert_eq!(parse_integer(b"-"), None);
        assert_eq!(parse_integer(b"+-1"), None);
        assert_eq!(parse_integer(b"1\xff"), None);
        // The same answers as the standard library (bar the NULL sentinel).
        for v in [
            "0",
            "007",
            "-0",
            "+",
            "",
            "12a",
            "a12",
            "--1",
            " 1",
            "1 ",
            "99999999999999999999",
            "-9223372036854775809",
            "18446744073709551616",
            "+9223372036854775807",
        ] {
            let std = v.parse::<i64>().ok().filter(|n| *n != i64::MIN);
            assert_eq!(parse_integer(v.as_bytes()), std, "{v:?}");
        }
    }

    #[test]
    fn stored_bytes_are_the_encoded_cells() {
        let dir = tempfile::tempdir().unwrap();
        let key = PseudonymKey::new(b"k");
        let csv =
            "pid,n,amount,day,sex,note\n A1 ,-3,+1.5,2025-01-02,F,h\u{e9}\nA1,,2,1970-01-01,M,\n";
        let got = ingest(csv.as_bytes(), &schema(), &key, 1 << 20, dir.path()).unwrap();
        let file = |name: &str| std::fs::read(got.dir().join(name)).unwrap();
        let p = key.pseudonym(b"A1").to_le_bytes();
        assert_eq!(file("c0.bin"), [p, p].concat());
        assert_eq!(
            file("c1.bin"),
            [(-3i64).to_le_bytes(), i64::MIN.to_le_bytes()].concat()
        );
        assert_eq!(
            file("c2.bin"),
            [150i64.to_le_bytes(), 200i64.to_le_bytes()].concat()
        );
        assert_eq!(
            file("c3.bin"),
            [20090i32.to_le_bytes(), 0i32.to_le_bytes()].concat()
        );
        assert_eq!(
            file("c4.bin"),
            [1u32.to_le_bytes(), 0u32.to_le_bytes()].concat()
        );
        assert_eq!(file("c5.bin"), "hé".as_bytes());
        let offsets: Vec<u8> = [0u64, 3, 3].iter().flat_map(|o| o.to_le_bytes()).collect();
        assert_eq!(file("c5.off"), offsets);
    }

    #[test]
    fn good_file_becomes_a_version() {
        let dir = tempfile::tempdir().unwrap();
        let key = PseudonymKey::new(b"k");
        let csv =
            "pid,n,amount,day,sex,note\nA1,1,1.50,2025-01-02,M,hello\n\nB2,,2,2025-01-03,F,\n";
        let got = ingest(csv.as_bytes(), &schema(), &key, 1 << 20, dir.path()).unwrap();
        assert_eq!(got.rows, 2);
        assert_eq!(got.bytes, csv.len() as u64);
        assert_eq!(got.sha256, hex::encode(Sha256::digest(csv.as_bytes())));
        assert_eq!(got.meta.rows, 2);
        let dest = dir.path().join("v/1");
        let tmp = got.dir().to_path_buf();
        got.persist(&dest).unwrap();
        assert!(dest.join("meta.json").exists());
        assert!(!tmp.exists());
        for entry in std::fs::read_dir(&dest).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            assert!(!bytes.windows(2).any(|w| w == b"A1" || w == b"B2"));
        }
    }

    #[test]
    fn bad_rows_refuse_the_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let key = PseudonymKey::new(b"k");
        let mut csv = String::from("pid,n,amount,day,sex,note\n");
        csv.push_str("A1,1,1.50,2025-01-02,M,ok\n");
        csv.push_str("A2,x,1.505,2025-02-30,Q,ok\n");
        csv.push_str(",1,1,2025-01-02,M,waytoolongtext\n");
        csv.push_str("A3,1\n");
        for _ in 0..200 {
            csv.push_str("A4,1,1,2025-01-02,X,\n");
        }
        let err = ingest(csv.as_bytes(), &schema(), &key, 1 << 20, dir.path()).unwrap_err();
        let IngestError::Rejected {
            errors,
            total,
            rows,
        } = err
        else {
            panic!("{err}");
        };
        assert_eq!(rows, 204);
        assert_eq!(total, 4 + 2 + 1 + 200);
        assert_eq!(errors.len(), MAX_LISTED_ERRORS);
        assert_eq!(errors[0].line, 3);
        assert_eq!(errors[0].column.as_deref(), Some("n"));
        assert_eq!(errors[0].reason, Reason::NotInteger);
        assert_eq!(errors[1].reason, Reason::NotDecimal { scale: 2 });
        assert_eq!(errors[2].reason, Reason::NotDate);
        assert_eq!(errors[3].reason, Reason::UnknownCode);
        assert_eq!(errors[4].line, 4);
        assert_eq!(errors[4].reason, Reason::Required);
        assert_eq!(errors[4].value, None);
        assert_eq!(errors[5].reason, Reason::TooLong { max: 10 });
        assert_eq!(errors[6].line, 5);
        assert_eq!(
            errors[6].reason,
            Reason::FieldCount {
                expected: 6,
                found: 2
            }
        );
        // Nothing is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn packed_values_are_their_bytes() {
        for len in 0..=17usize {
            let value: Vec<u8> = (0..len).map(|i| 0xA0 + i as u8).collect();
            let want = (len <= 16).then(|| {
                let mut bytes = [0u8; 16];
                bytes[..len].copy_from_slice(&value);
                (u128::from_le_bytes(bytes), len)
            });
            assert_eq!(pack(&value), want, "{len} bytes");
        }
    }

    #[test]
    fn every_pseudonym_lands_in_its_row() {
        // Two pseudonymized columns with values of 1 to 90 bytes (short ones are hashed in
        // batches, long ones one by one), over more rows than one batch, in big and small
        // chunks: each stored pseudonym is that of its own row's value.
        let text = |name: &str, role| IngestColumn {
            spec: ColumnSpec {
                name: name.into(),
                ty: ColumnType::Text,
                role,
                nullable: false,
            },
            max_chars: 100,
            min: None,
            max: None,
        };
        let columns = [
            text("pid", ColumnRole::PrivacyUnit),
            col("n", ColumnType::Integer, ColumnRole::Plain, false),
            text("name", ColumnRole::Identifier),
        ];
        let value = |row: usize, salt: usize| -> String {
            let len = 1 + (row * 7 + salt) % 90;
            (0..len)
                .map(|i| char::from(b'a' + ((row + i * salt) % 26) as u8))
                .collect()
        };
        let rows = 3 * PSEUDONYM_BATCH + 17;
        let mut csv = String::from("pid,n,name\n");
        for row in 0..rows {
            csv.push_str(&format!("{},{row},{}\n", value(row, 3), value(row, 5)));
        }
        let key = PseudonymKey::new(b"k");
        for chunk_bytes in [1 << 20, 4096, 97] {
            let dir = tempfile::tempdir().unwrap();
            let got = ingest_chunked(
                csv.as_bytes(),
                &columns,
                &key,
                1 << 30,
                dir.path(),
                chunk_bytes,
            )
            .unwrap();
            let version = columnar::VersionReader::open(got.dir()).unwrap();
            for (column, salt) in [(0, 3), (2, 5)] {
                let mut stored = vec![0u64; rows];
                version.read_u64(column, 0, &mut stored).unwrap();
                let want: Vec<u64> = (0..rows)
                    .map(|row| key.pseudonym(value(row, salt).as_bytes()))
                    .collect();
                assert_eq!(
                    stored, want,
                    "column {column}, chunks of {chunk_bytes} bytes"
                );
            }
        }
    }

    #[test]
    fn special_mask_marks_exactly_the_special_bytes() {
        // Every byte value, at every offset, in full blocks and in the short tail.
        let data: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        for at in 0..data.len() {
            let want = data[at..data.len().min(at + BLOCK)]
                .iter()
                .enumerate()
                .filter(|(_, b)| matches!(b, b',' | b'\n' | b'\r' | b'"'))
                .fold(0u32, |m, (k, _)| m | 1 << k);
            assert_eq!(special_mask(&data, at), want, "at {at}");
        }
    }

    #[test]
    fn text_is_utf8_and_limited_in_characters() {
        let dir = tempfile::tempdir().unwrap();
        let key = PseudonymKey::new(b"k");
        // The note column takes 10 characters: ten Chinese ones (30 bytes) fit, eleven do
        // not, ten ASCII ones fit, eleven do not, and bytes that are not UTF-8 are refused.
        let mut csv = b"pid,n,amount,day,sex,note\n".to_vec();
        for note in [
            "一二三四五六七八九十".as_bytes(),
            "一二三四五六七八九十一".as_bytes(),
            b"abcdefghij",
            b"abcdefghijk",
            b"ab\xffcd",
        ] {
            csv.extend_from_slice(b"A1,1,1,2025-01-02,M,");
            csv.extend_from_slice(note);
            csv.push(b'\n');
        }
        let err = ingest(&csv[..], &schema(), &key, 1 << 20, dir.path()).unwrap_err();
        let IngestError::Rejected { errors, .. } = err else {
            panic!("{err}");
        };
        let found: Vec<(u64, Reason)> = errors.into_iter().map(|e| (e.line, e.reason)).collect();
        assert_eq!(
            found,
            [
                (3, Reason::TooLong { max: 10 }),
                (5, Reason::TooLong { max: 10 }),
                (6, Reason::NotUtf8)
            ]
        );
    }

    /// Ingests `csv` with chunks of about `chunk_bytes`; the work directory comes back too.
    fn ingest_in(
        csv: &str,
        chunk_bytes: usize,
    ) -> (tempfile::TempDir, Result<Ingested, IngestError>) {
        let dir = tempfile::tempdir().unwrap();
        let key = PseudonymKey::new(b"k");
        let got = ingest_chunked(
            csv.as_bytes(),
            &schema(),
            &key,
            1 << 30,
            dir.path(),
            chunk_bytes,
        );
        (dir, got)
    }

    /// Every file of a finished version, by name.
    fn stored(got: &Ingested) -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<_> = std::fs::read_dir(got.dir())
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let name = e.file_name().into_string().unwrap();
                (name, std::fs::read(e.path()).unwrap())
            })
            .collect();
        files.sort();
        files
    }

    #[test]
    fn chunk_boundaries_change_nothing() {
        let mut csv = String::from("pid,n,amount,day,sex,note\r\n");
        for i in 0..60 {
            let row = match i % 6 {
                0 => format!("P{i},{i},1.5,2025-01-02,M,\"two\nlines\"\n"),
                1 => format!("\"P{i}\",,2,2025-01-03,F,\"say \"\"hi\"\"\"\r\n"),
                2 => "\n\r\n  \n".to_string(),
                3 => format!("P{i}, {i} ,3.25,2025-02-28,F,\"a,b\"\r\n"),
                4 => format!("P{i},-{i},0,2024-02-29,M,\"\"\n"),
                _ => format!("P{i},{i},4,2025-12-31,M,x\"y\n"),
            };
            csv.push_str(&row);
        }
        // The last line has no newline, and a quoted newline.
        csv.push_str("Z9,1,1,2025-01-01,F,\"last\nline\"");
        let (_dir, whole) = ingest_in(&csv, 1 << 20);
        let whole = whole.unwrap();
        assert_eq!(whole.rows, 51);
        assert_eq!(whole.bytes, csv.len() as u64);
        assert_eq!(whole.sha256, hex::encode(Sha256::digest(csv.as_bytes())));
        let files = stored(&whole);
        let notes = &files.iter().find(|(n, _)| n == "c5.bin").unwrap().1;
        let notes = String::from_utf8(notes.clone()).unwrap();
        assert!(notes.starts_with("two\nlinessay \"hi\"a,bx\"y"), "{notes}");
        assert!(notes.ends_with("last\nline"), "{notes}");
        // Chunks as small as one byte: rows, quoted newlines and CRLF straddle the cuts.
        for size in [1, 2, 5, 16, 64, 100] {
            let (_dir, got) = ingest_in(&csv, size);
            let got = got.unwrap();
            assert_eq!(got.rows, whole.rows, "chunks of {size}");
            assert_eq!(got.bytes, whole.bytes, "chunks of {size}");
            assert_eq!(got.sha256, whole.sha256, "chunks of {size}");
            assert!(stored(&got) == files, "chunks of {size}");
        }
    }

    #[test]
    fn errors_of_every_chunk_in_file_order() {
        let mut csv = String::from("pid,n,amount,day,sex,note\n");
        let mut line = 2;
        let mut bad_lines = Vec::new();
        for i in 0..450 {
            match i % 3 {
                0 => {
                    csv.push_str(&format!("P{i},x,1,2025-01-01,M,\"two\nlines\"\n"));
                    bad_lines.push(line);
                    line += 2;
                }
                1 => {
                    csv.push_str("P,1,1,2025-01-01,M,ok\r\n");
                    line += 1;
                }
                _ => {
                    csv.push_str("\nP,1,1,2025-01-01,M,\"a\"\"b\"\n");
                    line += 2;
                }
            }
        }
        for size in [1 << 20, 100, 7] {
            let (dir, got) = ingest_in(&csv, size);
            let Err(IngestError::Rejected {
                errors,
                total,
                rows,
            }) = got
            else {
                panic!("chunks of {size}: not refused");
            };
            assert_eq!(rows, 450);
            assert_eq!(total, 150);
            let lines: Vec<u64> = errors.iter().map(|e| e.line).collect();
            assert_eq!(lines, bad_lines[..MAX_LISTED_ERRORS], "chunks of {size}");
            assert!(errors.iter().all(|e| e.reason == Reason::NotInteger));
            assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        }
    }

    #[test]
    fn lines_are_counted_in_crlf_files_and_across_blank_lines() {
        let csv = "pid,n,amount,day,sex,note\r\nA1,1,1,2025-01-01,M,\r\nA2,x,1,2025-01-01,M,\r\n\r\n\r\nA3,1,1,2025-01-01,Q,\"a\r\nb\"\r\nA4,1,1,2025-01-01,M\r\n";
        let (_dir, got) = ingest_in(csv, 1 << 20);
        let Err(IngestError::Rejected { errors, rows, .. }) = got else {
            panic!("not refused");
        };
        assert_eq!(rows, 4);
        let found: Vec<(u64, Option<&str>)> = errors
            .iter()
            .map(|e| (e.line, e.column.as_deref()))
            .collect();
        assert_eq!(
            found,
            [(3, Some("n")), (6, Some("sex")), (8, None)],
            "{errors:?}"
        );
        // A good CRLF file stores no carriage return; a last line without newline is a row.
        let csv = "pid,n,amount,day,sex,note\r\nA1,1,1,2025-01-01,M,x\r\nA2,2,1,2025-01-01,F,y";
        let (_dir, got) = ingest_in(csv, 1 << 20);
        let got = got.unwrap();
        assert_eq!(got.rows, 2);
        assert_eq!(std::fs::read(got.dir().join("c5.bin")).unwrap(), b"xy");
    }

    #[test]
    fn a_row_too_long_for_memory_is_refused() {
        let mut csv = String::from(
            "pid,n,amount,day,sex,note\nA1,1,1,2025-01-01,M,ok\nA2,1,1,2025-01-01,M,\"",
        );
        let line = format!("{}\n", "x".repeat(99));
        while csv.len() <= MAX_ROW_BYTES + CHUNK_BYTES {
            csv.push_str(&line);
        }
        csv.push_str("\"\n");
        let (dir, got) = ingest_in(&csv, CHUNK_BYTES);
        assert!(
            matches!(got, Err(IngestError::LineTooLong { line: 3 })),
            "{got:?}"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn header_size_and_line_limits() {
        let dir = tempfile::tempdir().unwrap();
        let key = PseudonymKey::new(b"k");
        let err = ingest(&b"pid,n\nA,1\n"[..], &schema(), &key, 1 << 20, dir.path()).unwrap_err();
        assert!(matches!(err, IngestError::BadHeader { .. }), "{err}");
        let err = ingest(&b""[..], &schema(), &key, 1 << 20, dir.path()).unwrap_err();
        assert!(matches!(err, IngestError::Empty), "{err}");
        let head = "\u{feff}pid,n,amount,day,sex,note\n";
        let err = ingest(head.as_bytes(), &schema(), &key, 1 << 20, dir.path()).unwrap_err();
        assert!(matches!(err, IngestError::NoRows), "{err}");
        let mut big = String::from(head);
        for _ in 0..1000 {
            big.push_str("A1,1,1.50,2025-01-02,M,hello\n");
        }
        let err = ingest(big.as_bytes(), &schema(), &key, 4096, dir.path()).unwrap_err();
        assert!(
            matches!(err, IngestError::TooLarge { limit: 4096 }),
            "{err}"
        );
        let long = format!(
            "{head}A1,1,1,2025-01-02,M,{}\n",
            "x".repeat(MAX_LINE_BYTES + 10)
        );
        let err = ingest(long.as_bytes(), &schema(), &key, 1 << 30, dir.path()).unwrap_err();
        assert!(matches!(err, IngestError::LineTooLong { line: 2 }), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
