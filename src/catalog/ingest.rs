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

/// How one column's raw value becomes a cell.
enum Parser {
    Integer { min: i64, max: i64 },
    Decimal { scale: u32 },
    Date,
    Category(Codes),
    Text { max_chars: u32 },
}

/// A category domain. Domains of short codes (the usual case) are found in an open-addressed
/// table of the codes packed as integers (one multiplication and about one comparison per
/// lookup, no memory comparison calls); others through a hash map.
enum Codes {
    Packed(PackedCodes),
    Map(std::collections::HashMap<Box<[u8]>, u32>),
}

/// Codes of at most 16 bytes packed with [`pack`], in a power-of-two table probed linearly.
struct PackedCodes {
    /// (packed code, length, index); an index of `u32::MAX` marks an empty entry.
    table: Vec<(u128, usize, u32)>,
    /// 64 minus the table's bit count: the top bits of the hash choose the first entry.
    shift: u32,
}

impl PackedCodes {
    fn slot(&self, (packed, len): (u128, usize)) -> usize {
        let folded = (packed as u64) ^ ((packed >> 64) as u64).rotate_left(29) ^ len as u64;
        (folded.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> self.shift) as usize
    }

    fn find(&self, value: (u128, usize)) -> Option<u32> {
        let mask = self.table.len() - 1;
        let mut i = self.slot(value);
        loop {
            let (packed, len, index) = self.table[i];
            if index == u32::MAX {
                return None;
            }
            if (packed, len) == value {
                return Some(index);
            }
            i = (i + 1) & mask;
        }
    }
}

/// A value of at most 16 bytes packed into one integer (byte i at bits 8 i ..), with its
/// length. Read with two overlapping loads, whose common bytes are the same, rather than copied
/// into a buffer: a wide load right after a narrow copy stalls the CPU.
#[inline]
fn pack(value: &[u8]) -> Option<(u128, usize)> {
    fn u32_at(v: &[u8], at: usize) -> u128 {
        u128::from(u32::from_le_bytes([v[at], v[at + 1], v[at + 2], v[at + 3]]))
    }
    fn u64_at(v: &[u8], at: usize) -> u128 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&v[at..at + 8]);
        u128::from(u64::from_le_bytes(b))
    }
    let len = value.len();
    let packed = match len {
        0 => 0,
        1..=3 => {
            let byte = |i: usize| u128::from(value[i]) << (8 * i);
            byte(0) | byte(len / 2) | byte(len - 1)
        }
        4..=8 => u32_at(value, 0) | u32_at(value, len - 4) << (8 * (len - 4)),
        9..=16 => u64_at(value, 0) | u64_at(value, len - 8) << (8 * (len - 8)),
        _ => return None,
    };
    Some((packed, len))
}

impl Codes {
    fn new(codes: &[String]) -> Self {
        let packed: Option<Vec<(u128, usize)>> = codes.iter().map(|c| pack(c.as_bytes())).collect();
        match packed {
            Some(packed) => {
                // At most a quarter full, so probes stay short and always end at an empty entry.
                let size = (packed.len() * 4).next_power_of_two().max(16);
                let mut table = PackedCodes {
                    table: vec![(0, 0, u32::MAX); size],
                    shift: 64 - size.trailing_zeros(),
                };
                for (index, code) in packed.into_iter().enumerate() {
                    let mut i = table.slot(code);
                    while table.table[i].2 != u32::MAX {
                        i = (i + 1) & (size - 1);
                    }
                    table.table[i] = (code.0, code.1, index as u32);
                }
                Self::Packed(table)
            }
            None => Self::Map(
                codes
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.as_bytes().into(), i as u32))
                    .collect(),
            ),
        }
    }

    fn find(&self, value: &[u8]) -> Option<u32> {
        match self {
            Self::Packed(codes) => codes.find(pack(value)?),
            Self::Map(map) => map.get(value).copied(),
        }
    }
}

struct Prepared {
    parser: Parser,
    pseudonymize: bool,
    nullable: bool,
    storage: Storage,
    name: String,
}

impl Prepared {
    fn new(column: &IngestColumn) -> Self {
        let spec = &column.spec;
        let pseudonymize = matches!(spec.role, ColumnRole::Identifier | ColumnRole::PrivacyUnit);
        let parser = match &spec.ty {
            ColumnType::Integer => Parser::Integer {
                min: column.min.unwrap_or(i64::MIN),
                max: column.max.unwrap_or(i64::MAX),
            },
            ColumnType::Decimal { scale } => Parser::Decimal { scale: *scale },
            ColumnType::Date => Parser::Date,
            ColumnType::Category { codes } => Parser::Category(Codes::new(codes)),
            ColumnType::Text => Parser::Text {
                max_chars: column.max_chars,
            },
        };
        Self {
            parser,
            pseudonymize,
            // Identifying columns are always required: a person cannot be counted by a blank.
            nullable: spec.nullable && !pseudonymize,
            storage: spec.storage(),
            name: spec.name.clone(),
        }
    }

    /// Validates a raw value and appends it to `out` as it is stored. A value of a
    /// pseudonymized column is only validated: the caller appends its pseudonym.
    #[inline]
    fn encode(&self, raw: &[u8], out: &mut ColumnChunk) -> Result<(), Reason> {
        let v = raw.trim_ascii();
        if v.is_empty() {
            if !self.nullable {
                return Err(Reason::Required);
            }
            match self.storage {
                Storage::I64 => out
                    .data
                    .extend_from_slice(&columnar::NULL_I64.to_le_bytes()),
                Storage::I32 => out
                    .data
                    .extend_from_slice(&columnar::NULL_DATE.to_le_bytes()),
                Storage::U32 => out
                    .data
                    .extend_from_slice(&columnar::NULL_CATEGORY.to_le_bytes()),
                Storage::U64 => out
                    .data
                    .extend_from_slice(&columnar::NULL_PSEUDONYM.to_le_bytes()),
                Storage::Text => out.ends.push(out.data.len()),
            }
            return Ok(());
        }
        match &self.parser {
            Parser::Integer { min, max } => {
                let n = parse_integer(v).ok_or(Reason::NotInteger)?;
                if n < *min || n > *max {
                    return Err(Reason::OutOfRange {
                        min: (*min > i64::MIN).then_some(*min),
                        max: (*max < i64::MAX).then_some(*max),
                    });
                }
                if !self.pseudonymize {
                    out.data.extend_from_slice(&n.to_le_bytes());
                }
            }
            Parser::Decimal { scale } => {
                let n = columnar::parse_decimal_bytes(v, *scale)
                    .ok_or(Reason::NotDecimal { scale: *scale })?;
                if !self.pseudonymize {
                    out.data.extend_from_slice(&n.to_le_bytes());
                }
            }
            Parser::Date => {
                let d = columnar::parse_date_bytes(v).ok_or(Reason::NotDate)?;
                if !self.pseudonymize {
                    out.data.extend_from_slice(&d.to_le_bytes());
                }
            }
            Parser::Category(codes) => {
                let c = codes.find(v).ok_or(Reason::UnknownCode)?;
                if !self.pseudonymize {
                    out.data.extend_from_slice(&c.to_le_bytes());
                }
            }
            Parser::Text { max_chars } => {
                let max = *max_chars as usize;
                // ASCII (most values) is UTF-8 with one character per byte; otherwise the
                // cheap bound first: a string of n bytes has at most n characters.
                let too_long = if v.is_ascii() {
                    if v.iter()
                        .any(|b| !crate::input::allowed_char(char::from(*b)))
                    {
                        return Err(Reason::ControlChar);
                    }
                    v.len() > max
                } else {
                    let s = std::str::from_utf8(v).map_err(|_| Reason::NotUtf8)?;
                    if !s.chars().all(crate::input::allowed_char) {
                        return Err(Reason::ControlChar);
                    }
                    s.len() > max && s.chars().count() > max
                };
                if too_long {
                    return Err(Reason::TooLong { max: *max_chars });
                }
                if !self.pseudonymize {
                    out.data.extend_from_slice(v);
                    out.ends.push(out.data.len());
                }
            }
        }
        Ok(())
    }
}

/// Parses a whole number written as `str::parse::<i64>` accepts it (an optional sign, then
/// ASCII digits); `i64::MIN` is refused (it is the NULL sentinel).
fn parse_integer(v: &[u8]) -> Option<i64> {
    let (neg, digits) = match v.first()? {
        b'-' => (true, &v[1..]),
        b'+' => (false, &v[1..]),
        _ => (false, v),
    };
    if digits.is_empty() {
        return None;
    }
    let mut n: i64 = 0;
    for &b in digits {
        let digit = i64::from(b.wrapping_sub(b'0'));
        if digit > 9 {
            return None;
        }
        n = n.checked_mul(10)?;
        n = if neg {
            n.checked_sub(digit)?
        } else {
            n.checked_add(digit)?
        };
    }
    (n != i64::MIN).then_some(n)
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

/// A piece of the file that ends at a row boundary, on its way from the reader through a
/// worker to the writer, and back to the reader empty.
struct Chunk {
    /// Order in the file.
    seq: u64,
    /// The bytes; only `..end` are the file's, the rest is room to read into.
    data: Vec<u8>,
    /// Where the rows to parse start (after the header, in the first chunk).
    start: usize,
    /// End of the file's bytes in `data`.
    end: usize,
    /// The line `data[start]` is on.
    first_line: u64,
    /// Data rows found (blank lines are not rows).
    rows: u64,
    /// The rows encoded as stored, when `complete`.
    columns: Vec<ColumnChunk>,
    /// Whether `columns` holds every row, pseudonyms included: no error was seen in this
    /// chunk nor, when it was started, in any other.
    complete: bool,
    /// The first [`MAX_LISTED_ERRORS`] errors of this chunk.
    errors: Vec<RowError>,
    /// All errors of this chunk.
    error_count: u64,
}

impl Chunk {
    fn new(size: usize, width: usize) -> Self {
        Self {
            seq: 0,
            data: vec![0; size.max(1)],
            start: 0,
            end: 0,
            first_line: 1,
            rows: 0,
            columns: vec![ColumnChunk::default(); width],
            complete: false,
            errors: Vec::new(),
            error_count: 0,
        }
    }

    /// Empties the chunk for reuse, keeping its memory unless a long row made it grow.
    fn recycle(&mut self, size: usize) {
        if self.data.len() > 2 * size {
            self.data = vec![0; size.max(1)];
        }
        self.start = 0;
        self.end = 0;
        self.rows = 0;
        self.columns.iter_mut().for_each(ColumnChunk::clear);
        self.complete = false;
        self.errors.clear();
        self.error_count = 0;
    }
}

/// Where the reader's scan is with respect to quotes (the states of the `csv` crate's
/// parser that matter for where a row ends).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Quoting {
    /// Not in a quoted field: a newline ends the row.
    Outside,
    /// In a quoted field: newlines are part of the value.
    Quoted,
    /// Just after a quote in a quoted field, not knowing yet whether it is doubled.
    AfterQuote,
}

/// Reads the upload into chunks that end at row boundaries; meanwhile hashes the bytes,
/// counts them against the size limit and counts lines against the line-length limit.
struct Reader<R> {
    input: R,
    hasher: Sha256,
    /// Bytes read.
    bytes: u64,
    limit: u64,
    chunk_bytes: usize,
    /// Newlines read.
    lines: u64,
    /// Offset in the file where the current line starts.
    line_start: u64,
    quoting: Quoting,
    eof: bool,
    /// The last row boundary in the chunk being filled: the index of its newline and the
    /// number of newlines up to and including it.
    cut: Option<(usize, u64)>,
    /// Offset in the file of the chunk being filled.
    chunk_offset: u64,
}

impl<R: Read> Reader<R> {
    fn new(input: R, limit: u64, chunk_bytes: usize) -> Self {
        Self {
            input,
            hasher: Sha256::new(),
            bytes: 0,
            limit,
            chunk_bytes,
            lines: 0,
            line_start: 0,
            quoting: Quoting::Outside,
            eof: false,
            cut: None,
            chunk_offset: 0,
        }
    }

    /// Reads into `chunk` (which may already hold bytes carried over) until it holds at least
    /// the chunk size and a row boundary, or the file ends. Returns whether it holds anything.
    fn fill(&mut self, chunk: &mut Chunk) -> Result<bool, IngestError> {
        while !self.eof && (chunk.end < self.chunk_bytes || self.cut.is_none()) {
            if self.cut.is_none() && chunk.end > MAX_ROW_BYTES {
                let mut newlines = 0;
                skip_blank(&chunk.data[..chunk.end], chunk.start, &mut newlines);
                return Err(IngestError::LineTooLong {
                    line: chunk.first_line + newlines,
                });
            }
            if chunk.end == chunk.data.len() {
                chunk.data.resize(2 * chunk.data.len(), 0);
            }
            let room = (chunk.data.len() - chunk.end).min(READ_BYTES);
            let from = chunk.end;
            let n = loop {
                match self.input.read(&mut chunk.data[from..from + room]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(IngestError::Io(e)),
                }
            };
            if n == 0 {
                self.eof = true;
                break;
            }
            self.bytes += n as u64;
            if self.bytes > self.limit {
                return Err(IngestError::TooLarge { limit: self.limit });
            }
            chunk.end += n;
            self.hasher.update(&chunk.data[from..chunk.end]);
            self.scan(&chunk.data[..chunk.end], from)?;
        }
        if self.eof && chunk.end > 0 {
            // The rest of the file is the last chunk, whether or not it ends with a newline.
            self.cut = Some((chunk.end - 1, self.lines));
        }
        Ok(chunk.end > 0)
    }

    /// Scans `data[from..]`, just read: counts newlines (refusing a too-long line), follows
    /// the quoting and notes the last newline outside quotes.
    fn scan(&mut self, data: &[u8], from: usize) -> Result<(), IngestError> {
        let mut skip = from;
        if self.quoting == Quoting::AfterQuote {
            self.quoting = if data[from] == b'"' {
                skip = from + 1;
                Quoting::Quoted
            } else {
                Quoting::Outside
            };
        }
        for i in memchr::memchr2_iter(b'\n', b'"', &data[from..]) {
            let i = from + i;
            if i < skip {
                continue;
            }
            if data[i] == b'\n' {
                let at = self.chunk_offset + i as u64;
                if at - self.line_start > MAX_LINE_BYTES as u64 {
                    return Err(IngestError::LineTooLong {
                        line: self.lines + 1,
                    });
                }
                self.lines += 1;
                self.line_start = at + 1;
                if self.quoting == Quoting::Outside {
                    self.cut = Some((i, self.lines));
                }
            } else if self.quoting == Quoting::Outside {
                // As in the `csv` crate, a quote opens a quoted field only at its start;
                // elsewhere it is an ordinary character.
                if i == 0 || matches!(data[i - 1], b',' | b'\n' | b'\r') {
                    self.quoting = Quoting::Quoted;
                }
            } else {
                match data.get(i + 1) {
                    // A doubled quote stands for one quote; the field goes on.
                    Some(b'"') => skip = i + 2,
                    Some(_) => self.quoting = Quoting::Outside,
                    None => self.quoting = Quoting::AfterQuote,
                }
            }
        }
        if self.bytes - self.line_start > MAX_LINE_BYTES as u64 {
            return Err(IngestError::LineTooLong {
                line: self.lines + 1,
            });
        }
        Ok(())
    }

    /// Ends `full` at its last row boundary and moves the bytes after it to the empty `next`.
    fn carry(&mut self, full: &mut Chunk, next: &mut Chunk) {
        let (cut, lines) = self.cut.take().expect("a filled chunk has a row boundary");
        let tail = full.end - cut - 1;
        next.recycle(self.chunk_bytes);
        if next.data.len() < tail {
            next.data.resize(tail, 0);
        }
        next.data[..tail].copy_from_slice(&full.data[cut + 1..full.end]);
        next.end = tail;
        next.first_line = lines + 1;
        full.end = cut + 1;
        self.chunk_offset += full.end as u64;
    }
}

/// Skips blank lines (any run of `\r` and `\n`, as the `csv` crate does) from `pos`,
/// counting the newlines; returns where the next record starts.
fn skip_blank(data: &[u8], mut pos: usize, newlines: &mut u64) -> usize {
    while let Some(&b) = data.get(pos) {
        match b {
            b'\n' => *newlines += 1,
            b'\r' => {}
            _ => break,
        }
        pos += 1;
    }
    pos
}

/// The bytes [`Splitter::split`] stops at: a comma, a line end or a quote.
static SPECIAL: [bool; 256] = {
    let mut special = [false; 256];
    special[b',' as usize] = true;
    special[b'\n' as usize] = true;
    special[b'\r' as usize] = true;
    special[b'"' as usize] = true;
    special
};

/// Bytes looked at together by [`special_mask`].
const BLOCK: usize = 16;

/// A bit for each byte of `data[at..at + 16]` (fewer at the end) that is [`SPECIAL`], lowest
/// bit first: sixteen bytes compared at once where the CPU can.
#[inline]
fn special_mask(data: &[u8], at: usize) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if let Some(block) = data.get(at..at + BLOCK) {
        use std::arch::x86_64::*;
        // SAFETY: `block` holds 16 readable bytes (the load is unaligned), and SSE2, all these
        // instructions need, is part of every x86_64 CPU.
        return unsafe {
            let v = _mm_loadu_si128(block.as_ptr().cast());
            let hit = |b: u8| _mm_cmpeq_epi8(v, _mm_set1_epi8(b as i8));
            let any = _mm_or_si128(
                _mm_or_si128(hit(b','), hit(b'\n')),
                _mm_or_si128(hit(b'\r'), hit(b'"')),
            );
            _mm_movemask_epi8(any) as u32
        };
    }
    let end = data.len().min(at + BLOCK);
    data[at..end]
        .iter()
        .enumerate()
        .filter(|(_, b)| SPECIAL[usize::from(**b)])
        .fold(0, |mask, (k, _)| mask | 1 << k)
}

/// Where one field's value lies: in the chunk, or in the splitter's scratch buffer when
/// quotes had to be removed.
#[derive(Clone, Copy)]
struct Span {
    start: usize,
    end: usize,
    unquoted: bool,
}

/// Splits records into fields as the `csv` crate reads them (RFC 4180: comma separated,
/// `"` quoted with `""` for a quote, records ended by `\n`, `\r\n` or `\r`), without
/// copying values that have no quotes.
#[derive(Default)]
struct Splitter {
    fields: Vec<Span>,
    scratch: Vec<u8>,
}

impl Splitter {
    /// The value of field `i` of the record last split from `data`.
    #[inline]
    fn field<'a>(&'a self, data: &'a [u8], i: usize) -> &'a [u8] {
        let span = self.fields[i];
        if span.unquoted {
            &self.scratch[span.start..span.end]
        } else {
            &data[span.start..span.end]
        }
    }

    /// Splits the record that starts at `pos` (not blank); returns where the next one may
    /// start and counts the newlines consumed.
    fn split(&mut self, data: &[u8], pos: usize, newlines: &mut u64) -> usize {
        self.fields.clear();
        self.scratch.clear();
        let mut start = pos;
        let mut block = pos;
        while block < data.len() {
            let mut mask = special_mask(data, block);
            while mask != 0 {
                let i = block + mask.trailing_zeros() as usize;
                mask &= mask - 1;
                let next = match data[i] {
                    b',' => {
                        self.fields.push(Span {
                            start,
                            end: i,
                            unquoted: false,
                        });
                        start = i + 1;
                        continue;
                    }
                    b'\n' => {
                        *newlines += 1;
                        i + 1
                    }
                    b'\r' if data.get(i + 1) == Some(&b'\n') => {
                        *newlines += 1;
                        i + 2
                    }
                    b'\r' => i + 1,
                    _ => {
                        self.fields.clear();
                        return self.split_quoted(data, pos, newlines);
                    }
                };
                self.fields.push(Span {
                    start,
                    end: i,
                    unquoted: false,
                });
                return next;
            }
            block += BLOCK;
        }
        self.fields.push(Span {
            start,
            end: data.len(),
            unquoted: false,
        });
        data.len()
    }

    /// [`Splitter::split`] for a record with a quote: byte by byte, values into the scratch
    /// buffer.
    fn split_quoted(&mut self, data: &[u8], mut i: usize, newlines: &mut u64) -> usize {
        let len = data.len();
        loop {
            let start = self.scratch.len();
            if data.get(i) == Some(&b'"') {
                i += 1;
                loop {
                    let rest = &data[i..];
                    let q = memchr::memchr(b'"', rest).unwrap_or(rest.len());
                    *newlines += memchr::memchr_iter(b'\n', &rest[..q]).count() as u64;
                    self.scratch.extend_from_slice(&rest[..q]);
                    i += q + 1;
                    if data.get(i) == Some(&b'"') {
                        self.scratch.push(b'"');
                        i += 1;
                    } else {
                        break;
                    }
                }
                i = i.min(len);
            }
            // Unquoted, or the rest after a closing quote: up to a comma or the record's end;
            // quotes here are ordinary characters.
            while let Some(&b) = data.get(i) {
                if matches!(b, b',' | b'\n' | b'\r') {
                    break;
                }
                self.scratch.push(b);
                i += 1;
            }
            self.fields.push(Span {
                start,
                end: self.scratch.len(),
                unquoted: true,
            });
            match data.get(i) {
                None => return len,
                Some(b',') => i += 1,
                Some(b'\n') => {
                    *newlines += 1;
                    return i + 1;
                }
                Some(_) if data.get(i + 1) == Some(&b'\n') => {
                    *newlines += 1;
                    return i + 2;
                }
                Some(_) => return i + 1,
            }
        }
    }
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
