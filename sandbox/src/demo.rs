//! A deterministic in-memory generator of the demo outpatient schema (the same columns as the
//! server's demo data), for tests, `sandbox run` trials and `bench sandbox`.

use crate::columnar::{ColumnRole, ColumnSpec, ColumnType};
use crate::source::{MemColumn, MemTable};

/// District codes of the demo city (Hangzhou).
pub const DISTRICTS: &[&str] = &[
    "330102", "330105", "330106", "330108", "330109", "330110", "330111", "330112", "330113",
    "330114", "330122", "330127", "330182",
];

/// ICD-10 chapters.
pub const CHAPTERS: &[&str] = &[
    "I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI", "XII", "XIII", "XIV", "XV",
    "XVI", "XVII", "XVIII", "XIX", "XX", "XXI", "XXII",
];

/// Departments.
pub const DEPARTMENTS: &[&str] = &[
    "内科",
    "外科",
    "儿科",
    "妇产科",
    "眼科",
    "口腔科",
    "皮肤科",
    "急诊科",
];

fn category(name: &str, codes: &[&str], role: ColumnRole) -> ColumnSpec {
    ColumnSpec {
        name: name.into(),
        ty: ColumnType::Category {
            codes: codes.iter().map(|s| s.to_string()).collect(),
        },
        role,
        nullable: false,
    }
}

/// The columns of the demo outpatient dataset.
pub fn outpatient_columns() -> Vec<ColumnSpec> {
    let col = |name: &str, ty: ColumnType, role: ColumnRole| ColumnSpec {
        name: name.into(),
        ty,
        role,
        nullable: false,
    };
    vec![
        col("person_id", ColumnType::Text, ColumnRole::PrivacyUnit),
        col("patient_name", ColumnType::Text, ColumnRole::Identifier),
        category("district", DISTRICTS, ColumnRole::QuasiIdentifier),
        col("age", ColumnType::Integer, ColumnRole::QuasiIdentifier),
        category("sex", &["M", "F"], ColumnRole::QuasiIdentifier),
        col("visit_date", ColumnType::Date, ColumnRole::Plain),
        category("icd10_chapter", CHAPTERS, ColumnRole::Sensitive),
        category("department", DEPARTMENTS, ColumnRole::Plain),
        col(
            "total_cost",
            ColumnType::Decimal { scale: 2 },
            ColumnRole::Sensitive,
        ),
        col(
            "insured_cost",
            ColumnType::Decimal { scale: 2 },
            ColumnRole::Sensitive,
        ),
    ]
}

/// SplitMix64: a small, fast, deterministic generator.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
}

/// The pseudonym of synthetic person number `p` (stable across datasets and seeds).
pub fn person_pseudonym(p: u64) -> u64 {
    SplitMix(p ^ 0x005e_ed0f_da7a).next()
}

/// `rows` outpatient visits of `persons` synthetic persons (each with a fixed age, sex and home
/// district; 90% of visits in the home district), deterministic for a given `seed`.
pub fn outpatients(rows: usize, persons: u64, seed: u64) -> MemTable {
    let persons = persons.max(1);
    let mut rng = SplitMix(seed);
    let mut person = Vec::with_capacity(rows);
    let mut name = Vec::with_capacity(rows);
    let mut district = Vec::with_capacity(rows);
    let mut age = Vec::with_capacity(rows);
    let mut sex = Vec::with_capacity(rows);
    let mut date = Vec::with_capacity(rows);
    let mut chapter = Vec::with_capacity(rows);
    let mut dept = Vec::with_capacity(rows);
    let mut total = Vec::with_capacity(rows);
    let mut insured = Vec::with_capacity(rows);
    for _ in 0..rows {
        let p = rng.below(persons);
        let mut traits = SplitMix(p.wrapping_mul(0x2545_f491_4f6c_dd1d));
        let home = traits.below(DISTRICTS.len() as u64) as u32;
        let a = traits.below(100) as i64;
        let s = traits.below(2) as u32;
        person.push(person_pseudonym(p));
        name.push(person_pseudonym(p) ^ 0xdead_beef);
        district.push(if rng.below(10) == 0 {
            rng.below(DISTRICTS.len() as u64) as u32
        } else {
            home
        });
        age.push(a);
        sex.push(s);
        date.push(19_358 + rng.below(730) as i32);
        chapter.push(rng.below(CHAPTERS.len() as u64) as u32);
        dept.push(rng.below(DEPARTMENTS.len() as u64) as u32);
        let cost = 1_000 + rng.below(200_000) as i64 + if a >= 65 { 20_000 } else { 0 };
        total.push(cost);
        insured.push(cost * 7 / 10);
    }
    MemTable::new(
        outpatient_columns(),
        vec![
            MemColumn::U64(person),
            MemColumn::U64(name),
            MemColumn::U32(district),
            MemColumn::I64(age),
            MemColumn::U32(sex),
            MemColumn::I32(date),
            MemColumn::U32(chapter),
            MemColumn::U32(dept),
            MemColumn::I64(total),
            MemColumn::I64(insured),
        ],
    )
    .expect("the demo columns are consistent")
}
