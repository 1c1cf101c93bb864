//! Deterministic synthetic outpatient visits: the demo dataset.
//!
//! The generator is a pure function of `(seed, row index)` order: the same seed and row count
//! always give the same file, on every machine. It keeps no per-person state, so any row count
//! streams in constant memory. Each visit belongs to one of a pool of synthetic residents (about
//! one resident per four visits); a resident's ID number, name, sex, birth date and district are
//! derived from a hash of the resident's index, so repeat visits carry the same identity.
//!
//! Distributions are rough but meaningful: children mostly see the paediatrician for respiratory
//! and infectious complaints, the elderly for circulatory and endocrine disease; respiratory
//! visits rise in winter; costs are log-normal by chapter; insurance covers more for the elderly.
//!
//! Columns (in order): see [`COLUMNS`]. ID numbers are 18 characters with a valid GB 11643-1999
//! check character; all of them are synthetic.

use std::io;

use chrono::{Datelike, NaiveDate};
use dataop_sandbox::columnar::{ColumnRole, ColumnSpec, ColumnType};

use crate::catalog::ingest::IngestColumn;

/// The CSV header of the demo dataset, in order.
pub const COLUMNS: [&str; 10] = [
    "person_id",
    "patient_name",
    "district",
    "age",
    "sex",
    "visit_date",
    "icd10_chapter",
    "department",
    "total_cost",
    "insured_cost",
];

/// One entry of a category domain: the code stored in the CSV and its labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Code {
    /// The code as it appears in the CSV.
    pub code: &'static str,
    /// Chinese label.
    pub zh: &'static str,
    /// English label.
    pub en: &'static str,
}

const fn code(code: &'static str, zh: &'static str, en: &'static str) -> Code {
    Code { code, zh, en }
}

/// The districts of the demo city (Hangzhou), with administrative division codes.
pub const DISTRICTS: [Code; 13] = [
    code("330102", "上城区", "Shangcheng"),
    code("330105", "拱墅区", "Gongshu"),
    code("330106", "西湖区", "Xihu"),
    code("330108", "滨江区", "Binjiang"),
    code("330109", "萧山区", "Xiaoshan"),
    code("330110", "余杭区", "Yuhang"),
    code("330111", "富阳区", "Fuyang"),
    code("330112", "临安区", "Lin'an"),
    code("330113", "临平区", "Linping"),
    code("330114", "钱塘区", "Qiantang"),
    code("330122", "桐庐县", "Tonglu"),
    code("330127", "淳安县", "Chun'an"),
    code("330182", "建德市", "Jiande"),
];

/// Relative resident populations of [`DISTRICTS`] (ten-thousands, rounded).
const DISTRICT_WEIGHTS: [u32; 13] = [132, 118, 112, 50, 210, 130, 85, 65, 110, 80, 45, 33, 44];

/// Sex codes.
pub const SEXES: [Code; 2] = [code("M", "男", "Male"), code("F", "女", "Female")];

/// The 22 chapters of ICD-10.
pub const CHAPTERS: [Code; 22] = [
    code(
        "I",
        "某些传染病和寄生虫病",
        "Infectious and parasitic diseases",
    ),
    code("II", "肿瘤", "Neoplasms"),
    code("III", "血液及造血器官疾病", "Diseases of the blood"),
    code(
        "IV",
        "内分泌、营养和代谢疾病",
        "Endocrine, nutritional and metabolic diseases",
    ),
    code("V", "精神和行为障碍", "Mental and behavioural disorders"),
    code("VI", "神经系统疾病", "Diseases of the nervous system"),
    code("VII", "眼和附器疾病", "Diseases of the eye and adnexa"),
    code(
        "VIII",
        "耳和乳突疾病",
        "Diseases of the ear and mastoid process",
    ),
    code("IX", "循环系统疾病", "Diseases of the circulatory system"),
    code("X", "呼吸系统疾病", "Diseases of the respiratory system"),
    code("XI", "消化系统疾病", "Diseases of the digestive system"),
    code("XII", "皮肤和皮下组织疾病", "Diseases of the skin"),
    code(
        "XIII",
        "肌肉骨骼系统和结缔组织疾病",
        "Diseases of the musculoskeletal system",
    ),
    code(
        "XIV",
        "泌尿生殖系统疾病",
        "Diseases of the genitourinary system",
    ),
    code(
        "XV",
        "妊娠、分娩和产褥期",
        "Pregnancy, childbirth and the puerperium",
    ),
    code(
        "XVI",
        "起源于围生期的某些情况",
        "Conditions originating in the perinatal period",
    ),
    code(
        "XVII",
        "先天性畸形、变形和染色体异常",
        "Congenital malformations",
    ),
    code(
        "XVIII",
        "症状、体征和异常临床与实验室所见",
        "Symptoms, signs and abnormal findings",
    ),
    code(
        "XIX",
        "损伤、中毒和外因的某些其他后果",
        "Injury and poisoning",
    ),
    code("XX", "疾病和死亡的外因", "External causes of morbidity"),
    code(
        "XXI",
        "影响健康状态和与保健机构接触的因素",
        "Factors influencing health status",
    ),
    code("XXII", "用于特殊目的的编码", "Codes for special purposes"),
];

/// Outpatient departments.
pub const DEPARTMENTS: [Code; 20] = [
    code("general", "全科", "General practice"),
    code("internal", "普通内科", "Internal medicine"),
    code("pediatrics", "儿科", "Paediatrics"),
    code("respiratory", "呼吸内科", "Respiratory medicine"),
    code("cardiology", "心血管内科", "Cardiology"),
    code("endocrinology", "内分泌科", "Endocrinology"),
    code("gastroenterology", "消化内科", "Gastroenterology"),
    code("neurology", "神经内科", "Neurology"),
    code("oncology", "肿瘤科", "Oncology"),
    code("infectious", "感染科", "Infectious diseases"),
    code("psychiatry", "精神科", "Psychiatry"),
    code("surgery", "普通外科", "General surgery"),
    code("orthopedics", "骨科", "Orthopaedics"),
    code("urology", "泌尿外科", "Urology"),
    code("gynecology", "妇科", "Gynaecology"),
    code("obstetrics", "产科", "Obstetrics"),
    code("ophthalmology", "眼科", "Ophthalmology"),
    code("ent", "耳鼻喉科", "Otorhinolaryngology"),
    code("dermatology", "皮肤科", "Dermatology"),
    code("emergency", "急诊科", "Emergency"),
];

/// The first day visits are generated for.
const FIRST_DAY: (i32, u32, u32) = (2025, 1, 1);
/// Number of days visits are spread over (one year).
const DAYS: u32 = 365;

const SURNAMES: [&str; 60] = [
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭",
    "何", "高", "林", "罗", "郑", "梁", "谢", "宋", "唐", "许", "韩", "冯", "邓", "曹", "彭", "曾",
    "肖", "田", "董", "袁", "潘", "于", "蒋", "蔡", "余", "杜", "叶", "程", "苏", "魏", "吕", "丁",
    "任", "沈", "姚", "卢", "姜", "崔", "钟", "谭", "陆", "汪", "范", "金",
];
const GIVEN_MALE: [&str; 32] = [
    "伟", "强", "磊", "军", "勇", "杰", "涛", "明", "超", "刚", "平", "辉", "鹏", "华", "飞", "斌",
    "宇", "浩", "凯", "健", "俊", "帆", "帅", "旭", "宁", "龙", "林", "洋", "建", "国", "志", "文",
];
const GIVEN_FEMALE: [&str; 32] = [
    "芳", "娜", "敏", "静", "丽", "艳", "娟", "霞", "秀", "玲", "桂", "英", "华", "慧", "巧", "美",
    "婷", "雪", "琳", "晶", "妍", "茜", "倩", "颖", "欣", "怡", "佳", "悦", "梅", "兰", "红", "燕",
];

/// Weights of ICD-10 chapters (indexes into [`CHAPTERS`]) by age band.
const CHAPTERS_CHILD: [(usize, u32); 10] = [
    (9, 36),
    (0, 12),
    (11, 8),
    (17, 10),
    (18, 7),
    (10, 8),
    (6, 5),
    (7, 6),
    (20, 7),
    (16, 1),
];
const CHAPTERS_ADULT: [(usize, u32); 13] = [
    (9, 18),
    (10, 14),
    (12, 10),
    (13, 9),
    (14, 8),
    (4, 6),
    (11, 7),
    (18, 7),
    (17, 8),
    (20, 8),
    (6, 5),
    (0, 4),
    (3, 3),
];
const CHAPTERS_MIDDLE: [(usize, u32); 12] = [
    (8, 18),
    (3, 12),
    (10, 12),
    (12, 12),
    (9, 12),
    (1, 6),
    (13, 7),
    (6, 6),
    (17, 7),
    (20, 8),
    (5, 3),
    (2, 1),
];
const CHAPTERS_ELDER: [(usize, u32); 12] = [
    (8, 28),
    (3, 14),
    (9, 12),
    (1, 9),
    (12, 10),
    (10, 8),
    (5, 5),
    (6, 6),
    (17, 4),
    (13, 4),
    (18, 2),
    (2, 1),
];

/// Mean total cost in yuan by chapter index.
const CHAPTER_MEAN_COST: [f64; 22] = [
    260.0, 1400.0, 420.0, 330.0, 290.0, 380.0, 210.0, 190.0, 360.0, 180.0, 240.0, 150.0, 260.0,
    280.0, 420.0, 300.0, 500.0, 200.0, 460.0, 300.0, 120.0, 200.0,
];

/// A small, fast, portable PRNG (SplitMix64); the stream is fixed forever for a seed.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// A uniform integer in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A uniform float in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A standard normal deviate (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit();
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn weighted<T: Copy>(rng: &mut SplitMix64, items: &[(T, u32)]) -> T {
    let total: u32 = items.iter().map(|(_, w)| w).sum();
    let mut pick = rng.below(u64::from(total)) as u32;
    for (item, w) in items {
        if pick < *w {
            return *item;
        }
        pick -= w;
    }
    items[items.len() - 1].0
}

/// The check character of a resident ID number (GB 11643-1999, ISO 7064 MOD 11-2) for its
/// first 17 digits (ASCII).
pub fn id_check_char(first17: &[u8]) -> u8 {
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const CHARS: &[u8; 11] = b"10X98765432";
    let sum: u32 = first17
        .iter()
        .zip(WEIGHTS)
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    CHARS[(sum % 11) as usize]
}

/// Whether `id` is a well-formed 18-character resident ID number with a valid check character.
pub fn is_valid_id_number(id: &[u8]) -> bool {
    id.len() == 18
        && id[..17].iter().all(u8::is_ascii_digit)
        && id_check_char(&id[..17]) == id[17].to_ascii_uppercase()
}

/// A synthetic resident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// The 18-character ID number.
    pub id_number: [u8; 18],
    /// Full name.
    pub name: String,
    /// Index into [`DISTRICTS`].
    pub district: usize,
    /// `true` for male.
    pub male: bool,
    /// Date of birth.
    pub birth: NaiveDate,
}

/// One generated outpatient visit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Visit {
    /// The resident who visited.
    pub person: Person,
    /// Age in whole years on the visit date.
    pub age: u32,
    /// Date of the visit.
    pub visit_date: NaiveDate,
    /// Index into [`CHAPTERS`].
    pub chapter: usize,
    /// Index into [`DEPARTMENTS`].
    pub department: usize,
    /// Total cost in fen (0.01 yuan).
    pub total_cost: i64,
    /// Part paid by insurance, in fen; never more than `total_cost`.
    pub insured_cost: i64,
}

/// The deterministic visit generator; an iterator over exactly `rows` visits.
#[derive(Debug, Clone)]
pub struct Generator {
    seed: u64,
    rng: SplitMix64,
    persons: u64,
    remaining: u64,
    first_day: NaiveDate,
}

impl Generator {
    /// A generator of `rows` visits from `seed`.
    pub fn new(seed: u64, rows: u64) -> Self {
        let (y, m, d) = FIRST_DAY;
        Self {
            seed,
            rng: SplitMix64::new(mix(seed ^ 0x5EED_0F0A_7E00_0001)),
            persons: (rows / 4).max(1),
            remaining: rows,
            first_day: NaiveDate::from_ymd_opt(y, m, d).expect("valid first day"),
        }
    }

    /// The resident with index `index` of the pool of this seed.
    pub fn person(&self, index: u64) -> Person {
        let mut r = SplitMix64::new(mix(self.seed ^ mix(index.wrapping_add(1))));
        let district = weighted(
            &mut r,
            &[
                (0, DISTRICT_WEIGHTS[0]),
                (1, DISTRICT_WEIGHTS[1]),
                (2, DISTRICT_WEIGHTS[2]),
                (3, DISTRICT_WEIGHTS[3]),
                (4, DISTRICT_WEIGHTS[4]),
                (5, DISTRICT_WEIGHTS[5]),
                (6, DISTRICT_WEIGHTS[6]),
                (7, DISTRICT_WEIGHTS[7]),
                (8, DISTRICT_WEIGHTS[8]),
                (9, DISTRICT_WEIGHTS[9]),
                (10, DISTRICT_WEIGHTS[10]),
                (11, DISTRICT_WEIGHTS[11]),
                (12, DISTRICT_WEIGHTS[12]),
            ],
        );
        let male = r.unit() < 0.48;
        // Age on the first day: the people who visit outpatient clinics, not the census.
        let band = weighted(&mut r, &[(0u32, 13), (1, 30), (2, 27), (3, 30)]);
        let age = match band {
            0 => r.below(15),
            1 => 15 + r.below(30),
            2 => 45 + r.below(20),
            _ => 65 + (r.below(26) + r.below(16)).min(40),
        } as i64;
        let birth = self.first_day - chrono::Duration::days(age * 365 + r.below(365) as i64 + 1);
        let given = if male { &GIVEN_MALE } else { &GIVEN_FEMALE };
        let mut name = String::with_capacity(9);
        name.push_str(SURNAMES[r.below(SURNAMES.len() as u64) as usize]);
        name.push_str(given[r.below(32) as usize]);
        if r.unit() < 0.7 {
            name.push_str(given[r.below(32) as usize]);
        }
        let mut id_number = [0u8; 18];
        id_number[..6].copy_from_slice(DISTRICTS[district].code.as_bytes());
        let date = format!("{:04}{:02}{:02}", birth.year(), birth.month(), birth.day());
        id_number[6..14].copy_from_slice(date.as_bytes());
        let seq = r.below(500) * 2 + u64::from(male);
        let seq = format!("{seq:03}");
        id_number[14..17].copy_from_slice(seq.as_bytes());
        id_number[17] = id_check_char(&id_number[..17]);
        Person {
            id_number,
            name,
            district,
            male,
            birth,
        }
    }

    fn visit(&mut self) -> Visit {
        let index = self.rng.below(self.persons);
        let mut person = self.person(index);
        // The elderly visit more often: younger residents are re-drawn once with some chance.
        if person.birth.year() > FIRST_DAY.0 - 60 && self.rng.unit() < 0.3 {
            let index = self.rng.below(self.persons);
            person = self.person(index);
        }
        let first_day = self.first_day;
        let rng = &mut self.rng;
        let mut day = rng.below(u64::from(DAYS));
        let weekday = (first_day + chrono::Duration::days(day as i64)).weekday();
        if weekday.number_from_monday() >= 6 && rng.unit() < 0.4 {
            day = rng.below(u64::from(DAYS));
        }
        let visit_date = first_day + chrono::Duration::days(day as i64);
        let age = age_on(person.birth, visit_date).min(110);
        let winter = matches!(visit_date.month(), 12 | 1 | 2);
        let mut chapter = if winter && rng.unit() < 0.15 {
            9
        } else {
            match age {
                0..=14 => weighted(rng, &CHAPTERS_CHILD),
                15..=44 => weighted(rng, &CHAPTERS_ADULT),
                45..=64 => weighted(rng, &CHAPTERS_MIDDLE),
                _ => weighted(rng, &CHAPTERS_ELDER),
            }
        };
        if chapter == 14 && (person.male || !(15..=49).contains(&age)) {
            chapter = 13;
        }
        let department = department_for(chapter, age, person.male, rng);
        let sigma = 0.7;
        let mean = CHAPTER_MEAN_COST[chapter] * if department == 19 { 1.6 } else { 1.0 };
        let total =
            (mean * (sigma * rng.normal() - sigma * sigma / 2.0).exp()).clamp(8.0, 200_000.0);
        let total_cost = (total * 100.0).round() as i64;
        let share = if rng.unit() < 0.08 {
            0.0
        } else {
            let base = match age {
                0..=17 => 0.50,
                18..=59 => 0.62,
                _ => 0.75,
            };
            (base + 0.08 * rng.normal()).clamp(0.0, 0.95)
        };
        let insured_cost = ((total_cost as f64 * share).round() as i64).clamp(0, total_cost);
        Visit {
            person,
            age,
            visit_date,
            chapter,
            department,
            total_cost,
            insured_cost,
        }
    }
}

fn age_on(birth: NaiveDate, day: NaiveDate) -> u32 {
    let mut age = day.year() - birth.year();
    if (day.month(), day.day()) < (birth.month(), birth.day()) {
        age -= 1;
    }
    age.max(0) as u32
}

fn department_for(chapter: usize, age: u32, male: bool, rng: &mut SplitMix64) -> usize {
    let child = age <= 14;
    match chapter {
        6 => 16,
        7 => 17,
        11 => 18,
        18 => {
            if rng.unit() < 0.5 {
                19
            } else if rng.unit() < 0.5 {
                12
            } else {
                11
            }
        }
        _ if child => {
            if rng.unit() < 0.1 {
                19
            } else {
                2
            }
        }
        0 => 9,
        1 => 8,
        3 => 5,
        4 => 10,
        5 => 7,
        8 => 4,
        9 if rng.unit() < 0.5 => 3,
        9 => 1,
        10 => 6,
        12 => 12,
        13 if male => 13,
        13 => 14,
        14 => 15,
        17 | 20 if rng.unit() < 0.6 => 0,
        _ => 1,
    }
}

impl Iterator for Generator {
    type Item = Visit;

    fn next(&mut self) -> Option<Visit> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        Some(self.visit())
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = usize::try_from(self.remaining).unwrap_or(usize::MAX);
        (n, Some(n))
    }
}

/// Formats an amount in fen as yuan with two decimals (`12345` → `123.45`).
fn write_money(buf: &mut String, fen: i64) {
    use std::fmt::Write as _;
    let _ = write!(buf, "{}.{:02}", fen / 100, fen % 100);
}

/// Streams `rows` visits generated from `seed` as CSV (with the [`COLUMNS`] header) to `out`.
pub fn write_csv<W: io::Write>(out: W, seed: u64, rows: u64) -> io::Result<()> {
    use std::fmt::Write as _;
    let mut w = csv::WriterBuilder::new().from_writer(out);
    w.write_record(COLUMNS)?;
    let mut age = String::new();
    let mut date = String::new();
    let mut total = String::new();
    let mut insured = String::new();
    for v in Generator::new(seed, rows) {
        age.clear();
        date.clear();
        total.clear();
        insured.clear();
        let _ = write!(age, "{}", v.age);
        let _ = write!(date, "{}", v.visit_date.format("%Y-%m-%d"));
        write_money(&mut total, v.total_cost);
        write_money(&mut insured, v.insured_cost);
        w.write_record([
            &v.person.id_number[..],
            v.person.name.as_bytes(),
            DISTRICTS[v.person.district].code.as_bytes(),
            age.as_bytes(),
            SEXES[usize::from(!v.person.male)].code.as_bytes(),
            date.as_bytes(),
            CHAPTERS[v.chapter].code.as_bytes(),
            DEPARTMENTS[v.department].code.as_bytes(),
            total.as_bytes(),
            insured.as_bytes(),
        ])?;
    }
    w.flush()
}

/// The declared schema of the demo dataset, as the ingest needs it.
pub fn schema() -> Vec<IngestColumn> {
    let codes = |list: &[Code]| ColumnType::Category {
        codes: list.iter().map(|c| c.code.to_owned()).collect(),
    };
    let col = |name: &str, ty: ColumnType, role: ColumnRole| IngestColumn {
        spec: ColumnSpec {
            name: name.to_owned(),
            ty,
            role,
            nullable: false,
        },
        max_chars: 64,
        min: None,
        max: None,
    };
    vec![
        col("person_id", ColumnType::Text, ColumnRole::PrivacyUnit),
        col("patient_name", ColumnType::Text, ColumnRole::Identifier),
        col("district", codes(&DISTRICTS), ColumnRole::QuasiIdentifier),
        IngestColumn {
            min: Some(0),
            max: Some(150),
            ..col("age", ColumnType::Integer, ColumnRole::QuasiIdentifier)
        },
        col("sex", codes(&SEXES), ColumnRole::QuasiIdentifier),
        col("visit_date", ColumnType::Date, ColumnRole::Plain),
        col("icd10_chapter", codes(&CHAPTERS), ColumnRole::Plain),
        col("department", codes(&DEPARTMENTS), ColumnRole::Plain),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_character_matches_the_standard_example() {
        // The example of GB 11643-1999.
        assert!(is_valid_id_number(b"11010519491231002X"));
        assert!(!is_valid_id_number(b"110105194912310021"));
        assert!(!is_valid_id_number(b"11010519491231002"));
    }

    #[test]
    fn same_seed_same_rows() {
        let a: Vec<Visit> = Generator::new(7, 500).collect();
        let b: Vec<Visit> = Generator::new(7, 500).collect();
        assert_eq!(a, b);
        let c: Vec<Visit> = Generator::new(8, 500).collect();
        assert_ne!(a, c);
    }

    #[test]
    fn rows_are_plausible() {
        let visits: Vec<Visit> = Generator::new(1, 20_000).collect();
        assert_eq!(visits.len(), 20_000);
        let mut people = std::collections::HashSet::new();
        for v in &visits {
            assert!(is_valid_id_number(&v.person.id_number));
            assert!(v.age <= 110);
            assert!(v.insured_cost >= 0 && v.insured_cost <= v.total_cost);
            assert!(v.total_cost > 0);
            assert_eq!(v.visit_date.year(), 2025);
            assert_eq!(age_on(v.person.birth, v.visit_date), v.age.min(110));
            if v.chapter == 14 {
                assert!(!v.person.male);
            }
            // The ID number encodes the sex and district.
            assert_eq!((v.person.id_number[16] - b'0') % 2 == 1, v.person.male);
            assert_eq!(
                &v.person.id_number[..6],
                DISTRICTS[v.person.district].code.as_bytes()
            );
            people.insert(v.person.id_number);
        }
        // Repeat visits by the same residents.
        assert!(
            people.len() < 8_000 && people.len() > 2_000,
            "{}",
            people.len()
        );
        // Age drives the diagnosis: circulatory disease is an old people's chapter.
        let old_ix = visits
            .iter()
            .filter(|v| v.age >= 65 && v.chapter == 8)
            .count();
        let young_ix = visits
            .iter()
            .filter(|v| v.age <= 14 && v.chapter == 8)
            .count();
        assert!(old_ix > 10 * (young_ix + 1));
    }

    #[test]
    fn csv_has_header_and_rows() {
        let mut out = Vec::new();
        write_csv(&mut out, 3, 100).unwrap();
        let mut r = csv::Reader::from_reader(&out[..]);
        assert_eq!(r.headers().unwrap(), COLUMNS.as_slice());
        let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 100);
        for row in rows {
            assert_eq!(row.len(), 10);
            assert!(row[8].contains('.'));
            let total: f64 = row[8].parse().unwrap();
            let insured: f64 = row[9].parse().unwrap();
            assert!(insured <= total);
        }
    }
}
