//! Streaming CSV ingest: validate an uploaded file against a dataset's schema, pseudonymize its
//! identifying columns and write it as a columnar dataset version.
//!
//! The file streams through once, in constant memory: one reused `csv::ByteRecord`, one reused
//! row of cells, buffered column files. While it streams, the raw bytes are hashed (sha256) and
//! counted against the size limit. The first line must name the declared columns, in order.
//! Every cell is parsed by its declared type and nullability; a value of an `identifier` or
//! `privacy_unit` column is replaced by its keyed pseudonym ([`PseudonymKey`]) after it has been
//! validated, so the stored version holds no raw identifier.
//!
//! A file with any bad row is refused whole: nothing of it is kept, and the caller gets the first
//! [`MAX_LISTED_ERRORS`] errors (line, column, reason) and the total count. A good file becomes
//! a finished version directory inside a work directory ([`Ingested`]); the caller moves it to
//! its final place with [`Ingested::persist`], and it is removed if dropped without that.

use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// The platform's pseudonymization key, shared with the sandbox crate (one implementation).
pub use dataop_sandbox::columnar::PseudonymKey;
use dataop_sandbox::columnar::{
    self, ColumnChunk, ColumnRole, ColumnSpec, ColumnType, Storage, VersionMeta, VersionWriter,
};
use sha2::{Digest, Sha256};

/// How many row errors a refusal lists; the rest are only counted.
pub const MAX_LISTED_ERRORS: usize = 100;

/// Longest physical line accepted, in bytes; a longer one is refused before it is buffered.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// Largest number of characters a text cell may hold when its column declares no limit.
pub const DEFAULT_TEXT_CHARS: u32 = 1000;

/// A declared column as the ingest needs it: the stored spec and the text length limit.
#[derive(Debug, Clone)]
pub struct IngestColumn {
    /// Name, type, role and nullability.
    pub spec: ColumnSpec,
    /// Longest text accepted, in characters (text columns only).
    pub max_chars: u32,
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
}

impl Reason {
    /// The message-catalog key that explains this reason (with [`Reason::arg`] as `{n}`).
    pub fn message_key(&self) -> &'static str {
        match self {
            Self::FieldCount { .. } => "catalog.ingest.reason.field_count",
            Self::Required => "catalog.ingest.reason.required",
            Self::NotInteger => "catalog.ingest.reason.not_integer",
            Self::NotDecimal { .. } => "catalog.ingest.reason.not_decimal",
            Self::NotDate => "catalog.ingest.reason.not_date",
            Self::UnknownCode => "catalog.ingest.reason.unknown_code",
            Self::TooLong { .. } => "catalog.ingest.reason.too_long",
            Self::NotUtf8 => "catalog.ingest.reason.not_utf8",
        }
    }

    /// The number the message refers to, if any (decimals, limit, expected fields).
    pub fn arg(&self) -> Option<u64> {
        match self {
            Self::FieldCount { expected, .. } => Some(*expected as u64),
            Self::NotDecimal { scale } => Some(u64::from(*scale)),
            Self::TooLong { max } => Some(u64::from(*max)),
            _ => None,
        }
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
            Self::NotDecimal { scale } => write!(f, "not a number with at most {scale} decimals"),
            Self::NotDate => f.write_str("not a date YYYY-MM-DD"),
            Self::UnknownCode => f.write_str("not one of the declared codes"),
            Self::TooLong { max } => write!(f, "longer than {max} characters"),
            Self::NotUtf8 => f.write_str("not UTF-8 text"),
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

/// Copies (for hashing) and counts the bytes it passes on, refusing past the size limit or a too-long line.
struct Metered<R> {
    inner: R,
    /// The bytes read since the last batch was handed over (hashed by the writer thread).
    copy: Vec<u8>,
    bytes: u64,
    limit: u64,
    line_bytes: usize,
    lines: u64,
    too_large: bool,
    line_too_long: bool,
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Reads are capped far below the line limit, so only the lines at the two ends of a
        // chunk can be too long.
        let cap = buf.len().min(1 << 16);
        let n = self.inner.read(&mut buf[..cap])?;
        let chunk = &buf[..n];
        self.bytes += n as u64;
        if self.bytes > self.limit {
            self.too_large = true;
            return Err(io::Error::other("upload size limit exceeded"));
        }
        self.copy.extend_from_slice(chunk);
        match chunk.iter().position(|&b| b == b'\n') {
            Some(first) => {
                if self.line_bytes + first > MAX_LINE_BYTES {
                    self.line_too_long = true;
                } else {
                    self.lines += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
                    let last = chunk.iter().rposition(|&b| b == b'\n').unwrap_or(first);
                    self.line_bytes = n - last - 1;
                }
            }
            None => self.line_bytes += n,
        }
        if self.line_too_long || self.line_bytes > MAX_LINE_BYTES {
            self.line_too_long = true;
            return Err(io::Error::other("line too long"));
        }
        Ok(n)
    }
}

/// How one column's raw value becomes a cell.
enum Parser {
    Integer,
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

/// A value of at most 16 bytes packed into one integer, with its length.
fn pack(value: &[u8]) -> Option<(u128, usize)> {
    if value.len() > 16 {
        return None;
    }
    let mut bytes = [0u8; 16];
    bytes[..value.len()].copy_from_slice(value);
    Some((u128::from_le_bytes(bytes), value.len()))
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
            ColumnType::Integer => Parser::Integer,
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
    /// pseudonymized column is only validated: its pseudonym is computed by the writing thread.
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
            Parser::Integer => {
                let n = parse_integer(v).ok_or(Reason::NotInteger)?;
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
                let s = std::str::from_utf8(v).map_err(|_| Reason::NotUtf8)?;
                // Cheap bound first: a string of n bytes has at most n characters.
                if s.len() > *max_chars as usize && s.chars().count() > *max_chars as usize {
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
    std::fs::create_dir_all(work_dir)?;
    let dir = TempDir(work_dir.join(format!("ingest-{}", uuid::Uuid::new_v4().simple())));
    let prepared: Vec<Prepared> = columns.iter().map(Prepared::new).collect();
    let metered = Metered {
        inner: input,
        copy: Vec::with_capacity(1 << 20),
        bytes: 0,
        limit: limit_bytes,
        line_bytes: 0,
        lines: 0,
        too_large: false,
        line_too_long: false,
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .buffer_capacity(1 << 16)
        .from_reader(metered);
    let mut record = csv::ByteRecord::new();
    let read = |reader: &mut csv::Reader<Metered<R>>, record: &mut csv::ByteRecord| {
        reader.read_byte_record(record).map_err(|e| {
            let m = reader.get_ref();
            if m.too_large {
                IngestError::TooLarge { limit: m.limit }
            } else if m.line_too_long {
                IngestError::LineTooLong { line: m.lines + 1 }
            } else {
                match e.into_kind() {
                    csv::ErrorKind::Io(e) => IngestError::Io(e),
                    other => IngestError::Io(io::Error::other(format!("{other:?}"))),
                }
            }
        })
    };

    if !read(&mut reader, &mut record)? {
        return Err(IngestError::Empty);
    }
    let found: Vec<String> = record
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let f = if i == 0 {
                f.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(f)
            } else {
                f
            };
            String::from_utf8_lossy(f.trim_ascii()).into_owned()
        })
        .collect();
    let expected: Vec<String> = columns.iter().map(|c| c.spec.name.clone()).collect();
    if found != expected {
        return Err(IngestError::BadHeader { expected, found });
    }

    let specs: Vec<ColumnSpec> = columns.iter().map(|c| c.spec.clone()).collect();
    let writer = VersionWriter::create(&dir.0, specs)?;
    let width = prepared.len();
    let pseudonymized: Vec<usize> = (0..width).filter(|&i| prepared[i].pseudonymize).collect();
    let mut errors = Vec::new();
    let mut total_errors: u64 = 0;
    let mut rows: u64 = 0;

    // Two threads: this one reads, hashes and validates; the writer thread computes the
    // pseudonyms and writes the columns. Batches of rows go over a bounded channel and come
    // back empty for reuse, so memory stays bounded.
    let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<Batch>(2);
    let (empty_tx, empty_rx) = std::sync::mpsc::channel::<Batch>();
    let written = std::thread::scope(
        |scope| -> Result<Option<(VersionWriter, Sha256)>, IngestError> {
            let pseudonymized = &pseudonymized;
            let worker =
                scope.spawn(move || write_batches(writer, full_rx, empty_tx, key, pseudonymized));
            let mut full_tx = Some(full_tx);
            let mut batch = Batch::new(width);
            while read(&mut reader, &mut record)? {
                if full_tx.is_none() {
                    // Refused already: the bytes need no hashing; keep memory bounded.
                    reader.get_mut().copy.clear();
                }
                rows += 1;
                let line = record.position().map_or(rows + 1, csv::Position::line);
                if record.len() != width {
                    if record.len() == 1 && record[0].trim_ascii().is_empty() {
                        // A blank line: not a row.
                        rows -= 1;
                        continue;
                    }
                    total_errors += 1;
                    if errors.len() < MAX_LISTED_ERRORS {
                        errors.push(RowError {
                            line,
                            column: None,
                            reason: Reason::FieldCount {
                                expected: width,
                                found: record.len(),
                            },
                            value: None,
                        });
                    }
                    // Stop writing at the first bad row: the file will be refused anyway.
                    full_tx = None;
                    continue;
                }
                let mut row_ok = true;
                for ((col, raw), out) in prepared.iter().zip(record.iter()).zip(&mut batch.columns)
                {
                    match col.encode(raw, out) {
                        Ok(()) => {
                            if col.pseudonymize {
                                batch.raw.extend_from_slice(raw.trim_ascii());
                                batch.ends.push(batch.raw.len());
                            }
                        }
                        Err(reason) => {
                            row_ok = false;
                            total_errors += 1;
                            if errors.len() < MAX_LISTED_ERRORS {
                                let value = (!col.pseudonymize).then(|| excerpt(raw));
                                errors.push(RowError {
                                    line,
                                    column: Some(col.name.clone()),
                                    reason,
                                    value,
                                });
                            }
                        }
                    }
                }
                if !row_ok {
                    // The file will be refused: nothing more is written.
                    full_tx = None;
                }
                let Some(tx) = full_tx.as_ref() else {
                    batch.clear();
                    continue;
                };
                batch.rows += 1;
                if batch.rows >= BATCH_ROWS {
                    std::mem::swap(&mut reader.get_mut().copy, &mut batch.bytes);
                    let next = empty_rx.try_recv().unwrap_or_else(|_| Batch::new(width));
                    if tx.send(std::mem::replace(&mut batch, next)).is_err() {
                        // The writer failed; its error is returned below.
                        break;
                    }
                }
            }
            if total_errors == 0
                && let Some(tx) = full_tx.as_ref()
            {
                std::mem::swap(&mut reader.get_mut().copy, &mut batch.bytes);
                let _ = tx.send(batch);
            }
            let keep = full_tx.is_some();
            drop(full_tx);
            let writer = worker
                .join()
                .map_err(|_| io::Error::other("the ingest writer panicked"))??;
            Ok(keep.then_some(writer))
        },
    )?;
    if total_errors > 0 {
        return Err(IngestError::Rejected {
            errors,
            total: total_errors,
            rows,
        });
    }
    if rows == 0 {
        return Err(IngestError::NoRows);
    }
    let (writer, hasher) = written.expect("no errors, so the writer was kept");
    let meta = writer.finish()?;
    Ok(Ingested {
        meta,
        rows,
        bytes: reader.get_ref().bytes,
        sha256: hex::encode(hasher.finalize()),
        dir,
    })
}

/// Rows per batch handed to the writer thread.
const BATCH_ROWS: usize = 4096;

/// Validated rows on their way to the writer: every column encoded as stored (the
/// pseudonymized ones still empty) and the trimmed raw values of the pseudonymized columns,
/// row after row, end to end.
struct Batch {
    rows: usize,
    columns: Vec<ColumnChunk>,
    raw: Vec<u8>,
    ends: Vec<usize>,
    /// The file's bytes read since the previous batch, in order.
    bytes: Vec<u8>,
}

impl Batch {
    fn new(width: usize) -> Self {
        Self {
            rows: 0,
            columns: vec![ColumnChunk::default(); width],
            raw: Vec::new(),
            ends: Vec::new(),
            bytes: Vec::new(),
        }
    }

    fn clear(&mut self) {
        self.rows = 0;
        self.columns.iter_mut().for_each(ColumnChunk::clear);
        self.raw.clear();
        self.ends.clear();
        self.bytes.clear();
    }
}

/// The writer thread: hashes the file's bytes, fills in the pseudonyms and writes every batch.
fn write_batches(
    mut writer: VersionWriter,
    full: std::sync::mpsc::Receiver<Batch>,
    empty: std::sync::mpsc::Sender<Batch>,
    key: &PseudonymKey,
    pseudonymized: &[usize],
) -> io::Result<(VersionWriter, Sha256)> {
    let mut hasher = Sha256::new();
    for mut batch in full {
        hasher.update(&batch.bytes);
        let mut start = 0;
        for ends in batch.ends.chunks_exact(pseudonymized.len().max(1)) {
            for (&col, &end) in pseudonymized.iter().zip(ends) {
                let p = key.pseudonym(&batch.raw[start..end]);
                batch.columns[col].data.extend_from_slice(&p.to_le_bytes());
                start = end;
            }
        }
        writer.push_columns(batch.rows, &batch.columns)?;
        batch.clear();
        let _ = empty.send(batch);
    }
    Ok((writer, hasher))
}

/// The first 40 characters of a raw value, for an error message.
fn excerpt(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    let mut out: String = s.chars().take(40).collect();
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
