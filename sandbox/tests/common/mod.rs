//! Helpers shared by the sandbox's test targets: the examples, a shared runtime, the demo
//! table, runs and their checks, and the hostile row module of example (a)'s manifest. Each
//! target uses a part of them.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use dataop_sandbox::source::TableSource;
use dataop_sandbox::{
    DatasetInput, Limits, Manifest, MemColumn, MemTable, Outcome, RunOptions, RunResult, Runtime,
    demo,
};

pub const GUEST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/guest");

pub fn examples() -> PathBuf {
    Path::new(GUEST).join("examples")
}

pub fn example(file: &str) -> Vec<u8> {
    std::fs::read(examples().join(file)).unwrap()
}

pub fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        let limits = Limits {
            timeout: Duration::from_secs(20),
            ..Limits::default()
        };
        Runtime::new(limits, None).expect("runtime")
    })
}

pub fn tmpdir(name: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!(
        "dataop-sandbox-test-{}-{n}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn manifest(name: &str) -> Manifest {
    Manifest::from_toml(&std::fs::read_to_string(examples().join(format!("{name}.toml"))).unwrap())
        .unwrap()
}

pub const ALLOWED: &[&str] = &[
    "age",
    "district",
    "sex",
    "icd10_chapter",
    "total_cost",
    "patient_name",
    "person_id",
];

pub fn input(name: &str, table: Arc<dyn TableSource>) -> DatasetInput {
    graded(name, table, 1)
}

pub fn graded(name: &str, table: Arc<dyn TableSource>, grade: u8) -> DatasetInput {
    DatasetInput {
        name: name.into(),
        source: table,
        allowed_columns: ALLOWED.iter().map(|s| s.to_string()).collect(),
        grade,
    }
}

pub fn table() -> Arc<MemTable> {
    static T: OnceLock<Arc<MemTable>> = OnceLock::new();
    T.get_or_init(|| Arc::new(demo::outpatients(30_000, 3_000, 1)))
        .clone()
}

pub fn run(wasm: &[u8], m: &Manifest, inputs: &[DatasetInput], instances: usize) -> RunResult {
    let module = runtime().load(wasm).expect("module loads");
    let opts = RunOptions {
        instances,
        noise_seed: Some(5),
        ..RunOptions::default()
    };
    runtime().run(&module, m, inputs, &opts)
}

pub fn finished(r: &RunResult) {
    assert_eq!(
        r.report.outcome,
        Outcome::Finished,
        "{}",
        r.report.to_json()
    );
}

pub fn u64s(t: &MemTable, c: usize) -> &[u64] {
    match t.column(c) {
        Some(MemColumn::U64(v)) => v,
        _ => panic!(),
    }
}
pub fn u32s(t: &MemTable, c: usize) -> &[u32] {
    match t.column(c) {
        Some(MemColumn::U32(v)) => v,
        _ => panic!(),
    }
}
pub fn i64s(t: &MemTable, c: usize) -> &[i64] {
    match t.column(c) {
        Some(MemColumn::I64(v)) => v,
        _ => panic!(),
    }
}

/// Native reference of example (a): (count, persons) per district, each person kept in their
/// lowest district only (max_cells_per_person = 1).
pub fn reference_a(t: &MemTable) -> BTreeMap<u32, (u64, u64)> {
    let mut per: BTreeMap<u64, BTreeMap<u32, u64>> = BTreeMap::new();
    for i in 0..t.rows() as usize {
        if i64s(t, 3)[i] >= 65 && u32s(t, 2)[i] != u32::MAX {
            *per.entry(u64s(t, 0)[i])
                .or_default()
                .entry(u32s(t, 2)[i])
                .or_default() += 1;
        }
    }
    let mut out: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    for cells in per.values() {
        let (&cell, &n) = cells.iter().next().unwrap();
        let e = out.entry(cell).or_default();
        e.0 += n.min(1000);
        e.1 += 1;
    }
    out
}

pub fn check_a(result: &RunResult) {
    finished(result);
    let out = result.output.as_ref().unwrap();
    let expected = reference_a(&table());
    let agg = &out.aggregates[0];
    assert_eq!(agg.cells.len(), demo::DISTRICTS.len());
    for (i, cell) in agg.cells.iter().enumerate() {
        assert_eq!(cell.key, vec![demo::DISTRICTS[i].to_string()]);
        let (n, p) = expected.get(&(i as u32)).copied().unwrap_or_default();
        if p < 10 {
            assert!(cell.suppressed);
        } else {
            assert_eq!(
                (cell.count, cell.persons),
                (Some(n as i64), Some(p as i64)),
                "district {i}"
            );
        }
    }
    assert_eq!(result.report.rows_read, 30_000);
}

/// A module with the two row functions of example (a)'s manifest (`keep` and the `district`
/// key, both `(age: i64, district: i32)`), whose bodies are `keep` and `key`, plus `extra`
/// module fields.
pub fn row_module(extra: &str, keep: &str, key: &str) -> Vec<u8> {
    format!(
        r#"(module {extra}
  (func (export "visits_by_district.keep") (param $age i64) (param $district i32) (result i32) {keep})
  (func (export "visits_by_district.district") (param $age i64) (param $district i32) (result i32) {key}))"#
    )
    .into_bytes()
}

pub fn refusal(wasm: &[u8]) -> String {
    match runtime().load(wasm) {
        Err(Outcome::Refused { reason }) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

pub fn run_a(wasm: &[u8], t: Arc<MemTable>) -> RunResult {
    run(
        wasm,
        &manifest("a_visits_65plus"),
        &[input("outpatients", t)],
        1,
    )
}

/// The refusal of a run of example (b)'s module under `m`.
pub fn plan_refusal(m: &Manifest, inputs: &[DatasetInput]) -> String {
    let wasm = example("b_cost_by_chapter_sex.wasm");
    match run(&wasm, m, inputs, 1).report.outcome {
        Outcome::Refused { reason } => reason,
        o => panic!("expected a refusal, got {o:?}"),
    }
}
