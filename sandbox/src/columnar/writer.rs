//! Writing a version: [`VersionWriter`] streams rows into buffered per-column files and writes
//! `meta.json` last.

use super::*;

pub(super) fn bin_path(dir: &Path, index: usize) -> PathBuf {
    dir.join(format!("c{index}.bin"))
}

pub(super) fn off_path(dir: &Path, index: usize) -> PathBuf {
    dir.join(format!("c{index}.off"))
}

/// The open files of one column being written.
pub(super) struct ColumnSink {
    pub(super) storage: Storage,
    pub(super) nullable: bool,
    /// Number of codes for category columns (a code must be below it).
    pub(super) codes: u32,
    /// Whether an `I64` column is a decimal (takes [`Cell::Decimal`], not [`Cell::Int`]).
    pub(super) decimal: bool,
    pub(super) bin: BufWriter<File>,
    /// Offsets file and running offset, for text columns.
    pub(super) off: Option<(BufWriter<File>, u64)>,
}

/// Streams the rows of a new version into per-column files.
pub struct VersionWriter {
    pub(super) dir: PathBuf,
    pub(super) columns: Vec<ColumnSpec>,
    pub(super) sinks: Vec<ColumnSink>,
    pub(super) rows: u64,
    /// Bytes appended since the last background writeback.
    pub(super) unsynced: u64,
    /// The background writeback thread, started at the first [`WRITEBACK_EVERY`] bytes.
    pub(super) writeback: Option<Writeback>,
}

/// A thread that `fdatasync`s the column files while the rest is still being written, so the
/// final fsync of [`VersionWriter::finish`] waits only for the tail.
pub(super) struct Writeback {
    pub(super) files: std::sync::mpsc::SyncSender<Vec<File>>,
    /// Whether the thread is still syncing the last batch (then no new batch is prepared).
    pub(super) busy: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pub(super) thread: std::thread::JoinHandle<io::Result<()>>,
}

impl Writeback {
    pub(super) fn start() -> io::Result<Self> {
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
    pub(super) fn join(self) -> io::Result<()> {
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
    pub(super) fn start_writeback(&mut self) -> io::Result<()> {
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
pub(super) fn chunk_fits(sink: &ColumnSink, rows: usize, chunk: &ColumnChunk) -> bool {
    pub(super) fn all<const W: usize>(data: &[u8], ok: impl Fn([u8; W]) -> bool) -> bool {
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

pub(super) fn cell_kind(cell: &Cell) -> &'static str {
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
pub(super) fn cell_fits(sink: &ColumnSink, cell: &Cell) -> bool {
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
pub(super) fn write_cell(sink: &mut ColumnSink, cell: &Cell) -> io::Result<()> {
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
