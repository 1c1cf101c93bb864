//! How each cell's raw bytes become a value: the parser per declared type, category codes, integer parsing.

use super::*;

/// How one column's raw value becomes a cell.
pub(super) enum Parser {
    Integer { min: i64, max: i64 },
    Decimal { scale: u32 },
    Date,
    Category(Codes),
    Text { max_chars: u32 },
}

/// A category domain. Domains of short codes (the usual case) are found in an open-addressed
/// table of the codes packed as integers (one multiplication and about one comparison per
/// lookup, no memory comparison calls); others through a hash map.
pub(super) enum Codes {
    Packed(PackedCodes),
    Map(std::collections::HashMap<Box<[u8]>, u32>),
}

/// Codes of at most 16 bytes packed with [`pack`], in a power-of-two table probed linearly.
pub(super) struct PackedCodes {
    /// (packed code, length, index); an index of `u32::MAX` marks an empty entry.
    pub(super) table: Vec<(u128, usize, u32)>,
    /// 64 minus the table's bit count: the top bits of the hash choose the first entry.
    pub(super) shift: u32,
}

impl PackedCodes {
    pub(super) fn slot(&self, (packed, len): (u128, usize)) -> usize {
        let folded = (packed as u64) ^ ((packed >> 64) as u64).rotate_left(29) ^ len as u64;
        (folded.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> self.shift) as usize
    }

    pub(super) fn find(&self, value: (u128, usize)) -> Option<u32> {
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
pub(super) fn pack(value: &[u8]) -> Option<(u128, usize)> {
    pub(super) fn u32_at(v: &[u8], at: usize) -> u128 {
        u128::from(u32::from_le_bytes([v[at], v[at + 1], v[at + 2], v[at + 3]]))
    }
    pub(super) fn u64_at(v: &[u8], at: usize) -> u128 {
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
    pub(super) fn new(codes: &[String]) -> Self {
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

    pub(super) fn find(&self, value: &[u8]) -> Option<u32> {
        match self {
            Self::Packed(codes) => codes.find(pack(value)?),
            Self::Map(map) => map.get(value).copied(),
        }
    }
}

pub(super) struct Prepared {
    pub(super) parser: Parser,
    pub(super) pseudonymize: bool,
    pub(super) nullable: bool,
    pub(super) storage: Storage,
    pub(super) name: String,
}

impl Prepared {
    pub(super) fn new(column: &IngestColumn) -> Self {
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
    pub(super) fn encode(&self, raw: &[u8], out: &mut ColumnChunk) -> Result<(), Reason> {
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
pub(super) fn parse_integer(v: &[u8]) -> Option<i64> {
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
