//! Where the rows of a job come from: a small reader trait implemented by the columnar
//! [`VersionReader`] and by in-memory tables (tests, benchmarks, CSV files).

use std::io;
use std::sync::Arc;

use crate::columnar::{
    Cell, CellParser, ColumnSpec, NULL_CATEGORY, NULL_DATE, NULL_I64, NULL_PSEUDONYM, Storage,
    VersionReader,
};

/// A table of typed columns the sandbox can read in row ranges.
pub trait TableSource: Send + Sync {
    /// The columns of the table, in index order.
    fn columns(&self) -> &[ColumnSpec];
    /// Number of rows.
    fn rows(&self) -> u64;
    /// Writes the stored little-endian values of rows `start..start + n` of fixed-width column
    /// `col` into `dst`, whose length is `n` times the width of the column's [`Storage`].
    fn read_raw(&self, col: usize, start: u64, n: usize, dst: &mut [u8]) -> io::Result<()>;

    /// Reads rows `start..start + out.len()` of a pseudonymized column (`u64`) into `out`.
    /// The default goes through [`TableSource::read_raw`]; sources holding `u64`s override it.
    fn read_pseudonyms(&self, col: usize, start: u64, out: &mut [u64]) -> io::Result<()> {
        let mut raw = vec![0u8; out.len() * 8];
        self.read_raw(col, start, out.len(), &mut raw)?;
        for (o, b) in out.iter_mut().zip(raw.chunks_exact(8)) {
            *o = u64::from_le_bytes(b.try_into().expect("8 bytes"));
        }
        Ok(())
    }

    /// Every value of a pseudonymized column, when the source holds them in memory (the host
    /// then reads the privacy unit of emitted rows in place instead of copying every batch).
    fn pseudonyms(&self, _col: usize) -> Option<&[u64]> {
        None
    }
}

fn check_range(
    spec: Option<&ColumnSpec>,
    rows: u64,
    start: u64,
    n: usize,
    dst: usize,
) -> io::Result<Storage> {
    let spec = spec.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no such column"))?;
    let storage = spec.storage();
    let ok = storage != Storage::Text
        && start.checked_add(n as u64).is_some_and(|end| end <= rows)
        && n.checked_mul(storage.width()) == Some(dst);
    if ok {
        Ok(storage)
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad read of column `{}`", spec.name),
        ))
    }
}

impl TableSource for VersionReader {
    fn columns(&self) -> &[ColumnSpec] {
        &self.meta().columns
    }

    fn rows(&self) -> u64 {
        self.meta().rows
    }

    fn read_raw(&self, col: usize, start: u64, n: usize, dst: &mut [u8]) -> io::Result<()> {
        check_range(
            self.meta().columns.get(col),
            self.meta().rows,
            start,
            n,
            dst.len(),
        )?;
        self.read_raw_bytes(col, start, dst)
    }
}

/// The values of one in-memory column.
#[derive(Debug, Clone, PartialEq)]
pub enum MemColumn {
    /// Integer or decimal values (NULL is `i64::MIN`).
    I64(Vec<i64>),
    /// Dates in days since 1970-01-01 (NULL is `i32::MIN`).
    I32(Vec<i32>),
    /// Category codes (NULL is `u32::MAX`).
    U32(Vec<u32>),
    /// Pseudonyms (NULL is `u64::MAX`).
    U64(Vec<u64>),
    /// Text.
    Text(Vec<String>),
}

impl MemColumn {
    fn len(&self) -> usize {
        match self {
            MemColumn::I64(v) => v.len(),
            MemColumn::I32(v) => v.len(),
            MemColumn::U32(v) => v.len(),
            MemColumn::U64(v) => v.len(),
            MemColumn::Text(v) => v.len(),
        }
    }

    fn storage(&self) -> Storage {
        match self {
            MemColumn::I64(_) => Storage::I64,
            MemColumn::I32(_) => Storage::I32,
            MemColumn::U32(_) => Storage::U32,
            MemColumn::U64(_) => Storage::U64,
            MemColumn::Text(_) => Storage::Text,
        }
    }
}

/// An in-memory table: column specs and their values.
#[derive(Debug, Clone)]
pub struct MemTable {
    columns: Vec<ColumnSpec>,
    data: Vec<MemColumn>,
    rows: u64,
}

impl MemTable {
    /// A table from specs and values; `InvalidInput` unless every column has the storage its
    /// spec implies and all columns have the same length.
    pub fn new(columns: Vec<ColumnSpec>, data: Vec<MemColumn>) -> io::Result<Self> {
        crate::columnar::validate_columns(&columns)?;
        let bad = |m: String| io::Error::new(io::ErrorKind::InvalidInput, m);
        if columns.len() != data.len() {
            return Err(bad("one value vector per column is needed".into()));
        }
        let rows = data.first().map_or(0, MemColumn::len);
        for (spec, col) in columns.iter().zip(&data) {
            if spec.storage() != col.storage() || col.len() != rows {
                return Err(bad(format!(
                    "column `{}` has the wrong storage or length",
                    spec.name
                )));
            }
        }
        Ok(MemTable {
            columns,
            data,
            rows: rows as u64,
        })
    }

    /// Reads a CSV file with a header row naming every column of `columns` (in any order),
    /// parsing and pseudonymizing the values like the server's ingest does (with `key`).
    pub fn from_csv(
        reader: impl io::Read,
        columns: Vec<ColumnSpec>,
        key: &[u8],
    ) -> io::Result<Self> {
        let parser = CellParser::new(&columns, key)?;
        let mut csv = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(reader);
        let headers = csv.headers().map_err(io::Error::other)?.clone();
        let bad = |m: String| io::Error::new(io::ErrorKind::InvalidData, m);
        let mut positions = Vec::with_capacity(columns.len());
        for c in &columns {
            let p = headers
                .iter()
                .position(|h| h.trim() == c.name)
                .ok_or_else(|| bad(format!("the CSV file has no column `{}`", c.name)))?;
            positions.push(p);
        }
        let mut data: Vec<MemColumn> = columns
            .iter()
            .map(|c| match c.storage() {
                Storage::I64 => MemColumn::I64(Vec::new()),
                Storage::I32 => MemColumn::I32(Vec::new()),
                Storage::U32 => MemColumn::U32(Vec::new()),
                Storage::U64 => MemColumn::U64(Vec::new()),
                Storage::Text => MemColumn::Text(Vec::new()),
            })
            .collect();
        for (line, record) in csv.records().enumerate() {
            let record = record.map_err(io::Error::other)?;
            for (i, &p) in positions.iter().enumerate() {
                let raw = record.get(p).unwrap_or("");
                let cell = parser
                    .parse(i, raw)
                    .map_err(|e| bad(format!("line {}: {e}", line + 2)))?;
                match (&mut data[i], cell) {
                    (MemColumn::I64(v), Cell::Int(x) | Cell::Decimal(x)) => v.push(x),
                    (MemColumn::I64(v), Cell::Null) => v.push(NULL_I64),
                    (MemColumn::I32(v), Cell::Date(x)) => v.push(x),
                    (MemColumn::I32(v), Cell::Null) => v.push(NULL_DATE),
                    (MemColumn::U32(v), Cell::Category(x)) => v.push(x),
                    (MemColumn::U32(v), Cell::Null) => v.push(NULL_CATEGORY),
                    (MemColumn::U64(v), Cell::Pseudonym(x)) => v.push(x),
                    (MemColumn::U64(v), Cell::Null) => v.push(NULL_PSEUDONYM),
                    (MemColumn::Text(v), Cell::Text(x)) => v.push(x),
                    (MemColumn::Text(v), Cell::Null) => v.push(String::new()),
                    _ => return Err(bad(format!("line {}: unexpected value", line + 2))),
                }
            }
        }
        MemTable::new(columns, data)
    }

    /// The values of column `col`.
    pub fn column(&self, col: usize) -> Option<&MemColumn> {
        self.data.get(col)
    }
}

fn copy_le<const W: usize, T: Copy>(src: &[T], dst: &mut [u8], to: impl Fn(T) -> [u8; W]) {
    for (d, s) in dst.chunks_exact_mut(W).zip(src) {
        d.copy_from_slice(&to(*s));
    }
}

impl TableSource for MemTable {
    fn columns(&self) -> &[ColumnSpec] {
        &self.columns
    }

    fn rows(&self) -> u64 {
        self.rows
    }

    fn read_raw(&self, col: usize, start: u64, n: usize, dst: &mut [u8]) -> io::Result<()> {
        check_range(self.columns.get(col), self.rows, start, n, dst.len())?;
        let s = start as usize;
        match &self.data[col] {
            MemColumn::I64(v) => copy_le(&v[s..s + n], dst, i64::to_le_bytes),
            MemColumn::I32(v) => copy_le(&v[s..s + n], dst, i32::to_le_bytes),
            MemColumn::U32(v) => copy_le(&v[s..s + n], dst, u32::to_le_bytes),
            MemColumn::U64(v) => copy_le(&v[s..s + n], dst, u64::to_le_bytes),
            MemColumn::Text(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "text is not fixed width",
                ));
            }
        }
        Ok(())
    }

    fn read_pseudonyms(&self, col: usize, start: u64, out: &mut [u64]) -> io::Result<()> {
        check_range(
            self.columns.get(col),
            self.rows,
            start,
            out.len(),
            out.len() * 8,
        )?;
        match &self.data[col] {
            MemColumn::U64(v) => {
                let s = start as usize;
                out.copy_from_slice(&v[s..s + out.len()]);
                Ok(())
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a pseudonym column",
            )),
        }
    }

    fn pseudonyms(&self, col: usize) -> Option<&[u64]> {
        match self.data.get(col)? {
            MemColumn::U64(v) => Some(v),
            _ => None,
        }
    }
}

/// A dataset handed to a run: the name the manifest uses, the rows, and the columns the
/// agreement allows the job to read.
#[derive(Clone)]
pub struct DatasetInput {
    /// The dataset's name in the manifest.
    pub name: String,
    /// The rows.
    pub source: Arc<dyn TableSource>,
    /// Names of the columns the caller allows this job to read (the manifest may declare only
    /// these; identifier and privacy-unit columns are refused even when listed).
    pub allowed_columns: Vec<String>,
    /// The dataset's sensitivity grade, 1 (lowest) to 4: its release policy applies
    /// ([`crate::manifest::Limits::grades`]).
    pub grade: u8,
}

impl std::fmt::Debug for DatasetInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatasetInput")
            .field("name", &self.name)
            .field("rows", &self.source.rows())
            .field("allowed_columns", &self.allowed_columns)
            .field("grade", &self.grade)
            .finish()
    }
}
