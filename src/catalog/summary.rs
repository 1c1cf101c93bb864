//! Value summaries of a version, computed on the host from its stored columns when it is
//! uploaded and shown on its preview page (provider's organisation and platform staff only):
//! per column the NULL count, min and max of numbers and dates, and the most frequent category
//! codes with their counts. Pseudonymized and text columns get their NULL count only: no value
//! of theirs is ever shown.

use std::io;
use std::path::Path;

use dataop_sandbox::columnar::{
    self, ColumnType, NULL_CATEGORY, NULL_DATE, NULL_I64, NULL_PSEUDONYM, Storage, VersionReader,
};
use serde::{Deserialize, Serialize};

/// Rows read at a time.
const CHUNK: usize = 64 * 1024;
/// Category codes listed per column.
pub const TOP_CODES: usize = 5;

/// The summary of one column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnSummary {
    /// The column's name.
    pub name: String,
    /// NULL values.
    pub nulls: u64,
    /// Smallest value (numbers and dates), as written in a CSV.
    pub min: Option<String>,
    /// Largest value (numbers and dates), as written in a CSV.
    pub max: Option<String>,
    /// The most frequent category codes with their counts, most frequent first.
    pub top: Vec<(String, u64)>,
}

/// Summarizes every column of the version in `dir`.
pub fn of_version(dir: &Path) -> io::Result<Vec<ColumnSummary>> {
    let reader = VersionReader::open(dir)?;
    let rows = reader.rows();
    (0..reader.meta().columns.len())
        .map(|col| column(&reader, col, rows))
        .collect()
}

fn column(reader: &VersionReader, col: usize, rows: u64) -> io::Result<ColumnSummary> {
    let spec = &reader.meta().columns[col];
    let mut s = ColumnSummary {
        name: spec.name.clone(),
        nulls: 0,
        min: None,
        max: None,
        top: Vec::new(),
    };
    let chunks = (0..rows)
        .step_by(CHUNK)
        .map(|start| (start, (rows - start).min(CHUNK as u64) as usize));
    match (spec.storage(), &spec.ty) {
        (Storage::I64, ty) => {
            let mut buf = vec![0i64; CHUNK];
            let (mut lo, mut hi) = (i64::MAX, i64::MIN);
            for (start, n) in chunks {
                reader.read_i64(col, start, &mut buf[..n])?;
                for &v in &buf[..n] {
                    if v == NULL_I64 {
                        s.nulls += 1;
                    } else {
                        lo = lo.min(v);
                        hi = hi.max(v);
                    }
                }
            }
            if s.nulls < rows {
                let scale = match ty {
                    ColumnType::Decimal { scale } => *scale,
                    _ => 0,
                };
                s.min = Some(decimal(lo, scale));
                s.max = Some(decimal(hi, scale));
            }
        }
        (Storage::I32, _) => {
            let mut buf = vec![0i32; CHUNK];
            let (mut lo, mut hi) = (i32::MAX, i32::MIN);
            for (start, n) in chunks {
                reader.read_i32(col, start, &mut buf[..n])?;
                for &v in &buf[..n] {
                    if v == NULL_DATE {
                        s.nulls += 1;
                    } else {
                        lo = lo.min(v);
                        hi = hi.max(v);
                    }
                }
            }
            if s.nulls < rows {
                s.min = Some(date(lo));
                s.max = Some(date(hi));
            }
        }
        (Storage::U32, ColumnType::Category { codes }) => {
            let mut buf = vec![0u32; CHUNK];
            let mut counts = vec![0u64; codes.len()];
            for (start, n) in chunks {
                reader.read_u32(col, start, &mut buf[..n])?;
                for &v in &buf[..n] {
                    match counts.get_mut(v as usize) {
                        Some(c) if v != NULL_CATEGORY => *c += 1,
                        _ => s.nulls += 1,
                    }
                }
            }
            let mut ranked: Vec<(String, u64)> = codes
                .iter()
                .cloned()
                .zip(counts)
                .filter(|(_, n)| *n > 0)
                .collect();
            ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            ranked.truncate(TOP_CODES);
            s.top = ranked;
        }
        (Storage::U64, _) => {
            let mut buf = vec![0u64; CHUNK];
            for (start, n) in chunks {
                reader.read_u64(col, start, &mut buf[..n])?;
                s.nulls += buf[..n].iter().filter(|v| **v == NULL_PSEUDONYM).count() as u64;
            }
        }
        (Storage::Text, _) if spec.nullable => {
            for (start, n) in chunks {
                let texts = reader.read_text(col, start, n)?;
                s.nulls += texts.iter().filter(|t| t.is_empty()).count() as u64;
            }
        }
        _ => {}
    }
    Ok(s)
}

/// A stored decimal (value × 10^scale) as written in a CSV.
fn decimal(v: i64, scale: u32) -> String {
    if scale == 0 {
        return v.to_string();
    }
    let p = 10u64.pow(scale);
    let abs = v.unsigned_abs();
    let sign = if v < 0 { "-" } else { "" };
    format!(
        "{sign}{}.{:0width$}",
        abs / p,
        abs % p,
        width = scale as usize
    )
}

/// A stored date as `YYYY-MM-DD`.
fn date(days: i32) -> String {
    let (y, m, d) = columnar::civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_written_as_in_a_csv() {
        assert_eq!(decimal(12345, 2), "123.45");
        assert_eq!(decimal(-5, 2), "-0.05");
        assert_eq!(decimal(7, 0), "7");
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(20_000), "2024-10-04");
    }
}
