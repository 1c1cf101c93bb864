//! The provider's forms (dataset description, schema column) and their validation.
//!
//! A form is kept as typed (strings) so it can be shown again with a message; `validate`
//! turns it into the fields to store or names the first problem by message key.

use serde::Deserialize;

use crate::web::too_long;

use super::model::{
    Category, CodeLabel, ColType, Column, ColumnFields, Dataset, DatasetFields, GRADES, OpenType,
    Role, SharingType, UpdateFrequency,
};
use crate::input::MAX_TEXT;

/// Longest title, in characters.
pub const MAX_TITLE: usize = 200;
/// Most columns a dataset may declare.
pub const MAX_COLUMNS: usize = 200;
/// Most codes a category column may declare.
pub const MAX_CODES: usize = 5000;
/// Largest text length limit a column may declare.
pub const MAX_TEXT_LENGTH: i32 = 100_000;

/// The dataset description form.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct DatasetForm {
    /// CSRF token.
    pub csrf: String,
    /// Chinese title.
    pub title_zh: String,
    /// English title.
    pub title_en: String,
    /// Chinese description.
    pub description_zh: String,
    /// English description.
    pub description_en: String,
    /// Category code.
    pub category: String,
    /// Grade 1–4.
    pub grade: String,
    /// Open type code.
    pub open_type: String,
    /// Sharing type code.
    pub sharing_type: String,
    /// Update frequency code.
    pub update_frequency: String,
    /// Source.
    pub source: String,
    /// Contact.
    pub contact: String,
}

impl DatasetForm {
    /// The form filled from a stored dataset (for editing).
    pub fn from_dataset(d: &Dataset) -> Self {
        Self {
            csrf: String::new(),
            title_zh: d.title_zh.clone(),
            title_en: d.title_en.clone(),
            description_zh: d.description_zh.clone(),
            description_en: d.description_en.clone(),
            category: d.category.clone(),
            grade: d.grade.to_string(),
            open_type: d.open_type.clone(),
            sharing_type: d.sharing_type.clone(),
            update_frequency: d.update_frequency.clone(),
            source: d.source.clone(),
            contact: d.contact.clone(),
        }
    }

    /// The fields to store, or the message key of the first problem.
    pub fn validate(&self) -> Result<DatasetFields, &'static str> {
        let title_zh = self.title_zh.trim();
        let title_en = self.title_en.trim();
        if title_zh.is_empty() || title_en.is_empty() {
            return Err("catalog.err_title_required");
        }
        if too_long(title_zh, MAX_TITLE) || too_long(title_en, MAX_TITLE) {
            return Err("catalog.err_title_long");
        }
        let texts = [
            &self.description_zh,
            &self.description_en,
            &self.source,
            &self.contact,
        ];
        if texts.iter().any(|t| too_long(t, MAX_TEXT)) {
            return Err("catalog.err_text_long");
        }
        let category = Category::parse(&self.category).ok_or("catalog.err_category")?;
        let grade = self
            .grade
            .trim()
            .parse::<i32>()
            .ok()
            .filter(|g| GRADES.contains(g))
            .ok_or("catalog.err_grade")?;
        let open_type = OpenType::parse(&self.open_type).ok_or("catalog.err_open_type")?;
        let sharing_type =
            SharingType::parse(&self.sharing_type).ok_or("catalog.err_sharing_type")?;
        let update_frequency =
            UpdateFrequency::parse(&self.update_frequency).ok_or("catalog.err_frequency")?;
        Ok(DatasetFields {
            title_zh: title_zh.to_owned(),
            title_en: title_en.to_owned(),
            description_zh: self.description_zh.trim().to_owned(),
            description_en: self.description_en.trim().to_owned(),
            category: category.as_str().to_owned(),
            grade,
            open_type: open_type.as_str().to_owned(),
            sharing_type: sharing_type.as_str().to_owned(),
            update_frequency: update_frequency.as_str().to_owned(),
            source: self.source.trim().to_owned(),
            contact: self.contact.trim().to_owned(),
        })
    }
}

/// The schema column form.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ColumnForm {
    /// CSRF token.
    pub csrf: String,
    /// Position in the CSV (empty: after the last column).
    pub position: String,
    /// Header name.
    pub name: String,
    /// Chinese label.
    pub label_zh: String,
    /// English label.
    pub label_en: String,
    /// Type code.
    pub col_type: String,
    /// Decimals (decimal columns).
    pub scale: String,
    /// Longest text (text columns).
    pub max_length: String,
    /// Smallest value (integer columns; empty: none).
    pub min_value: String,
    /// Largest value (integer columns; empty: none).
    pub max_value: String,
    /// One code per line: `code|中文|English`.
    pub codes: String,
    /// Role code.
    pub role: String,
    /// Present when empty values are allowed.
    pub nullable: Option<String>,
}

/// Whether `name` is a valid column name: 1–64 of `A-Z a-z 0-9 _`, not starting with a digit.
pub fn valid_column_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit()
}

/// Parses the codes text: one `code|中文|English` per line (labels optional).
pub fn parse_codes(text: &str) -> Result<Vec<CodeLabel>, &'static str> {
    let mut codes: Vec<CodeLabel> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let mut parts = line.split('|').map(str::trim);
        let code = parts.next().unwrap_or("");
        let zh = parts.next().unwrap_or("");
        let en = parts.next().unwrap_or("");
        if code.is_empty()
            || code.chars().count() > 64
            || zh.chars().count() > 200
            || en.chars().count() > 200
        {
            return Err("catalog.err_code_line");
        }
        if codes.iter().any(|c| c.code == code) {
            return Err("catalog.err_code_duplicate");
        }
        if codes.len() >= MAX_CODES {
            return Err("catalog.err_code_many");
        }
        codes.push(CodeLabel {
            code: code.to_owned(),
            zh: zh.to_owned(),
            en: en.to_owned(),
        });
    }
    if codes.is_empty() {
        return Err("catalog.err_codes_required");
    }
    Ok(codes)
}

impl ColumnForm {
    /// The form filled from a stored column (for editing).
    pub fn from_column(c: &Column) -> Self {
        let codes = c
            .code_labels()
            .iter()
            .map(|l| format!("{}|{}|{}", l.code, l.zh, l.en))
            .collect::<Vec<_>>()
            .join("\n");
        Self {
            csrf: String::new(),
            position: c.position.to_string(),
            name: c.name.clone(),
            label_zh: c.label_zh.clone(),
            label_en: c.label_en.clone(),
            col_type: c.col_type.clone(),
            scale: c.scale.to_string(),
            max_length: c.max_length.to_string(),
            min_value: c.min_value.map(|v| v.to_string()).unwrap_or_default(),
            max_value: c.max_value.map(|v| v.to_string()).unwrap_or_default(),
            codes,
            role: c.role.clone(),
            nullable: c.nullable.then(|| "on".to_owned()),
        }
    }

    /// The fields to store (with `default_position` when none is given), or the message key of
    /// the first problem. Name uniqueness is checked by the caller.
    pub fn validate(&self, default_position: i32) -> Result<ColumnFields, &'static str> {
        let name = self.name.trim();
        if !valid_column_name(name) {
            return Err("catalog.err_column_name");
        }
        if too_long(&self.label_zh, MAX_TITLE) || too_long(&self.label_en, MAX_TITLE) {
            return Err("catalog.err_title_long");
        }
        let position = match self.position.trim() {
            "" => default_position,
            p => p
                .parse::<i32>()
                .ok()
                .filter(|p| (1..=10_000).contains(p))
                .ok_or("catalog.err_position")?,
        };
        let ty = ColType::parse(&self.col_type).ok_or("catalog.err_col_type")?;
        let role = Role::parse(&self.role).ok_or("catalog.err_role")?;
        let nullable = self.nullable.is_some();
        if nullable && role.is_identifying() {
            return Err("catalog.err_identifying_nullable");
        }
        let scale = match ty {
            ColType::Decimal => self
                .scale
                .trim()
                .parse::<i32>()
                .ok()
                .filter(|s| (0..=6).contains(s))
                .ok_or("catalog.err_scale")?,
            _ => 0,
        };
        let max_length = match (ty, self.max_length.trim()) {
            (ColType::Text, "") => 1000,
            (ColType::Text, m) => m
                .parse::<i32>()
                .ok()
                .filter(|m| (1..=MAX_TEXT_LENGTH).contains(m))
                .ok_or("catalog.err_max_length")?,
            _ => 1000,
        };
        let codes = match ty {
            ColType::Category => parse_codes(&self.codes)?,
            _ => Vec::new(),
        };
        let bound = |s: &str| match s.trim() {
            "" => Ok(None),
            v => v
                .parse::<i64>()
                .ok()
                .filter(|n| *n != i64::MIN)
                .map(Some)
                .ok_or("catalog.err_bound"),
        };
        let (min_value, max_value) = match ty {
            ColType::Integer => (bound(&self.min_value)?, bound(&self.max_value)?),
            _ => (None, None),
        };
        if let (Some(lo), Some(hi)) = (min_value, max_value)
            && lo > hi
        {
            return Err("catalog.err_bounds_order");
        }
        Ok(ColumnFields {
            position,
            name: name.to_owned(),
            label_zh: self.label_zh.trim().to_owned(),
            label_en: self.label_en.trim().to_owned(),
            col_type: ty.as_str().to_owned(),
            scale,
            max_length,
            codes: serde_json::to_string(&codes).unwrap_or_else(|_| "[]".into()),
            role: role.as_str().to_owned(),
            nullable,
            min_value,
            max_value,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good_dataset() -> DatasetForm {
        DatasetForm {
            title_zh: "门诊".into(),
            title_en: "Visits".into(),
            category: "medical_services".into(),
            grade: "3".into(),
            open_type: "conditional".into(),
            sharing_type: "conditional".into(),
            update_frequency: "monthly".into(),
            ..DatasetForm::default()
        }
    }

    #[test]
    fn dataset_form_rules() {
        assert!(good_dataset().validate().is_ok());
        let mut f = good_dataset();
        f.grade = "5".into();
        assert_eq!(f.validate().unwrap_err(), "catalog.err_grade");
        let mut f = good_dataset();
        f.title_en = " ".into();
        assert_eq!(f.validate().unwrap_err(), "catalog.err_title_required");
        let mut f = good_dataset();
        f.open_type = "open".into();
        assert_eq!(f.validate().unwrap_err(), "catalog.err_open_type");
    }

    #[test]
    fn column_form_rules() {
        let f = ColumnForm {
            name: "sex".into(),
            col_type: "category".into(),
            role: "quasi_identifier".into(),
            codes: "M|男|Male\n\nF|女|Female\n".into(),
            ..ColumnForm::default()
        };
        let c = f.validate(3).unwrap();
        assert_eq!(c.position, 3);
        assert_eq!(
            c.codes,
            r#"[{"code":"M","zh":"男","en":"Male"},{"code":"F","zh":"女","en":"Female"}]"#
        );
        let mut g = f.clone();
        g.codes = "M\nM".into();
        assert_eq!(g.validate(1).unwrap_err(), "catalog.err_code_duplicate");
        let mut g = f.clone();
        g.name = "1x".into();
        assert_eq!(g.validate(1).unwrap_err(), "catalog.err_column_name");
        let mut g = f.clone();
        g.role = "identifier".into();
        g.nullable = Some("on".into());
        assert_eq!(
            g.validate(1).unwrap_err(),
            "catalog.err_identifying_nullable"
        );
        let g = ColumnForm {
            name: "cost".into(),
            col_type: "decimal".into(),
            scale: "7".into(),
            role: "sensitive".into(),
            ..ColumnForm::default()
        };
        assert_eq!(g.validate(1).unwrap_err(), "catalog.err_scale");
        let age = ColumnForm {
            name: "age".into(),
            col_type: "integer".into(),
            role: "quasi_identifier".into(),
            min_value: "0".into(),
            max_value: " 150 ".into(),
            ..ColumnForm::default()
        };
        let c = age.validate(1).unwrap();
        assert_eq!((c.min_value, c.max_value), (Some(0), Some(150)));
        let mut g = age.clone();
        g.max_value = "-1".into();
        assert_eq!(g.validate(1).unwrap_err(), "catalog.err_bounds_order");
        let mut g = age.clone();
        g.min_value = "zero".into();
        assert_eq!(g.validate(1).unwrap_err(), "catalog.err_bound");
        let mut g = age;
        g.col_type = "text".into();
        let c = g.validate(1).unwrap();
        assert_eq!(
            (c.min_value, c.max_value),
            (None, None),
            "only integers have bounds"
        );
    }
}
