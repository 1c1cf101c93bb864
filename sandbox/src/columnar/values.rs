//! Cell values as stored: civil dates as days, fixed-point decimals, and [`CellParser`] for the
//! text of one cell.

use super::*;

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
    pub(super) columns: Vec<ColumnSpec>,
    pub(super) codes: Vec<HashMap<String, u32>>,
    pub(super) key: PseudonymKey,
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
