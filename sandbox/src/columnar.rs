//! Columnar dataset versions: the storage contract between the server and the sandbox.
//!
//! A version is a directory holding `meta.json` (a [`VersionMeta`]) and one file per column:
//! `c{index}.bin` holds fixed-width little-endian values (`i64` for integers and decimals, `i32`
//! for dates, `u32` for category codes, `u64` for pseudonyms) or, for text columns, the UTF-8
//! bytes of every row one after the other, with `c{index}.off` holding `rows + 1` little-endian
//! `u64` offsets into those bytes.
//!
//! Columns whose role is [`ColumnRole::Identifier`] or [`ColumnRole::PrivacyUnit`] are stored
//! as pseudonyms (`u64`, see [`pseudonym`]) whatever their declared type. NULL (allowed only in
//! nullable columns) is stored as a sentinel: `i64::MIN` (integer, decimal), `i32::MIN` (date),
//! `u32::MAX` (category), `u64::MAX` (pseudonym), an empty string (text).
//!
//! [`VersionWriter`] streams rows into buffered per-column files (memory is bounded whatever the
//! row count) and writes `meta.json` last; [`VersionReader`] reads ranges of rows of one column.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The format tag written in `meta.json`.
pub const FORMAT: &str = "dataop-columnar/1";

/// NULL sentinel of integer and decimal columns.
pub const NULL_I64: i64 = i64::MIN;
/// NULL sentinel of date columns.
pub const NULL_DATE: i32 = i32::MIN;
/// NULL sentinel of category columns.
pub const NULL_CATEGORY: u32 = u32::MAX;
/// NULL sentinel of pseudonym columns (identifier and privacy unit roles).
pub const NULL_PSEUDONYM: u64 = u64::MAX;

/// Largest decimal scale a column may declare.
pub const MAX_DECIMAL_SCALE: u32 = 6;

/// Size of the write buffer of each column file.
const WRITE_BUFFER: usize = 256 * 1024;
/// Bytes appended between two background writebacks of a version being written.
const WRITEBACK_EVERY: u64 = 8 << 20;

/// The declared type of a column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ColumnType {
    /// A signed integer, stored as `i64`.
    Integer,
    /// A fixed-point decimal, stored as `i64` = value × 10^scale (scale 0..=6); CSV `123.45`.
    Decimal {
        /// Number of digits after the decimal point.
        scale: u32,
    },
    /// A calendar date, stored as `i32` days since 1970-01-01; CSV `YYYY-MM-DD`.
    Date,
    /// A code from a closed list, stored as the `u32` index of the code in `codes`.
    Category {
        /// The declared domain of the column, in order.
        codes: Vec<String>,
    },
    /// Free text, stored as offsets and UTF-8 bytes; never handed to guests.
    Text,
}

/// The role of a column, which decides how it is stored and who may read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnRole {
    /// Directly identifies a person (a name, …): stored as a pseudonym, never readable by a job.
    Identifier,
    /// The key of the person the row is about: stored as a pseudonym, used by the host to count
    /// distinct persons, never handed to a job.
    PrivacyUnit,
    /// Could identify a person in combination with others (age, district, …).
    QuasiIdentifier,
    /// Sensitive attribute (costs, diagnoses, …).
    Sensitive,
    /// Anything else.
    Plain,
}

impl ColumnRole {
    /// Whether columns of this role are stored as pseudonyms.
    pub fn is_pseudonymized(self) -> bool {
        matches!(self, ColumnRole::Identifier | ColumnRole::PrivacyUnit)
    }
}

/// The declaration of one column of a dataset version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnSpec {
    /// Column name, unique within the version.
    pub name: String,
    /// Declared type (validates raw values even when the column is pseudonymized).
    pub ty: ColumnType,
    /// Role of the column.
    pub role: ColumnRole,
    /// Whether NULL is allowed.
    pub nullable: bool,
}

/// How the values of a column are physically stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Storage {
    /// `i64` little-endian (integer and decimal columns).
    I64,
    /// `i32` little-endian (date columns).
    I32,
    /// `u32` little-endian (category columns).
    U32,
    /// `u64` little-endian (pseudonymized columns).
    U64,
    /// Offsets and UTF-8 bytes (text columns).
    Text,
}

impl Storage {
    /// Width in bytes of one value in `c{index}.bin` (0 for text).
    pub fn width(self) -> usize {
        match self {
            Storage::I64 | Storage::U64 => 8,
            Storage::I32 | Storage::U32 => 4,
            Storage::Text => 0,
        }
    }
}

impl ColumnSpec {
    /// Physical storage of this column.
    pub fn storage(&self) -> Storage {
        if self.role.is_pseudonymized() {
            return Storage::U64;
        }
        match self.ty {
            ColumnType::Integer | ColumnType::Decimal { .. } => Storage::I64,
            ColumnType::Date => Storage::I32,
            ColumnType::Category { .. } => Storage::U32,
            ColumnType::Text => Storage::Text,
        }
    }
}

/// One value of a row, as handed to [`VersionWriter::push_row`] or read back by
/// [`VersionReader::cell`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    /// NULL (only in nullable columns).
    Null,
    /// An integer.
    Int(i64),
    /// A decimal, already scaled (value × 10^scale).
    Decimal(i64),
    /// A date, in days since 1970-01-01.
    Date(i32),
    /// A category code index.
    Category(u32),
    /// Text.
    Text(String),
    /// The pseudonym of an identifier or privacy-unit value (see [`pseudonym`]).
    Pseudonym(u64),
}

/// The metadata of a finished version (`meta.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionMeta {
    /// Always [`FORMAT`].
    pub format: String,
    /// Number of rows.
    pub rows: u64,
    /// The columns, in file index order.
    pub columns: Vec<ColumnSpec>,
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.into())
}

fn invalid_data(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Checks that a column list is well formed: non-empty unique names, decimal scales within
/// 0..=6, non-empty unique category codes fewer than `u32::MAX`.
pub fn validate_columns(columns: &[ColumnSpec]) -> io::Result<()> {
    let mut names = std::collections::HashSet::new();
    for c in columns {
        if c.name.is_empty() {
            return Err(invalid("a column has an empty name"));
        }
        if !names.insert(c.name.as_str()) {
            return Err(invalid(format!("duplicate column name `{}`", c.name)));
        }
        match &c.ty {
            ColumnType::Decimal { scale } if *scale > MAX_DECIMAL_SCALE => {
                return Err(invalid(format!(
                    "column `{}`: decimal scale {scale} is above {MAX_DECIMAL_SCALE}",
                    c.name
                )));
            }
            ColumnType::Category { codes } => {
                if codes.len() >= NULL_CATEGORY as usize {
                    return Err(invalid(format!("column `{}`: too many codes", c.name)));
                }
                let mut seen = std::collections::HashSet::new();
                for code in codes {
                    if !seen.insert(code.as_str()) {
                        return Err(invalid(format!(
                            "column `{}`: duplicate category code `{code}`",
                            c.name
                        )));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn bin_path(dir: &Path, index: usize) -> PathBuf {
    dir.join(format!("c{index}.bin"))
}

fn off_path(dir: &Path, index: usize) -> PathBuf {
    dir.join(format!("c{index}.off"))
}

/// The open files of one column being written.
struct ColumnSink {
    storage: Storage,
    nullable: bool,
    /// Number of codes for category columns (a code must be below it).
    codes: u32,
    /// Whether an `I64` column is a decimal (takes [`Cell::Decimal`], not [`Cell::Int`]).
    decimal: bool,
    bin: BufWriter<File>,
    /// Offsets file and running offset, for text columns.
    off: Option<(BufWriter<File>, u64)>,
}

/// Streams the rows of a new version into per-column files.
pub struct VersionWriter {
    dir: PathBuf,
    columns: Vec<ColumnSpec>,
    sinks: Vec<ColumnSink>,
    rows: u64,
    /// Bytes appended since the last background writeback.
    unsynced: u64,
    /// The background writeback thread, started at the first [`WRITEBACK_EVERY`] bytes.
    writeback: Option<Writeback>,
}

/// A thread that `fdatasync`s the column files while the rest is still being written, so the
/// final fsync of [`VersionWriter::finish`] waits only for the tail.
struct Writeback {
    files: std::sync::mpsc::SyncSender<Vec<File>>,
    /// Whether the thread is still syncing the last batch (then no new batch is prepared).
    busy: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<io::Result<()>>,
}

impl Writeback {
    fn start() -> io::Result<Self> {
        use std::sync::atomic::{AtomicBool, Ordering};
        let (files, rx) = std::sync::mpsc::sync_channel::<Vec<File>>(1);
        let busy = std::sync::Arc::new(AtomicBool::new(false));
        let done = std::sync::Arc::clone(&busy);
        let thread = std::thread::Builder::new()
            .name("dataop-writeback".into())
            .spawn(move || {
                for batch in rx {
                    for f in batch {
                        f.sync_data()?;
                    }
                    done.store(false, Ordering::Release);
                }
                Ok(())
            })?;
        Ok(Writeback {
            files,
            busy,
            thread,
        })
    }

    /// Waits for the writebacks asked so far; their first error.
    fn join(self) -> io::Result<()> {
        drop(self.files);
        self.thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the writeback thread panicked")))
    }
}

impl VersionWriter {
    /// Creates `dir` (must not exist; its parent is created if needed) and one buffered file per
    /// column. Fails with `InvalidInput` when the column list is malformed (see
    /// [`validate_columns`]).
    pub fn create(dir: &Path, columns: Vec<ColumnSpec>) -> io::Result<Self> {
        validate_columns(&columns)?;
        if let Some(parent) = dir.parent()
            && !parent.as_os_str().is_empty()
        {
            fs::create_dir_all(parent)?;
        }
        fs::create_dir(dir)?;
        let mut sinks = Vec::with_capacity(columns.len());
        for (i, c) in columns.iter().enumerate() {
            let storage = c.storage();
            let bin = BufWriter::with_capacity(WRITE_BUFFER, File::create_new(bin_path(dir, i))?);
            let off = if storage == Storage::Text {
                let mut w =
                    BufWriter::with_capacity(WRITE_BUFFER, File::create_new(off_path(dir, i))?);
                w.write_all(&0u64.to_le_bytes())?;
                Some((w, 0))
            } else {
                None
            };
            let codes = match &c.ty {
                ColumnType::Category { codes } => codes.len() as u32,
                _ => 0,
            };
            sinks.push(ColumnSink {
                storage,
                nullable: c.nullable,
                codes,
                decimal: matches!(c.ty, ColumnType::Decimal { .. }),
                bin,
                off,
            });
        }
        Ok(VersionWriter {
            dir: dir.to_path_buf(),
            columns,
            sinks,
            rows: 0,
            unsynced: 0,
            writeback: None,
        })
    }

    /// The directory being written.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends one row; `InvalidInput` if the arity or a cell's kind does not match the spec
    /// (pseudonymized columns take [`Cell::Pseudonym`], other columns the cell of their declared
    /// type; [`Cell::Null`] only in nullable columns; values equal to a NULL sentinel and category
    /// codes outside the domain are refused). Nothing is written when the row is refused.
    pub fn push_row(&mut self, cells: &[Cell]) -> io::Result<()> {
        if cells.len() != self.sinks.len() {
            return Err(invalid(format!(
                "row {} has {} cells, expected {}",
                self.rows + 1,
                cells.len(),
                self.sinks.len()
            )));
        }
        for (i, (cell, sink)) in cells.iter().zip(&self.sinks).enumerate() {
            if !cell_fits(sink, cell) {
                return Err(invalid(format!(
                    "row {}, column `{}`: a {} value does not fit a {:?} column{}",
                    self.rows + 1,
                    self.columns[i].name,
                    cell_kind(cell),
                    sink.storage,
                    if matches!(cell, Cell::Null) {
                        " that is not nullable"
                    } else {
                        ""
                    }
                )));
            }
        }
        for (cell, sink) in cells.iter().zip(&mut self.sinks) {
            write_cell(sink, cell)?;
        }
        self.rows += 1;
        Ok(())
    }

    /// Appends `rows` rows given column by column, already encoded as they are stored (see
    /// [`ColumnChunk`]); `InvalidInput` if the number of columns or of values does not match, or
    /// if a value could not have come from [`VersionWriter::push_row`] (a NULL sentinel in a
    /// column that is not nullable, a category code outside the domain, text offsets out of
    /// order or splitting UTF-8). Nothing is written when the chunk is refused.
    pub fn push_columns(&mut self, rows: usize, columns: &[ColumnChunk]) -> io::Result<()> {
        if columns.len() != self.sinks.len() {
            return Err(invalid(format!(
                "{} columns given, expected {}",
                columns.len(),
                self.sinks.len()
            )));
        }
        for (i, (chunk, sink)) in columns.iter().zip(&self.sinks).enumerate() {
            if !chunk_fits(sink, rows, chunk) {
                return Err(invalid(format!(
                    "rows {} to {}, column `{}`: the encoded values do not fit a {:?} column",
                    self.rows + 1,
                    self.rows + rows as u64,
                    self.columns[i].name,
                    sink.storage
                )));
            }
        }
        for (chunk, sink) in columns.iter().zip(&mut self.sinks) {
            sink.bin.write_all(&chunk.data)?;
            self.unsynced += chunk.data.len() as u64;
            if let Some((off, pos)) = sink.off.as_mut() {
                for &end in &chunk.ends {
                    off.write_all(&(*pos + end as u64).to_le_bytes())?;
                }
                *pos += chunk.data.len() as u64;
                self.unsynced += 8 * chunk.ends.len() as u64;
            }
        }
        self.rows += rows as u64;
        if self.unsynced >= WRITEBACK_EVERY {
            self.start_writeback()?;
        }
        Ok(())
    }

    /// Hands what was written so far to the writeback thread (skipped while it is still busy
    /// with the previous batch: the final fsync covers everything anyway).
    fn start_writeback(&mut self) -> io::Result<()> {
        use std::sync::atomic::Ordering;
        if self.writeback.is_none() {
            self.writeback = Some(Writeback::start()?);
        }
        let Some(wb) = &self.writeback else {
            return Ok(());
        };
        if wb.busy.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut files = Vec::with_capacity(self.sinks.len() * 2);
        for sink in &mut self.sinks {
            sink.bin.flush()?;
            files.push(sink.bin.get_ref().try_clone()?);
            if let Some((off, _)) = sink.off.as_mut() {
                off.flush()?;
                files.push(off.get_ref().try_clone()?);
            }
        }
        wb.busy.store(true, Ordering::Release);
        if wb.files.try_send(files).is_ok() {
            self.unsynced = 0;
        }
        Ok(())
    }

    /// Number of rows pushed so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Flushes and fsyncs every column file, writes `meta.json` last (fsynced, then the directory
    /// is fsynced) and returns the meta.
    pub fn finish(self) -> io::Result<VersionMeta> {
        if let Some(wb) = self.writeback {
            wb.join()?;
        }
        let mut files = Vec::with_capacity(2 * self.sinks.len());
        for sink in self.sinks {
            files.push(sink.bin.into_inner().map_err(|e| e.into_error())?);
            if let Some((off, _)) = sink.off {
                files.push(off.into_inner().map_err(|e| e.into_error())?);
            }
        }
        // Every column file reaches the disk before the metadata that makes the version
        // complete; the files are synced side by side (each sync mostly waits for the device).
        std::thread::scope(|scope| {
            let syncs: Vec<_> = files
                .iter()
                .map(|f| scope.spawn(move || f.sync_all()))
                .collect();
            syncs.into_iter().try_for_each(|s| {
                s.join()
                    .map_err(|_| io::Error::other("a file sync thread panicked"))?
            })
        })?;
        let meta = VersionMeta {
            format: FORMAT.to_string(),
            rows: self.rows,
            columns: self.columns,
        };
        let json = serde_json::to_vec_pretty(&meta).map_err(io::Error::other)?;
        let mut f = File::create_new(self.dir.join("meta.json"))?;
        f.write_all(&json)?;
        f.sync_all()?;
        File::open(&self.dir)?.sync_all()?;
        Ok(meta)
    }

    /// Drops the unfinished version and removes its directory.
    pub fn abort(self) -> io::Result<()> {
        let dir = self.dir.clone();
        drop(self);
        fs::remove_dir_all(dir)
    }
}

/// Some rows of one column encoded as [`VersionWriter`] stores them, for
/// [`VersionWriter::push_columns`]: `data` holds the fixed-width little-endian values (NULL as
/// its sentinel) or, for a text column, the UTF-8 bytes of the rows end to end, with `ends`
/// holding where each row's text ends in `data` (so `ends` is empty for fixed-width columns).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ColumnChunk {
    /// The encoded values.
    pub data: Vec<u8>,
    /// Text columns only: the end of each row's text in `data`.
    pub ends: Vec<usize>,
}

impl ColumnChunk {
    /// Empties the chunk, keeping its memory.
    pub fn clear(&mut self) {
        self.data.clear();
        self.ends.clear();
    }
}

/// Whether `chunk` holds `rows` values that [`VersionWriter::push_row`] could have written to
/// `sink`.
fn chunk_fits(sink: &ColumnSink, rows: usize, chunk: &ColumnChunk) -> bool {
    fn all<const W: usize>(data: &[u8], ok: impl Fn([u8; W]) -> bool) -> bool {
        data.chunks_exact(W)
            .all(|b| ok(b.try_into().expect("chunks of W bytes")))
    }
    let nullable = sink.nullable;
    let fixed =
        |width: usize| chunk.ends.is_empty() && Some(chunk.data.len()) == rows.checked_mul(width);
    match sink.storage {
        Storage::I64 => {
            fixed(8) && (nullable || all(&chunk.data, |b| i64::from_le_bytes(b) != NULL_I64))
        }
        Storage::I32 => {
            fixed(4) && (nullable || all(&chunk.data, |b| i32::from_le_bytes(b) != NULL_DATE))
        }
        Storage::U32 => {
            fixed(4)
                && all(&chunk.data, |b| {
                    let v = u32::from_le_bytes(b);
                    v < sink.codes || (nullable && v == NULL_CATEGORY)
                })
        }
        Storage::U64 => {
            fixed(8) && (nullable || all(&chunk.data, |b| u64::from_le_bytes(b) != NULL_PSEUDONYM))
        }
        Storage::Text => {
            let mut start = 0;
            chunk.ends.len() == rows
                && chunk.ends.last().copied().unwrap_or(0) == chunk.data.len()
                && chunk.ends.iter().all(|&end| {
                    let text = chunk.data.get(start..end);
                    start = end;
                    text.is_some_and(|t| std::str::from_utf8(t).is_ok())
                })
        }
    }
}

fn cell_kind(cell: &Cell) -> &'static str {
    match cell {
        Cell::Null => "NULL",
        Cell::Int(_) => "integer",
        Cell::Decimal(_) => "decimal",
        Cell::Date(_) => "date",
        Cell::Category(_) => "category",
        Cell::Text(_) => "text",
        Cell::Pseudonym(_) => "pseudonym",
    }
}

#[inline]
fn cell_fits(sink: &ColumnSink, cell: &Cell) -> bool {
    match (sink.storage, cell) {
        (_, Cell::Null) => sink.nullable,
        (Storage::I64, Cell::Int(v)) => !sink.decimal && *v != NULL_I64,
        (Storage::I64, Cell::Decimal(v)) => sink.decimal && *v != NULL_I64,
        (Storage::I32, Cell::Date(v)) => *v != NULL_DATE,
        (Storage::U32, Cell::Category(v)) => *v < sink.codes,
        (Storage::U64, Cell::Pseudonym(v)) => *v != NULL_PSEUDONYM,
        (Storage::Text, Cell::Text(_)) => true,
        _ => false,
    }
}

#[inline]
fn write_cell(sink: &mut ColumnSink, cell: &Cell) -> io::Result<()> {
    match (sink.storage, cell) {
        (Storage::I64, Cell::Int(v) | Cell::Decimal(v)) => sink.bin.write_all(&v.to_le_bytes()),
        (Storage::I64, _) => sink.bin.write_all(&NULL_I64.to_le_bytes()),
        (Storage::I32, Cell::Date(v)) => sink.bin.write_all(&v.to_le_bytes()),
        (Storage::I32, _) => sink.bin.write_all(&NULL_DATE.to_le_bytes()),
        (Storage::U32, Cell::Category(v)) => sink.bin.write_all(&v.to_le_bytes()),
        (Storage::U32, _) => sink.bin.write_all(&NULL_CATEGORY.to_le_bytes()),
        (Storage::U64, Cell::Pseudonym(v)) => sink.bin.write_all(&v.to_le_bytes()),
        (Storage::U64, _) => sink.bin.write_all(&NULL_PSEUDONYM.to_le_bytes()),
        (Storage::Text, cell) => {
            let text = match cell {
                Cell::Text(s) => s.as_bytes(),
                _ => &[],
            };
            sink.bin.write_all(text)?;
            let (off, pos) = sink
                .off
                .as_mut()
                .expect("text columns have an offsets file");
            *pos += text.len() as u64;
            off.write_all(&pos.to_le_bytes())
        }
    }
}

/// Reads a finished version, one column range at a time.
pub struct VersionReader {
    dir: PathBuf,
    meta: VersionMeta,
    bins: Vec<File>,
    offs: Vec<Option<File>>,
}

impl std::fmt::Debug for VersionReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VersionReader")
            .field("dir", &self.dir)
            .field("rows", &self.meta.rows)
            .finish()
    }
}

impl VersionReader {
    /// Opens a finished version: reads `meta.json`, checks the format and that every column file
    /// has the size the row count implies (`InvalidData` otherwise).
    pub fn open(dir: &Path) -> io::Result<Self> {
        let raw = fs::read(dir.join("meta.json"))?;
        let meta: VersionMeta =
            serde_json::from_slice(&raw).map_err(|e| invalid_data(format!("meta.json: {e}")))?;
        if meta.format != FORMAT {
            return Err(invalid_data(format!(
                "unknown version format `{}`",
                meta.format
            )));
        }
        validate_columns(&meta.columns).map_err(|e| invalid_data(e.to_string()))?;
        let mut bins = Vec::with_capacity(meta.columns.len());
        let mut offs = Vec::with_capacity(meta.columns.len());
        for (i, c) in meta.columns.iter().enumerate() {
            let bin = File::open(bin_path(dir, i))?;
            let len = bin.metadata()?.len();
            let storage = c.storage();
            if storage == Storage::Text {
                let off = File::open(off_path(dir, i))?;
                let off_len = off.metadata()?.len();
                if Some(off_len) != meta.rows.checked_add(1).and_then(|r| r.checked_mul(8)) {
                    return Err(invalid_data(format!(
                        "column `{}`: offsets file size",
                        c.name
                    )));
                }
                let mut last = [0u8; 8];
                off.read_exact_at(&mut last, off_len - 8)?;
                if u64::from_le_bytes(last) != len {
                    return Err(invalid_data(format!("column `{}`: text file size", c.name)));
                }
                offs.push(Some(off));
            } else {
                if Some(len) != meta.rows.checked_mul(storage.width() as u64) {
                    return Err(invalid_data(format!("column `{}`: file size", c.name)));
                }
                offs.push(None);
            }
            bins.push(bin);
        }
        Ok(VersionReader {
            dir: dir.to_path_buf(),
            meta,
            bins,
            offs,
        })
    }

    /// The version's metadata.
    pub fn meta(&self) -> &VersionMeta {
        &self.meta
    }

    /// The version's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of rows.
    pub fn rows(&self) -> u64 {
        self.meta.rows
    }

    /// Index of the column named `name`.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.meta.columns.iter().position(|c| c.name == name)
    }

    fn check(&self, col: usize, storage: Storage, start: u64, n: usize) -> io::Result<()> {
        let spec = self
            .meta
            .columns
            .get(col)
            .ok_or_else(|| invalid(format!("no column {col}")))?;
        if spec.storage() != storage {
            return Err(invalid(format!(
                "column `{}` is stored as {:?}, not {storage:?}",
                spec.name,
                spec.storage()
            )));
        }
        match start.checked_add(n as u64) {
            Some(end) if end <= self.meta.rows => Ok(()),
            _ => Err(invalid(format!(
                "rows {start}+{n} are beyond the {} rows",
                self.meta.rows
            ))),
        }
    }

    fn read_fixed<const W: usize>(
        &self,
        col: usize,
        storage: Storage,
        start: u64,
        n: usize,
        mut put: impl FnMut(usize, [u8; W]),
    ) -> io::Result<()> {
        self.check(col, storage, start, n)?;
        const CHUNK: usize = 64 * 1024;
        let mut buf = vec![0u8; CHUNK.min(n * W)];
        let mut done = 0usize;
        while done < n {
            let take = (n - done).min(CHUNK / W);
            let bytes = &mut buf[..take * W];
            self.bins[col].read_exact_at(bytes, (start + done as u64) * W as u64)?;
            for (j, chunk) in bytes.chunks_exact(W).enumerate() {
                put(done + j, chunk.try_into().expect("chunk of W bytes"));
            }
            done += take;
        }
        Ok(())
    }

    /// Reads the stored little-endian bytes of fixed-width column `col` from row `start` into
    /// `dst` (whose length must be a multiple of the column's width).
    pub fn read_raw_bytes(&self, col: usize, start: u64, dst: &mut [u8]) -> io::Result<()> {
        let spec = self
            .meta
            .columns
            .get(col)
            .ok_or_else(|| invalid(format!("no column {col}")))?;
        let w = spec.storage().width();
        if w == 0 || !dst.len().is_multiple_of(w) {
            return Err(invalid(format!("column `{}`: bad raw read", spec.name)));
        }
        self.check(col, spec.storage(), start, dst.len() / w)?;
        self.bins[col].read_exact_at(dst, start * w as u64)
    }

    /// Reads `out.len()` values of an integer or decimal column starting at row `start`.
    pub fn read_i64(&self, col: usize, start: u64, out: &mut [i64]) -> io::Result<()> {
        self.read_fixed::<8>(col, Storage::I64, start, out.len(), |i, b| {
            out[i] = i64::from_le_bytes(b)
        })
    }

    /// Reads `out.len()` values of a date column starting at row `start`.
    pub fn read_i32(&self, col: usize, start: u64, out: &mut [i32]) -> io::Result<()> {
        self.read_fixed::<4>(col, Storage::I32, start, out.len(), |i, b| {
            out[i] = i32::from_le_bytes(b)
        })
    }

    /// Reads `out.len()` codes of a category column starting at row `start`.
    pub fn read_u32(&self, col: usize, start: u64, out: &mut [u32]) -> io::Result<()> {
        self.read_fixed::<4>(col, Storage::U32, start, out.len(), |i, b| {
            out[i] = u32::from_le_bytes(b)
        })
    }

    /// Reads `out.len()` pseudonyms of a pseudonymized column starting at row `start`.
    pub fn read_u64(&self, col: usize, start: u64, out: &mut [u64]) -> io::Result<()> {
        self.read_fixed::<8>(col, Storage::U64, start, out.len(), |i, b| {
            out[i] = u64::from_le_bytes(b)
        })
    }

    /// Reads `n` values of a text column starting at row `start`.
    pub fn read_text(&self, col: usize, start: u64, n: usize) -> io::Result<Vec<String>> {
        self.check(col, Storage::Text, start, n)?;
        let off = self.offs[col].as_ref().expect("text columns have offsets");
        let mut raw = vec![0u8; (n + 1) * 8];
        off.read_exact_at(&mut raw, start * 8)?;
        let offsets: Vec<u64> = raw
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect();
        let (first, last) = (offsets[0], offsets[n]);
        if offsets.windows(2).any(|w| w[0] > w[1]) {
            return Err(invalid_data("text offsets are not increasing"));
        }
        let len = usize::try_from(last - first).map_err(|_| invalid_data("text too long"))?;
        let mut bytes = vec![0u8; len];
        self.bins[col].read_exact_at(&mut bytes, first)?;
        offsets
            .windows(2)
            .map(|w| {
                let s = &bytes[(w[0] - first) as usize..(w[1] - first) as usize];
                String::from_utf8(s.to_vec()).map_err(|_| invalid_data("text is not UTF-8"))
            })
            .collect()
    }

    /// Reads one cell (convenient, slow: for tests and tools, not for scans).
    pub fn cell(&self, col: usize, row: u64) -> io::Result<Cell> {
        let spec = self
            .meta
            .columns
            .get(col)
            .ok_or_else(|| invalid(format!("no column {col}")))?;
        Ok(match spec.storage() {
            Storage::I64 => {
                let mut v = [0i64];
                self.read_i64(col, row, &mut v)?;
                match (v[0], &spec.ty) {
                    (NULL_I64, _) => Cell::Null,
                    (v, ColumnType::Decimal { .. }) => Cell::Decimal(v),
                    (v, _) => Cell::Int(v),
                }
            }
            Storage::I32 => {
                let mut v = [0i32];
                self.read_i32(col, row, &mut v)?;
                if v[0] == NULL_DATE {
                    Cell::Null
                } else {
                    Cell::Date(v[0])
                }
            }
            Storage::U32 => {
                let mut v = [0u32];
                self.read_u32(col, row, &mut v)?;
                if v[0] == NULL_CATEGORY {
                    Cell::Null
                } else {
                    Cell::Category(v[0])
                }
            }
            Storage::U64 => {
                let mut v = [0u64];
                self.read_u64(col, row, &mut v)?;
                if v[0] == NULL_PSEUDONYM {
                    Cell::Null
                } else {
                    Cell::Pseudonym(v[0])
                }
            }
            Storage::Text => {
                let mut v = self.read_text(col, row, 1)?;
                let s = v.pop().unwrap_or_default();
                if s.is_empty() && spec.nullable {
                    Cell::Null
                } else {
                    Cell::Text(s)
                }
            }
        })
    }
}

/// A pseudonymization key with its HMAC-SHA256 state precomputed: the inner and outer hash
/// states after their padded key block, so one pseudonym of a short value costs exactly two
/// SHA-256 compressions, run straight on the padded blocks.
#[derive(Clone)]
pub struct PseudonymKey {
    inner: [u32; 8],
    outer: [u32; 8],
    /// Whether this CPU has the SHA extensions, which [`PseudonymBatch::hash`] runs several
    /// values at once on (never, on other architectures).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    sha_ni: bool,
}

#[cfg(target_arch = "x86_64")]
mod shani;

impl std::fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PseudonymKey(<redacted>)")
    }
}

/// The SHA-256 initial state (FIPS 180-4, 5.3.3).
const SHA256_IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// Runs the SHA-256 compression over `blocks` (a whole number of 64-byte blocks).
fn compress(state: &mut [u32; 8], blocks: &[u8]) {
    for block in blocks.chunks_exact(64) {
        sha2::compress256(
            state,
            std::slice::from_ref(sha2::digest::generic_array::GenericArray::from_slice(block)),
        );
    }
}

impl PseudonymKey {
    /// A key from raw key bytes (any length, as HMAC allows).
    pub fn new(key: &[u8]) -> Self {
        const BLOCK: usize = 64;
        let mut k = [0u8; BLOCK];
        if key.len() > BLOCK {
            k[..32].copy_from_slice(&Sha256::digest(key));
        } else {
            k[..key.len()].copy_from_slice(key);
        }
        let mut inner = SHA256_IV;
        compress(&mut inner, &k.map(|b| b ^ 0x36));
        let mut outer = SHA256_IV;
        compress(&mut outer, &k.map(|b| b ^ 0x5c));
        #[cfg(target_arch = "x86_64")]
        let sha_ni = shani::available();
        #[cfg(not(target_arch = "x86_64"))]
        let sha_ni = false;
        Self {
            inner,
            outer,
            sha_ni,
        }
    }

    /// The pseudonym of a raw value as given (the caller trims it): the first 8 bytes
    /// (big-endian) of HMAC-SHA256(key, `raw`).
    pub fn pseudonym(&self, raw: &[u8]) -> u64 {
        // Inner hash: the whole blocks of `raw`, then its tail padded with 0x80, zeros and the
        // bit length of key block plus message.
        let mut inner = self.inner;
        let whole = raw.len() - raw.len() % 64;
        compress(&mut inner, &raw[..whole]);
        let tail = &raw[whole..];
        let mut last = [0u8; 128];
        last[..tail.len()].copy_from_slice(tail);
        last[tail.len()] = 0x80;
        let end = if tail.len() < 56 { 64 } else { 128 };
        let bits = (64 + raw.len() as u64) * 8;
        last[end - 8..end].copy_from_slice(&bits.to_be_bytes());
        compress(&mut inner, &last[..end]);
        self.outer_hash(inner)
    }

    /// The pseudonym from the inner hash state: the outer hash of the 32-byte inner digest in
    /// one padded block.
    fn outer_hash(&self, inner: [u32; 8]) -> u64 {
        let mut block = [0u8; 64];
        for (out, word) in block.chunks_exact_mut(4).zip(inner) {
            out.copy_from_slice(&word.to_be_bytes());
        }
        block[32] = 0x80;
        block[56..].copy_from_slice(&((64u64 + 32) * 8).to_be_bytes());
        let mut outer = self.outer;
        compress(&mut outer, &block);
        (u64::from(outer[0]) << 32) | u64::from(outer[1])
    }

    /// The pseudonym of a short value given as its padded inner block.
    fn pseudonym_of_block(&self, block: &[u8; 64]) -> u64 {
        let mut inner = self.inner;
        compress(&mut inner, block);
        self.outer_hash(inner)
    }

    /// The pseudonyms of `N` short values given as their padded inner blocks.
    fn pseudonyms_of_blocks<const N: usize>(&self, blocks: [&[u8; 64]; N]) -> [u64; N] {
        #[cfg(target_arch = "x86_64")]
        if self.sha_ni {
            // SAFETY: `sha_ni` is set only when the CPU has the instructions this uses.
            return unsafe { shani::pseudonyms(&self.inner, &self.outer, blocks) };
        }
        blocks.map(|b| self.pseudonym_of_block(b))
    }
}

/// Values gathered to be pseudonymized together: on a CPU with the SHA extensions,
/// [`PseudonymBatch::hash`] runs four short values side by side, about twice as fast as one
/// by one.
#[derive(Default)]
pub struct PseudonymBatch {
    /// The padded inner block of each value of up to 55 bytes (a longer value's is unused).
    blocks: Vec<[u8; 64]>,
    /// Longer values: their place in the batch and their bytes in `long_bytes`.
    long: Vec<(usize, std::ops::Range<usize>)>,
    long_bytes: Vec<u8>,
}

impl PseudonymBatch {
    /// Longest value whose inner block is one padded block (64 − 1 − 8 bytes).
    const SHORT: usize = 55;

    /// Adds a raw value as given (the caller trims it).
    pub fn push(&mut self, raw: &[u8]) {
        let mut block = [0u8; 64];
        if raw.len() <= Self::SHORT {
            block[..raw.len()].copy_from_slice(raw);
            block[raw.len()] = 0x80;
            block[56..].copy_from_slice(&((64 + raw.len() as u64) * 8).to_be_bytes());
        } else {
            let start = self.long_bytes.len();
            self.long_bytes.extend_from_slice(raw);
            self.long
                .push((self.blocks.len(), start..self.long_bytes.len()));
        }
        self.blocks.push(block);
    }

    /// Values added since the last [`PseudonymBatch::clear`].
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    /// Whether no value waits.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Forgets every value (keeping the memory).
    pub fn clear(&mut self) {
        self.blocks.clear();
        self.long.clear();
        self.long_bytes.clear();
    }

    /// Writes the pseudonym of every value, in the order added, to `out` (replacing what it
    /// held): the same as [`PseudonymKey::pseudonym`] of each.
    pub fn hash(&self, key: &PseudonymKey, out: &mut Vec<u64>) {
        out.clear();
        out.resize(self.blocks.len(), 0);
        let mut long = self.long.iter().peekable();
        // Short values wait in fours, hashed side by side.
        let mut waiting = [0usize; 4];
        let mut n = 0;
        for i in 0..self.blocks.len() {
            if let Some((_, range)) = long.next_if(|(at, _)| *at == i) {
                out[i] = key.pseudonym(&self.long_bytes[range.clone()]);
                continue;
            }
            waiting[n] = i;
            n += 1;
            if n == waiting.len() {
                let hashed = key.pseudonyms_of_blocks(waiting.map(|j| &self.blocks[j]));
                for (j, p) in waiting.into_iter().zip(hashed) {
                    out[j] = p;
                }
                n = 0;
            }
        }
        for &j in &waiting[..n] {
            let [p] = key.pseudonyms_of_blocks([&self.blocks[j]]);
            out[j] = p;
        }
    }
}

/// The pseudonym of a raw identifier value: the first 8 bytes (big-endian) of
/// HMAC-SHA256(`key`, `raw.trim()`). Computing many with one key is cheaper through
/// [`PseudonymKey`].
pub fn pseudonym(key: &[u8], raw: &str) -> u64 {
    PseudonymKey::new(key).pseudonym(raw.trim().as_bytes())
}

/// Days since 1970-01-01 of a proleptic Gregorian date, or `None` if the date does not exist.
pub fn days_from_civil(year: i32, month: u32, day: u32) -> Option<i32> {
    if !(1..=12).contains(&month) || day == 0 {
        return None;
    }
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if day > month_days[month as usize - 1] {
        return None;
    }
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    i32::try_from(era * 146_097 + doe - 719_468).ok()
}

/// The calendar date (year, month, day) of a day number since 1970-01-01.
pub fn civil_from_days(days: i32) -> (i32, u32, u32) {
    let z = i64::from(days) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y as i32, m, d)
}

/// Parses a decimal such as `-123.45` into its value × 10^`scale`; `None` when it is not a
/// decimal, has more than `scale` fractional digits, or overflows.
pub fn parse_decimal(raw: &str, scale: u32) -> Option<i64> {
    parse_decimal_bytes(raw.as_bytes(), scale)
}

/// [`parse_decimal`] on raw bytes (anything that is not ASCII is refused).
pub fn parse_decimal_bytes(raw: &[u8], scale: u32) -> Option<i64> {
    let (neg, digits) = match raw.first()? {
        b'-' => (true, &raw[1..]),
        b'+' => (false, &raw[1..]),
        _ => (false, raw),
    };
    let (int, frac) = match digits.iter().position(|&b| b == b'.') {
        Some(dot) => (&digits[..dot], &digits[dot + 1..]),
        None => (digits, &[][..]),
    };
    if (int.is_empty() && frac.is_empty()) || frac.len() > scale as usize {
        return None;
    }
    let mut v: i64 = 0;
    for &b in int.iter().chain(frac) {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(i64::from(digit))?;
    }
    v = v.checked_mul(10i64.checked_pow(scale - frac.len() as u32)?)?;
    let v = if neg { -v } else { v };
    (v != NULL_I64).then_some(v)
}

/// Parses a `YYYY-MM-DD` date into days since 1970-01-01.
pub fn parse_date(raw: &str) -> Option<i32> {
    parse_date_bytes(raw.as_bytes())
}

/// [`parse_date`] on raw bytes.
pub fn parse_date_bytes(b: &[u8]) -> Option<i32> {
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |s: &[u8]| -> Option<u32> {
        s.iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    days_from_civil(num(&b[0..4])? as i32, num(&b[5..7])?, num(&b[8..10])?)
}

/// Parses raw text values (as found in a CSV file) into the cells of a column list.
///
/// Values of pseudonymized columns are validated against their declared type and returned as
/// [`Cell::Pseudonym`] of [`pseudonym`]`(key, raw)`.
pub struct CellParser {
    columns: Vec<ColumnSpec>,
    codes: Vec<HashMap<String, u32>>,
    key: PseudonymKey,
}

impl CellParser {
    /// A parser for `columns`, pseudonymizing with `key`.
    pub fn new(columns: &[ColumnSpec], key: &[u8]) -> io::Result<Self> {
        validate_columns(columns)?;
        let codes = columns
            .iter()
            .map(|c| match &c.ty {
                ColumnType::Category { codes } => codes
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (s.clone(), i as u32))
                    .collect(),
                _ => HashMap::new(),
            })
            .collect();
        Ok(CellParser {
            columns: columns.to_vec(),
            codes,
            key: PseudonymKey::new(key),
        })
    }

    /// Parses the raw value of column `col`; an empty (or blank) value is NULL. The error is a
    /// human-readable reason.
    pub fn parse(&self, col: usize, raw: &str) -> Result<Cell, String> {
        let spec = self
            .columns
            .get(col)
            .ok_or_else(|| format!("no column {col}"))?;
        let v = raw.trim();
        if v.is_empty() {
            return if spec.nullable {
                Ok(Cell::Null)
            } else {
                Err(format!("column `{}` must not be empty", spec.name))
            };
        }
        let bad = |what: &str| format!("column `{}`: `{v}` is not {what}", spec.name);
        let cell = match &spec.ty {
            ColumnType::Integer => Cell::Int(
                v.parse::<i64>()
                    .ok()
                    .filter(|x| *x != NULL_I64)
                    .ok_or_else(|| bad("an integer"))?,
            ),
            ColumnType::Decimal { scale } => Cell::Decimal(
                parse_decimal(v, *scale)
                    .ok_or_else(|| bad(&format!("a decimal with at most {scale} decimals")))?,
            ),
            ColumnType::Date => Cell::Date(parse_date(v).ok_or_else(|| bad("a date YYYY-MM-DD"))?),
            ColumnType::Category { .. } => Cell::Category(
                *self.codes[col]
                    .get(v)
                    .ok_or_else(|| bad("one of the declared codes"))?,
            ),
            ColumnType::Text => Cell::Text(v.to_string()),
        };
        if spec.role.is_pseudonymized() {
            Ok(Cell::Pseudonym(self.key.pseudonym(v.as_bytes())))
        } else {
            Ok(cell)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, ty: ColumnType, role: ColumnRole, nullable: bool) -> ColumnSpec {
        ColumnSpec {
            name: name.into(),
            ty,
            role,
            nullable,
        }
    }

    fn columns() -> Vec<ColumnSpec> {
        vec![
            spec(
                "person_id",
                ColumnType::Text,
                ColumnRole::PrivacyUnit,
                false,
            ),
            spec("name", ColumnType::Text, ColumnRole::Identifier, true),
            spec(
                "age",
                ColumnType::Integer,
                ColumnRole::QuasiIdentifier,
                true,
            ),
            spec(
                "cost",
                ColumnType::Decimal { scale: 2 },
                ColumnRole::Sensitive,
                true,
            ),
            spec("day", ColumnType::Date, ColumnRole::Plain, true),
            spec(
                "sex",
                ColumnType::Category {
                    codes: vec!["M".into(), "F".into()],
                },
                ColumnRole::Plain,
                true,
            ),
            spec("note", ColumnType::Text, ColumnRole::Plain, true),
        ]
    }

    fn tmp(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("dataop-columnar-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn large_versions_are_written_back_while_written_and_read_back_whole() {
        let dir = tmp("writeback");
        let cols = vec![spec("n", ColumnType::Integer, ColumnRole::Plain, false)];
        let mut w = VersionWriter::create(&dir, cols).unwrap();
        // 48 MiB in 1 MiB chunks: several background writebacks, some skipped while busy.
        let rows_per_chunk = (1 << 20) / 8;
        let chunks = 48;
        for c in 0..chunks {
            let mut chunk = ColumnChunk::default();
            for r in 0..rows_per_chunk {
                chunk
                    .data
                    .extend(((c * rows_per_chunk + r) as i64).to_le_bytes());
            }
            w.push_columns(rows_per_chunk, std::slice::from_ref(&chunk))
                .unwrap();
        }
        assert!(w.writeback.is_some(), "the background writeback started");
        w.finish().unwrap();
        let r = VersionReader::open(&dir).unwrap();
        let total = (chunks * rows_per_chunk) as u64;
        assert_eq!(r.rows(), total);
        let mut all = vec![0u8; total as usize * 8];
        r.read_raw_bytes(0, 0, &mut all).unwrap();
        for (i, v) in all.chunks_exact(8).enumerate() {
            assert_eq!(i64::from_le_bytes(v.try_into().unwrap()), i as i64);
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn round_trip_with_nulls_and_text_offsets() {
        let dir = tmp("rt");
        let mut w = VersionWriter::create(&dir, columns()).unwrap();
        let rows = vec![
            vec![
                Cell::Pseudonym(7),
                Cell::Pseudonym(9),
                Cell::Int(70),
                Cell::Decimal(12345),
                Cell::Date(19000),
                Cell::Category(1),
                Cell::Text("héllo".into()),
            ],
            vec![
                Cell::Pseudonym(8),
                Cell::Null,
                Cell::Null,
                Cell::Null,
                Cell::Null,
                Cell::Null,
                Cell::Null,
            ],
            vec![
                Cell::Pseudonym(7),
                Cell::Pseudonym(1),
                Cell::Int(-3),
                Cell::Decimal(-1),
                Cell::Date(-5),
                Cell::Category(0),
                Cell::Text("x".into()),
            ],
        ];
        for r in &rows {
            w.push_row(r).unwrap();
        }
        assert_eq!(w.rows(), 3);
        let meta = w.finish().unwrap();
        assert_eq!(meta.rows, 3);
        assert_eq!(meta.format, FORMAT);
        let r = VersionReader::open(&dir).unwrap();
        assert_eq!(r.meta(), &meta);
        for (i, row) in rows.iter().enumerate() {
            for (c, cell) in row.iter().enumerate() {
                assert_eq!(&r.cell(c, i as u64).unwrap(), cell, "row {i} col {c}");
            }
        }
        let mut ages = [0i64; 3];
        r.read_i64(2, 0, &mut ages).unwrap();
        assert_eq!(ages, [70, NULL_I64, -3]);
        let mut sex = [0u32; 3];
        r.read_u32(5, 0, &mut sex).unwrap();
        assert_eq!(sex, [1, NULL_CATEGORY, 0]);
        let mut days = [0i32; 3];
        r.read_i32(4, 0, &mut days).unwrap();
        assert_eq!(days, [19000, NULL_DATE, -5]);
        let mut names = [0u64; 3];
        r.read_u64(1, 0, &mut names).unwrap();
        assert_eq!(names, [9, NULL_PSEUDONYM, 1]);
        assert_eq!(r.read_text(6, 0, 3).unwrap(), vec!["héllo", "", "x"]);
        assert_eq!(r.read_text(6, 1, 2).unwrap(), vec!["", "x"]);
        let off = fs::read(dir.join("c6.off")).unwrap();
        let offs: Vec<u64> = off
            .chunks(8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(offs, vec![0, 6, 6, 7]);
        assert_eq!(fs::read(dir.join("c6.bin")).unwrap(), "héllox".as_bytes());
        assert!(
            !dir.join("c0.off").exists(),
            "pseudonymized text is fixed width"
        );
        assert!(
            r.read_i64(2, 2, &mut ages).is_err(),
            "range beyond the rows"
        );
        assert!(r.read_i32(2, 0, &mut days).is_err(), "wrong storage");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn arity_and_kind_errors_write_nothing() {
        let dir = tmp("kinds");
        let mut w = VersionWriter::create(&dir, columns()).unwrap();
        let good = vec![
            Cell::Pseudonym(1),
            Cell::Null,
            Cell::Int(1),
            Cell::Decimal(1),
            Cell::Date(1),
            Cell::Category(0),
            Cell::Text(String::new()),
        ];
        let err = w.push_row(&good[..6]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let cases: Vec<(usize, Cell)> = vec![
            (0, Cell::Text("raw id".into())),
            (0, Cell::Null),
            (2, Cell::Decimal(1)),
            (2, Cell::Int(NULL_I64)),
            (3, Cell::Date(1)),
            (4, Cell::Int(1)),
            (4, Cell::Date(NULL_DATE)),
            (5, Cell::Category(2)),
            (6, Cell::Int(1)),
            (1, Cell::Pseudonym(NULL_PSEUDONYM)),
        ];
        for (col, cell) in cases {
            let mut row = good.clone();
            row[col] = cell.clone();
            let err = w.push_row(&row).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{col} {cell:?}");
        }
        w.push_row(&good).unwrap();
        assert_eq!(w.rows(), 1);
        let meta = w.finish().unwrap();
        assert_eq!(meta.rows, 1);
        let r = VersionReader::open(&dir).unwrap();
        assert_eq!(r.cell(2, 0).unwrap(), Cell::Int(1));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn pushed_columns_store_the_same_bytes_as_pushed_rows() {
        let rows = vec![
            vec![
                Cell::Pseudonym(7),
                Cell::Pseudonym(9),
                Cell::Int(70),
                Cell::Decimal(12345),
                Cell::Date(19000),
                Cell::Category(1),
                Cell::Text("héllo".into()),
            ],
            vec![
                Cell::Pseudonym(8),
                Cell::Null,
                Cell::Null,
                Cell::Null,
                Cell::Null,
                Cell::Null,
                Cell::Null,
            ],
            vec![
                Cell::Pseudonym(7),
                Cell::Pseudonym(1),
                Cell::Int(-3),
                Cell::Decimal(-1),
                Cell::Date(-5),
                Cell::Category(0),
                Cell::Text("x".into()),
            ],
        ];
        let by_rows = tmp("by-rows");
        let mut w = VersionWriter::create(&by_rows, columns()).unwrap();
        for r in &rows {
            w.push_row(r).unwrap();
        }
        w.finish().unwrap();

        let mut chunks = vec![ColumnChunk::default(); 7];
        for r in &rows {
            for (chunk, cell) in chunks.iter_mut().zip(r) {
                match cell {
                    Cell::Int(v) | Cell::Decimal(v) => chunk.data.extend(v.to_le_bytes()),
                    Cell::Date(v) => chunk.data.extend(v.to_le_bytes()),
                    Cell::Category(v) => chunk.data.extend(v.to_le_bytes()),
                    Cell::Pseudonym(v) => chunk.data.extend(v.to_le_bytes()),
                    Cell::Text(t) => {
                        chunk.data.extend(t.as_bytes());
                        chunk.ends.push(chunk.data.len());
                    }
                    Cell::Null => {}
                }
            }
        }
        // Row 2 is all NULL: its sentinels.
        let mut nulls: Vec<ColumnChunk> = vec![ColumnChunk::default(); 7];
        nulls[0].data.extend(8u64.to_le_bytes());
        nulls[1].data.extend(NULL_PSEUDONYM.to_le_bytes());
        nulls[2].data.extend(NULL_I64.to_le_bytes());
        nulls[3].data.extend(NULL_I64.to_le_bytes());
        nulls[4].data.extend(NULL_DATE.to_le_bytes());
        nulls[5].data.extend(NULL_CATEGORY.to_le_bytes());
        nulls[6].ends.push(0);
        let mut first = vec![ColumnChunk::default(); 7];
        let mut last = vec![ColumnChunk::default(); 7];
        for (i, c) in chunks.iter().enumerate() {
            let w = columns()[i].storage().width();
            if w == 0 {
                first[i].data.extend(&c.data[..c.ends[0]]);
                first[i].ends.push(c.ends[0]);
                last[i].data.extend(&c.data[c.ends[0]..]);
                last[i].ends.push(c.data.len() - c.ends[0]);
            } else {
                first[i].data.extend(&c.data[..w]);
                last[i].data.extend(&c.data[c.data.len() - w..]);
            }
        }
        let by_columns = tmp("by-columns");
        let mut w = VersionWriter::create(&by_columns, columns()).unwrap();
        w.push_columns(1, &first).unwrap();
        w.push_columns(1, &nulls).unwrap();
        w.push_columns(1, &last).unwrap();
        w.push_columns(0, &vec![ColumnChunk::default(); 7]).unwrap();
        assert_eq!(w.rows(), 3);
        w.finish().unwrap();
        for name in [
            "c0.bin", "c1.bin", "c2.bin", "c3.bin", "c4.bin", "c5.bin", "c6.bin", "c6.off",
        ] {
            assert_eq!(
                fs::read(by_rows.join(name)).unwrap(),
                fs::read(by_columns.join(name)).unwrap(),
                "{name}"
            );
        }
        fs::remove_dir_all(&by_rows).unwrap();
        fs::remove_dir_all(&by_columns).unwrap();
    }

    #[test]
    fn pushed_columns_that_do_not_fit_write_nothing() {
        let dir = tmp("bad-chunks");
        let mut cols = columns();
        cols[1].nullable = false;
        let mut w = VersionWriter::create(&dir, cols).unwrap();
        let good = || {
            let mut c = vec![ColumnChunk::default(); 7];
            c[0].data.extend(1u64.to_le_bytes());
            c[1].data.extend(2u64.to_le_bytes());
            c[2].data.extend(3i64.to_le_bytes());
            c[3].data.extend(4i64.to_le_bytes());
            c[4].data.extend(5i32.to_le_bytes());
            c[5].data.extend(1u32.to_le_bytes());
            c[6].data.extend(b"ab");
            c[6].ends.push(2);
            c
        };
        assert!(w.push_columns(1, &good()[..6]).is_err(), "too few columns");
        assert!(w.push_columns(2, &good()).is_err(), "too few values");
        let mut bad: Vec<Vec<ColumnChunk>> = Vec::new();
        let mut c = good();
        c[1].data = NULL_PSEUDONYM.to_le_bytes().to_vec();
        bad.push(c);
        let mut c = good();
        c[5].data = 2u32.to_le_bytes().to_vec();
        bad.push(c);
        let mut c = good();
        c[2].data.push(0);
        bad.push(c);
        let mut c = good();
        c[6].ends = vec![3];
        bad.push(c);
        let mut c = good();
        c[6].data = "é".as_bytes().to_vec();
        c[6].ends = vec![1];
        bad.push(c);
        let mut c = good();
        c[6].ends = vec![9, 2];
        bad.push(c);
        for (i, c) in bad.iter().enumerate() {
            let err = w.push_columns(1, c).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "case {i}");
        }
        // NULL is fine where the column is nullable.
        let mut c = good();
        c[5].data = NULL_CATEGORY.to_le_bytes().to_vec();
        c[2].data = NULL_I64.to_le_bytes().to_vec();
        w.push_columns(1, &c).unwrap();
        assert_eq!(w.rows(), 1);
        w.finish().unwrap();
        let r = VersionReader::open(&dir).unwrap();
        assert_eq!(r.cell(5, 0).unwrap(), Cell::Null);
        assert_eq!(r.cell(6, 0).unwrap(), Cell::Text("ab".into()));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn create_refuses_bad_specs_and_existing_dirs() {
        let dir = tmp("specs");
        let dup = vec![
            spec("a", ColumnType::Integer, ColumnRole::Plain, false),
            spec("a", ColumnType::Date, ColumnRole::Plain, false),
        ];
        assert!(VersionWriter::create(&dir, dup).is_err());
        let scale = vec![spec(
            "a",
            ColumnType::Decimal { scale: 7 },
            ColumnRole::Plain,
            false,
        )];
        assert!(VersionWriter::create(&dir, scale).is_err());
        let codes = vec![spec(
            "a",
            ColumnType::Category {
                codes: vec!["x".into(), "x".into()],
            },
            ColumnRole::Plain,
            false,
        )];
        assert!(VersionWriter::create(&dir, codes).is_err());
        assert!(!dir.exists());
        let w = VersionWriter::create(&dir, columns()).unwrap();
        assert!(
            VersionWriter::create(&dir, columns()).is_err(),
            "dir exists"
        );
        w.abort().unwrap();
        assert!(!dir.exists());
    }

    #[test]
    fn unfinished_or_truncated_versions_do_not_open() {
        let dir = tmp("trunc");
        let mut w = VersionWriter::create(&dir, columns()).unwrap();
        let row = vec![
            Cell::Pseudonym(1),
            Cell::Null,
            Cell::Int(1),
            Cell::Decimal(1),
            Cell::Date(1),
            Cell::Category(0),
            Cell::Text("abc".into()),
        ];
        w.push_row(&row).unwrap();
        w.push_row(&row).unwrap();
        assert!(
            VersionReader::open(&dir).is_err(),
            "no meta.json before finish"
        );
        w.finish().unwrap();
        VersionReader::open(&dir).unwrap();
        let f = fs::OpenOptions::new()
            .write(true)
            .open(dir.join("c2.bin"))
            .unwrap();
        f.set_len(8).unwrap();
        let err = VersionReader::open(&dir).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn serde_shape_of_specs() {
        let c = spec(
            "cost",
            ColumnType::Decimal { scale: 2 },
            ColumnRole::PrivacyUnit,
            false,
        );
        let j = serde_json::to_string(&c).unwrap();
        assert_eq!(
            j,
            r#"{"name":"cost","ty":{"type":"decimal","scale":2},"role":"privacy_unit","nullable":false}"#
        );
        assert_eq!(serde_json::from_str::<ColumnSpec>(&j).unwrap(), c);
    }

    #[test]
    fn parsing_of_raw_values() {
        assert_eq!(parse_decimal("123.45", 2), Some(12345));
        assert_eq!(parse_decimal("-1.5", 2), Some(-150));
        assert_eq!(parse_decimal("7", 2), Some(700));
        assert_eq!(parse_decimal(".5", 1), Some(5));
        assert_eq!(parse_decimal("1.234", 2), None);
        assert_eq!(parse_decimal("1e3", 2), None);
        assert_eq!(parse_decimal("", 2), None);
        assert_eq!(parse_decimal("-", 2), None);
        assert_eq!(parse_decimal("99999999999999999999", 0), None);
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("2024-02-29"), Some(19782));
        assert_eq!(parse_date("2023-02-29"), None);
        assert_eq!(parse_date("1969-12-31"), Some(-1));
        assert_eq!(parse_date("2024-1-01"), None);
        assert_eq!(parse_decimal("+2.5", 1), Some(25));
        assert_eq!(parse_decimal("1.2.3", 3), None);
        assert_eq!(parse_decimal("1.", 2), Some(100));
        assert_eq!(parse_decimal(".", 2), None);
        assert_eq!(parse_decimal("-92233720368547758.08", 2), None);
        assert_eq!(parse_decimal("92233720368547758.07", 2), Some(i64::MAX));
        assert_eq!(parse_decimal("9223372036854775.808", 3), None);
        assert_eq!(parse_decimal_bytes(b"12.3\xff", 2), None);
        assert_eq!(parse_decimal_bytes(b"12.30", 2), Some(1230));
        assert_eq!(parse_date_bytes(b"2025-12-31"), Some(20453));
        assert_eq!(parse_date_bytes(b"2025-12-3\xff"), None);
        for d in [-800_000, -1, 0, 1, 19782, 2_000_000] {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), Some(d));
        }
        let cols = columns();
        let p = CellParser::new(&cols, b"key").unwrap();
        assert_eq!(
            p.parse(0, " 110101 "),
            Ok(Cell::Pseudonym(pseudonym(b"key", "110101")))
        );
        assert!(p.parse(0, "").is_err());
        assert_eq!(p.parse(2, ""), Ok(Cell::Null));
        assert_eq!(p.parse(3, "10.5"), Ok(Cell::Decimal(1050)));
        assert_eq!(p.parse(5, "F"), Ok(Cell::Category(1)));
        assert!(p.parse(5, "X").is_err());
        assert!(p.parse(2, "abc").is_err());
    }

    #[test]
    fn pseudonym_is_hmac_sha256() {
        // RFC 4231 test case 2: HMAC-SHA256("Jefe", "what do ya want for nothing?").
        assert_eq!(
            pseudonym(b"Jefe", "what do ya want for nothing?"),
            0x5bdcc146bf60754e
        );
        assert_eq!(pseudonym(b"k", " a "), pseudonym(b"k", "a"));
        assert_ne!(pseudonym(b"k", "a"), pseudonym(b"l", "a"));
        // First 8 bytes of HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog").
        let k = PseudonymKey::new(b"key");
        assert_eq!(
            k.pseudonym(b"The quick brown fox jumps over the lazy dog"),
            0xf7bc83f430538424
        );
        assert_eq!(k.pseudonym(b"x"), k.pseudonym(b"x"));
        assert_ne!(k.pseudonym(b"x"), PseudonymKey::new(b"k2").pseudonym(b"x"));
        // RFC 4231 test case 6: a key longer than the block is hashed first.
        let long = PseudonymKey::new(&[0xaa; 131]);
        assert_eq!(
            long.pseudonym(b"Test Using Larger Than Block-Size Key - Hash Key First"),
            0x60e431591ee0b67f
        );
        for v in ["11010519491231002X", "张三", "x"] {
            assert_eq!(k.pseudonym(v.as_bytes()), pseudonym(b"key", v));
        }
        // Every padding case (tail of 0, 55, 56 and 63 bytes, several blocks) against the
        // HMAC of the `hmac` crate.
        use hmac::Mac as _;
        for len in [0, 1, 55, 56, 63, 64, 65, 119, 120, 128, 200] {
            let v = vec![b'v'; len];
            let mut mac = hmac::Hmac::<Sha256>::new_from_slice(b"key").expect("any key length");
            mac.update(&v);
            let full = mac.finalize().into_bytes();
            let want = u64::from_be_bytes(full[..8].try_into().expect("8 bytes"));
            assert_eq!(k.pseudonym(&v), want, "{len} bytes");
        }
    }

    #[test]
    fn batched_pseudonyms_equal_single_pseudonyms() {
        // Every length on both sides of the one-block limit, next to every other, with distinct
        // bytes so that a swapped or mixed lane shows; odd and even counts; with the SHA
        // extensions (where this CPU has them) and without.
        let fast = PseudonymKey::new(b"batch key");
        let plain = PseudonymKey {
            sha_ni: false,
            ..fast.clone()
        };
        let values: Vec<Vec<u8>> = (0..=70u8)
            .map(|len| (0..len).map(|i| i.wrapping_mul(31) ^ len).collect())
            .collect();
        let mut batch = PseudonymBatch::default();
        let mut got = Vec::new();
        for (k, a) in [&fast, &plain]
            .into_iter()
            .flat_map(|k| values.iter().map(move |a| (k, a)))
        {
            batch.clear();
            for b in &values {
                batch.push(a);
                batch.push(b);
            }
            batch.push(a);
            batch.hash(k, &mut got);
            let want: Vec<u64> = values
                .iter()
                .flat_map(|b| [k.pseudonym(a), k.pseudonym(b)])
                .chain([k.pseudonym(a)])
                .collect();
            assert_eq!(got, want, "{} bytes", a.len());
        }
        batch.clear();
        assert!(batch.is_empty());
        batch.push(b"The quick brown fox jumps over the lazy dog");
        batch.hash(&PseudonymKey::new(b"key"), &mut got);
        assert_eq!(got, [0xf7bc83f430538424]);
    }
}
