//! The unified social credit code (统一社会信用代码), GB 32100-2015.
//!
//! 18 characters from the 31-character set `0-9 A-H J-N P-R T U W-Y` (no I, O, Z, S, V):
//! 1. position 1: registration authority (1 机构编制, 2 外交, 3 司法行政, 4 文化, 5 民政,
//!    6 旅游, 7 宗教, 8 工会, 9 市场监管/工商, A 中央军委改革和编制办公室, N 农业, Y 其他);
//! 2. position 2: organisation type, allowed values depending on the authority;
//! 3. positions 3–8: administrative division code (6 digits, a valid province prefix);
//! 4. positions 9–17: organisation code (GB 11714: 8 body characters and a check character
//!    with weights 3 7 9 10 5 8 4 2, mod 11, 10 written `X`);
//! 5. position 18: check character, weights 3^(i-1) mod 31, `31 - sum mod 31` (31 → 0).

/// The 31 characters of the code, in value order.
pub const ALPHABET: &str = "0123456789ABCDEFGHJKLMNPQRTUWXY";

const WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];
const ORG_WEIGHTS: [u32; 8] = [3, 7, 9, 10, 5, 8, 4, 2];
const PROVINCES: &[&str] = &[
    "10", "11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37",
    "41", "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64", "65",
    "71", "81", "82",
];

/// The rule a code breaks; each has a message key `accounts.credit_<rule>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreditCodeError {
    /// Not exactly 18 characters (the count found).
    Length(usize),
    /// A character outside the code's character set (1-based position, the character).
    Charset(usize, char),
    /// Position 1 is not a registration authority code.
    Authority(char),
    /// Position 2 is not an organisation type of that authority.
    OrgType(char, char),
    /// Positions 3–8 are not an administrative division code.
    Division(String),
    /// Positions 9–17 are not a valid organisation code (GB 11714).
    OrgCode(String),
    /// Position 18 is not the check character (the expected one).
    Check(char),
}

impl CreditCodeError {
    /// The message key.
    pub fn key(&self) -> &'static str {
        match self {
            Self::Length(_) => "accounts.credit_length",
            Self::Charset(..) => "accounts.credit_charset",
            Self::Authority(_) => "accounts.credit_authority",
            Self::OrgType(..) => "accounts.credit_org_type",
            Self::Division(_) => "accounts.credit_division",
            Self::OrgCode(_) => "accounts.credit_org_code",
            Self::Check(_) => "accounts.credit_check",
        }
    }

    /// The `{name}` arguments of the message.
    pub fn args(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::Length(n) => vec![("count", n.to_string())],
            Self::Charset(pos, c) => vec![("pos", pos.to_string()), ("char", c.to_string())],
            Self::Authority(c) => vec![("char", c.to_string())],
            Self::OrgType(a, c) => vec![("authority", a.to_string()), ("char", c.to_string())],
            Self::Division(d) => vec![("value", d.clone())],
            Self::OrgCode(o) => vec![("value", o.clone())],
            Self::Check(c) => vec![("expected", c.to_string())],
        }
    }
}

fn org_types(authority: char) -> Option<&'static str> {
    Some(match authority {
        '1' => "1239",
        '2' => "19",
        '3' => "1234569",
        '4' => "19",
        '5' => "1239",
        '6' => "129",
        '7' => "129",
        '8' => "19",
        '9' => "123",
        'A' => "19",
        'N' => "1239",
        'Y' => "1",
        _ => return None,
    })
}

fn value(c: char) -> Option<u32> {
    ALPHABET.find(c).map(|i| i as u32)
}

/// The check character (position 18) for the first 17 characters.
pub fn check_char(first17: &str) -> Option<char> {
    let mut sum = 0u32;
    for (c, w) in first17.chars().zip(WEIGHTS) {
        sum += value(c)? * w;
    }
    let v = (31 - sum % 31) % 31;
    ALPHABET.chars().nth(v as usize)
}

/// The GB 11714 check character for the 8 body characters of an organisation code.
pub fn org_check_char(body: &str) -> Option<char> {
    let mut sum = 0u32;
    for (c, w) in body.chars().zip(ORG_WEIGHTS) {
        sum += c.to_digit(36)? * w;
    }
    Some(match 11 - sum % 11 {
        10 => 'X',
        11 => '0',
        v => char::from_digit(v, 10)?,
    })
}

/// Validates a code (surrounding spaces ignored, letters upper-cased); returns it normalized.
pub fn validate(input: &str) -> Result<String, CreditCodeError> {
    let code: String = input.trim().to_uppercase();
    let chars: Vec<char> = code.chars().collect();
    if chars.len() != 18 {
        return Err(CreditCodeError::Length(chars.len()));
    }
    if let Some((i, c)) = chars.iter().enumerate().find(|(_, c)| value(**c).is_none()) {
        return Err(CreditCodeError::Charset(i + 1, *c));
    }
    let types = org_types(chars[0]).ok_or(CreditCodeError::Authority(chars[0]))?;
    if !types.contains(chars[1]) {
        return Err(CreditCodeError::OrgType(chars[0], chars[1]));
    }
    let division: String = chars[2..8].iter().collect();
    if !division.bytes().all(|b| b.is_ascii_digit()) || !PROVINCES.contains(&&division[..2]) {
        return Err(CreditCodeError::Division(division));
    }
    let org: String = chars[8..17].iter().collect();
    let body = &org[..8];
    if org_check_char(body) != org[8..].chars().next() {
        return Err(CreditCodeError::OrgCode(org));
    }
    let expected = check_char(&code[..17]).ok_or(CreditCodeError::Charset(1, chars[0]))?;
    if chars[17] != expected {
        return Err(CreditCodeError::Check(expected));
    }
    Ok(code)
}

/// Completes a 16-character prefix (authority, type, division, organisation-code body) into a
/// valid code; used by the demo world and tests.
pub fn complete(prefix16: &str) -> Option<String> {
    let body = prefix16.get(8..16)?;
    let mut s = format!("{prefix16}{}", org_check_char(body)?);
    s.push(check_char(&s)?);
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_valid_code() {
        assert_eq!(
            validate(" 91350100m000100y43 ").unwrap(),
            "91350100M000100Y43"
        );
    }

    #[test]
    fn each_rule() {
        assert_eq!(validate("9135"), Err(CreditCodeError::Length(4)));
        assert_eq!(
            validate("91350100M000100I43"),
            Err(CreditCodeError::Charset(16, 'I'))
        );
        assert_eq!(
            validate("X1350100M000100Y43"),
            Err(CreditCodeError::Authority('X'))
        );
        assert_eq!(
            validate("94350100M000100Y43"),
            Err(CreditCodeError::OrgType('9', '4'))
        );
        assert!(matches!(
            validate("91990100M000100Y43"),
            Err(CreditCodeError::Division(_))
        ));
        assert!(matches!(
            validate("91350100M000100Y53"),
            Err(CreditCodeError::OrgCode(_))
        ));
        assert_eq!(
            validate("91350100M000100Y44"),
            Err(CreditCodeError::Check('3'))
        );
    }

    #[test]
    fn complete_makes_valid_codes() {
        let c = complete("9133010012345678").unwrap();
        assert_eq!(validate(&c).unwrap(), c);
    }
}
