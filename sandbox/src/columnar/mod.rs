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
//!
//! Files: this one the format's types; `writer`, `reader`, `pseudonym` (the keyed pseudonyms),
//! `values` (dates, decimals, the cell parser).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

mod pseudonym;
mod reader;
#[cfg(target_arch = "x86_64")]
mod shani;
mod values;
mod writer;

pub use pseudonym::*;
pub use reader::*;
pub use values::*;
pub use writer::*;

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
