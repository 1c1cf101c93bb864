//! End-to-end tests of the sandbox: the example jobs (C, compiled at test time, and WAT),
//! parallel and deterministic runs, columnar versions, and hostile modules.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use dataop_sandbox::columnar::{Cell, VersionReader, VersionWriter};
use dataop_sandbox::runtime::codes;
use dataop_sandbox::source::TableSource;
use dataop_sandbox::{
    CancelToken, DatasetInput, Limits, Manifest, MemColumn, MemTable, Outcome, RunOptions,
    RunResult, Runtime, demo,
};

const GUEST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/guest");

fn examples() -> PathBuf {
    Path::new(GUEST).join("examples")
}

fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        let limits = Limits {
            timeout: Duration::from_secs(20),
            ..Limits::default()
        };
        Runtime::new(limits, None).expect("runtime")
    })
}

fn tmpdir(name: &str) -> PathBuf {
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

/// Compiles a C example with clang into a temporary directory; None (with a message) only when
/// clang is not installed.
fn compile_c(name: &str) -> Option<Vec<u8>> {
    let out = tmpdir(&format!("cc-{name}")).join(format!("{name}.wasm"));
    let status = std::process::Command::new("clang")
        .args([
            "--target=wasm32",
            "-nostdlib",
            "-ffreestanding",
            "-O2",
            "-I",
            GUEST,
        ])
        .args(["-Wl,--no-entry", "-Wl,--export-dynamic", "-o"])
        .arg(&out)
        .arg(examples().join(format!("{name}.c")))
        .status();
    match status {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("SKIPPED: clang is not installed, the C example {name} was not built");
            None
        }
        Err(e) => panic!("clang: {e}"),
        Ok(s) => {
            assert!(s.success(), "clang failed on {name}");
            Some(std::fs::read(out).unwrap())
        }
    }
}

fn manifest(name: &str) -> Manifest {
    Manifest::from_toml(&std::fs::read_to_string(examples().join(format!("{name}.toml"))).unwrap())
        .unwrap()
}

const ALLOWED: &[&str] = &[
    "age",
    "district",
    "sex",
    "icd10_chapter",
    "total_cost",
    "patient_name",
    "person_id",
];

fn input(name: &str, table: Arc<dyn TableSource>) -> DatasetInput {
    DatasetInput {
        name: name.into(),
        source: table,
        allowed_columns: ALLOWED.iter().map(|s| s.to_string()).collect(),
    }
}

fn table() -> Arc<MemTable> {
    static T: OnceLock<Arc<MemTable>> = OnceLock::new();
    T.get_or_init(|| Arc::new(demo::outpatients(30_000, 3_000, 1)))
        .clone()
}

fn run(wasm: &[u8], m: &Manifest, inputs: &[DatasetInput], instances: usize) -> RunResult {
    let module = runtime().load(wasm).expect("module loads");
    let opts = RunOptions {
        instances,
        noise_seed: Some(5),
        ..RunOptions::default()
    };
    runtime().run(&module, m, inputs, &opts)
}

fn u64s(t: &MemTable, c: usize) -> &[u64] {
    match t.column(c) {
        Some(MemColumn::U64(v)) => v,
        _ => panic!(),
    }
}
fn u32s(t: &MemTable, c: usize) -> &[u32] {
    match t.column(c) {
        Some(MemColumn::U32(v)) => v,
        _ => panic!(),
    }
}
fn i64s(t: &MemTable, c: usize) -> &[i64] {
    match t.column(c) {
        Some(MemColumn::I64(v)) => v,
        _ => panic!(),
    }
}

/// Native reference of example (a): (count, persons) per district, each person kept in their
/// lowest district only (max_cells_per_person = 1).
fn reference_a(t: &MemTable) -> BTreeMap<u32, (u64, u64)> {
    let mut per: BTreeMap<u64, BTreeMap<u32, u64>> = BTreeMap::new();
    for i in 0..t.rows() as usize {
        if i64s(t, 3)[i] >= 65 {
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
        e.0 += n;
        e.1 += 1;
    }
    out
}

fn check_a(result: &RunResult) {
    assert_eq!(
        result.report.outcome,
        Outcome::Finished,
        "{}",
        result.report.to_json()
    );
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

#[test]
fn example_a_in_wat_matches_native_and_is_split_invariant() {
    let wasm = std::fs::read(examples().join("a_visits_65plus.wat")).unwrap();
    let m = manifest("a_visits_65plus");
    let inputs = [input("outpatients", table())];
    let one = run(&wasm, &m, &inputs, 1);
    check_a(&one);
    let three = run(&wasm, &m, &inputs, 3);
    assert_eq!(three.report.instances, 3);
    assert_eq!(
        one.output.as_ref().unwrap().to_json(),
        three.output.as_ref().unwrap().to_json()
    );
    let again = run(&wasm, &m, &inputs, 1);
    assert_eq!(
        one.output.unwrap().to_json().as_bytes(),
        again.output.unwrap().to_json().as_bytes()
    );
}

#[test]
fn example_a_in_c_matches_wat() {
    let Some(wasm) = compile_c("a_visits_65plus") else {
        return;
    };
    let m = manifest("a_visits_65plus");
    let inputs = [input("outpatients", table())];
    let c = run(&wasm, &m, &inputs, 2);
    check_a(&c);
    let wat = run(
        &std::fs::read(examples().join("a_visits_65plus.wat")).unwrap(),
        &m,
        &inputs,
        1,
    );
    assert_eq!(c.output.unwrap(), wat.output.unwrap());
    let csv = wat.report.to_json();
    assert!(csv.contains("\"cells_suppressed\""));
}

#[test]
fn example_b_clamps_bounds_and_means() {
    let Some(wasm) = compile_c("b_cost_by_chapter_sex") else {
        return;
    };
    let m = manifest("b_cost_by_chapter_sex");
    let inputs = [input("outpatients", table())];
    let r = run(&wasm, &m, &inputs, 2);
    assert_eq!(
        r.report.outcome,
        Outcome::Finished,
        "{} {}",
        r.report.to_json(),
        r.log
    );
    let out = r.output.unwrap();
    let agg = &out.aggregates[0];
    assert_eq!(agg.cells.len(), 22 * 2);
    assert_eq!(agg.cells[0].key, vec!["I".to_string(), "M".to_string()]);
    let released: Vec<_> = agg.cells.iter().filter(|c| !c.suppressed).collect();
    assert!(!released.is_empty());
    for c in &released {
        let mean: f64 = c.means[0].parse().unwrap();
        assert!(
            (0.0..=5000.0).contains(&mean),
            "mean {mean} within the clamp bounds"
        );
        let sum: f64 = c.sums[0].parse().unwrap();
        assert!((sum / c.count.unwrap() as f64 - mean).abs() < 0.01);
    }
    assert_eq!(r.report.epsilon_spent, 0.0);
    let csv = out.to_csv(0).unwrap();
    assert!(csv.starts_with(
        "icd10_chapter,sex,suppressed,count,persons,sum_total_cost,mean_total_cost\n"
    ));
    // The same with one instance gives the same bytes.
    let single = run(&wasm, &m, &inputs, 1).output.unwrap();
    assert_eq!(single.to_json(), out.to_json());
}

#[test]
fn example_c_adds_noise_and_reports_epsilon() {
    let Some(wasm) = compile_c("b_cost_by_chapter_sex") else {
        return;
    };
    let plain = run(
        &wasm,
        &manifest("b_cost_by_chapter_sex"),
        &[input("outpatients", table())],
        1,
    );
    let m = manifest("c_cost_by_chapter_sex_dp");
    let r = run(&wasm, &m, &[input("outpatients", table())], 1);
    assert_eq!(r.report.outcome, Outcome::Finished);
    assert_eq!(r.report.epsilon_spent, 1.0);
    let (a, b) = (plain.output.unwrap(), r.output.unwrap());
    assert_eq!(b.aggregates[0].epsilon, Some(1.0));
    let differ = a.aggregates[0]
        .cells
        .iter()
        .zip(&b.aggregates[0].cells)
        .filter(|(x, y)| x.count != y.count)
        .count();
    assert!(differ > 0, "noise changed some counts");
    // Same suppression decisions (thresholds use the exact distinct counts).
    for (x, y) in a.aggregates[0].cells.iter().zip(&b.aggregates[0].cells) {
        assert_eq!(x.suppressed, y.suppressed);
    }
}

#[test]
fn example_d_counts_persons_across_two_datasets() {
    let Some(wasm) = compile_c("d_patients_two_datasets") else {
        return;
    };
    let m = manifest("d_patients_two_datasets");
    let out_t = table();
    let in_t = Arc::new(demo::outpatients(5_000, 3_000, 2));
    let inputs = [
        input("outpatients", out_t.clone()),
        input("inpatients", in_t.clone()),
    ];
    let r = run(&wasm, &m, &inputs, 2);
    assert_eq!(
        r.report.outcome,
        Outcome::Finished,
        "{}",
        r.report.to_json()
    );
    assert_eq!(r.report.rows_read, 35_000);
    let mut per: BTreeMap<u64, BTreeSet<u32>> = BTreeMap::new();
    for t in [&out_t, &in_t] {
        for i in 0..t.rows() as usize {
            if i64s(t, 3)[i] >= 65 {
                per.entry(u64s(t, 0)[i]).or_default().insert(u32s(t, 2)[i]);
            }
        }
    }
    let mut persons: HashMap<u32, i64> = HashMap::new();
    for cells in per.values() {
        *persons.entry(*cells.iter().next().unwrap()).or_default() += 1;
    }
    for (i, c) in r.output.unwrap().aggregates[0].cells.iter().enumerate() {
        if !c.suppressed {
            assert_eq!(c.persons, persons.get(&(i as u32)).copied());
        }
    }
}

#[test]
fn runs_on_a_columnar_version_like_in_memory() {
    let dir = tmpdir("version").join("v1");
    let t = demo::outpatients(3_000, 300, 9);
    let mut w = VersionWriter::create(&dir, demo::outpatient_columns()).unwrap();
    for i in 0..t.rows() as usize {
        let cells = vec![
            Cell::Pseudonym(u64s(&t, 0)[i]),
            Cell::Pseudonym(u64s(&t, 1)[i]),
            Cell::Category(u32s(&t, 2)[i]),
            Cell::Int(i64s(&t, 3)[i]),
            Cell::Category(u32s(&t, 4)[i]),
            Cell::Date(match t.column(5) {
                Some(MemColumn::I32(v)) => v[i],
                _ => panic!(),
            }),
            Cell::Category(u32s(&t, 6)[i]),
            Cell::Category(u32s(&t, 7)[i]),
            Cell::Decimal(i64s(&t, 8)[i]),
            Cell::Decimal(i64s(&t, 9)[i]),
        ];
        w.push_row(&cells).unwrap();
    }
    w.finish().unwrap();
    let reader = Arc::new(VersionReader::open(&dir).unwrap());
    let wasm = std::fs::read(examples().join("a_visits_65plus.wat")).unwrap();
    let m = manifest("a_visits_65plus");
    let from_disk = run(&wasm, &m, &[input("outpatients", reader)], 2);
    let from_mem = run(&wasm, &m, &[input("outpatients", Arc::new(t))], 1);
    assert_eq!(from_disk.report.outcome, Outcome::Finished);
    assert_eq!(from_disk.output.unwrap(), from_mem.output.unwrap());
}

#[test]
fn check_lists_imports_exports_and_outputs_and_caches_on_disk() {
    let dir = tmpdir("cache");
    let wasm = std::fs::read(examples().join("a_visits_65plus.wat")).unwrap();
    let toml = std::fs::read_to_string(examples().join("a_visits_65plus.toml")).unwrap();
    let rt = Runtime::new(Limits::default(), Some(&dir)).unwrap();
    let report = rt.check(&wasm, &toml).unwrap();
    assert_eq!(report.sha256.len(), 64);
    assert!(report.imports.contains(&"dataop::emit".to_string()));
    assert!(report.exports.contains(&"dataop_main".to_string()));
    assert_eq!(report.manifest.aggregates[0].name, "visits_by_district");
    let cached: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(cached.len(), 1);
    assert!(cached[0].to_string_lossy().starts_with(&report.sha256));
    drop(rt);
    let rt2 = Runtime::new(Limits::default(), Some(&dir)).unwrap();
    let module = rt2.load(&wasm).unwrap();
    let r = rt2.run(
        &module,
        &manifest("a_visits_65plus"),
        &[input("outpatients", table())],
        &RunOptions::default(),
    );
    check_a(&r);
}

// ---- hostile modules -------------------------------------------------------------------------

/// A module importing every function, with names at fixed offsets: "outpatients" at 0, "age"
/// at 16, "district" at 32, "visits_by_district" at 48, "patient_name" at 80, "sex" at 96,
/// "person_id" at 112. `$ds` and `$agg` are opened before `body` runs.
fn hostile(body: &str) -> Vec<u8> {
    format!(
        r#"(module
  (import "dataop" "dataset" (func $dataset (param i32 i32) (result i32)))
  (import "dataop" "column" (func $column (param i32 i32 i32) (result i32)))
  (import "dataop" "column_kind" (func $column_kind (param i32) (result i32)))
  (import "dataop" "aggregate" (func $aggregate (param i32 i32) (result i32)))
  (import "dataop" "next_batch" (func $next_batch (param i32 i32) (result i32)))
  (import "dataop" "read" (func $read (param i32 i32 i32) (result i32)))
  (import "dataop" "emit" (func $emit (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "dataop" "log" (func $log (param i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "outpatients")
  (data (i32.const 16) "age")
  (data (i32.const 32) "district")
  (data (i32.const 48) "visits_by_district")
  (data (i32.const 80) "patient_name")
  (data (i32.const 96) "sex")
  (data (i32.const 112) "person_id")
  (func (export "dataop_main") (result i32)
    (local $ds i32) (local $agg i32) (local $c i32) (local $n i32) (local $i i32)
    (local.set $ds (call $dataset (i32.const 0) (i32.const 11)))
    (local.set $agg (call $aggregate (i32.const 48) (i32.const 18)))
    {body}
    (i32.const 0)))"#
    )
    .into_bytes()
}

fn run_hostile(wasm: &[u8], limits: Limits) -> Outcome {
    let rt = Runtime::new(limits, None).unwrap();
    let module = match rt.load(wasm) {
        Ok(m) => m,
        Err(o) => return o,
    };
    let r = rt.run(
        &module,
        &manifest("a_visits_65plus"),
        &[input("outpatients", table())],
        &RunOptions::default(),
    );
    assert!(r.output.is_none() || r.report.outcome.is_finished());
    r.report.outcome
}

fn hostile_outcome(body: &str) -> Outcome {
    run_hostile(
        &hostile(body),
        Limits {
            timeout: Duration::from_secs(20),
            ..Limits::default()
        },
    )
}

fn assert_violation(o: Outcome, code: u32, needle: &str) {
    match &o {
        Outcome::GuestViolation { code: c, reason } if *c == code && reason.contains(needle) => {}
        _ => panic!("expected violation {code} `{needle}`, got {o:?}"),
    }
}

#[test]
fn hostile_infinite_loop_runs_out_of_time() {
    let limits = Limits {
        timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let t = std::time::Instant::now();
    let o = run_hostile(&hostile("(loop $l (br $l))"), limits);
    assert_eq!(o, Outcome::OutOfTime);
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[test]
fn hostile_memory_growth_runs_out_of_memory() {
    let limits = Limits {
        max_memory_bytes: 8 << 20,
        ..Limits::default()
    };
    let o = run_hostile(
        &hostile("(loop $l (drop (memory.grow (i32.const 16))) (br $l))"),
        limits,
    );
    assert_eq!(o, Outcome::OutOfMemory);
    let too_big = br#"(module (memory (export "memory") 1000) (func (export "dataop_main") (result i32) (i32.const 0)))"#;
    assert_eq!(
        run_hostile(
            too_big,
            Limits {
                max_memory_bytes: 8 << 20,
                ..Limits::default()
            }
        ),
        Outcome::OutOfMemory
    );
}

#[test]
fn hostile_imports_are_refused_by_name() {
    let wasi = br#"(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
        (memory (export "memory") 1) (func (export "dataop_main") (result i32) (i32.const 0)))"#;
    match run_hostile(wasi, Limits::default()) {
        Outcome::Refused { reason } => assert!(
            reason.contains("wasi_snapshot_preview1::fd_write"),
            "{reason}"
        ),
        o => panic!("{o:?}"),
    }
    let unknown = br#"(module (import "dataop" "secret_rows" (func (result i32)))
        (memory (export "memory") 1) (func (export "dataop_main") (result i32) (i32.const 0)))"#;
    match run_hostile(unknown, Limits::default()) {
        Outcome::Refused { reason } => assert!(reason.contains("dataop::secret_rows"), "{reason}"),
        o => panic!("{o:?}"),
    }
    let wrong_sig = br#"(module (import "dataop" "log" (func (param i64)))
        (memory (export "memory") 1) (func (export "dataop_main") (result i32) (i32.const 0)))"#;
    assert!(matches!(
        run_hostile(wrong_sig, Limits::default()),
        Outcome::Refused { .. }
    ));
}

#[test]
fn hostile_identifier_and_undeclared_columns() {
    let o = hostile_outcome("(drop (call $column (local.get $ds) (i32.const 80) (i32.const 12)))");
    assert_violation(o, codes::FORBIDDEN, "identifier");
    let o = hostile_outcome("(drop (call $column (local.get $ds) (i32.const 112) (i32.const 9)))");
    assert_violation(o, codes::FORBIDDEN, "privacy unit");
    let o = hostile_outcome("(drop (call $column (local.get $ds) (i32.const 96) (i32.const 3)))");
    assert_violation(o, codes::UNDECLARED, "`sex`");
    // Declared in the manifest but forbidden or not allowed: refused before anything runs.
    let wasm = std::fs::read(examples().join("a_visits_65plus.wat")).unwrap();
    let module = runtime().load(&wasm).unwrap();
    for (col, needle) in [
        ("patient_name", "identifier"),
        ("person_id", "privacy unit"),
        ("department", "not allowed"),
    ] {
        let mut m = manifest("a_visits_65plus");
        m.datasets[0].columns.push(col.into());
        let r = runtime().run(
            &module,
            &m,
            &[input("outpatients", table())],
            &RunOptions::default(),
        );
        match &r.report.outcome {
            Outcome::Refused { reason } => assert!(reason.contains(needle), "{reason}"),
            o => panic!("{o:?}"),
        }
        assert_eq!(r.report.rows_read, 0);
    }
}

const ONE_CONTRIBUTION: &str = "(local.set $n (call $next_batch (local.get $ds) (i32.const 100)))
    (i32.store (i32.const 1024) (i32.const 0))
    (i32.store (i32.const 2048) (i32.const 0))";

#[test]
fn hostile_key_outside_domain_and_row_outside_batch() {
    let o = hostile_outcome(&format!(
        "{ONE_CONTRIBUTION} (i32.store (i32.const 2048) (i32.const 13))
         (drop (call $emit (local.get $agg) (local.get $ds) (i32.const 1) (i32.const 1024) (i32.const 2048) (i32.const 0)))"
    ));
    assert_violation(o, codes::KEY_OUTSIDE_DOMAIN, "key 13");
    let o = hostile_outcome(&format!(
        "{ONE_CONTRIBUTION} (i32.store (i32.const 1024) (i32.const 100))
         (drop (call $emit (local.get $agg) (local.get $ds) (i32.const 1) (i32.const 1024) (i32.const 2048) (i32.const 0)))"
    ));
    assert_violation(o, codes::ROW_OUTSIDE_BATCH, "row 100");
    // Before any batch, every row is outside.
    let o = hostile_outcome(
        "(drop (call $emit (local.get $agg) (local.get $ds) (i32.const 1) (i32.const 1024) (i32.const 2048) (i32.const 0)))",
    );
    assert_violation(o, codes::ROW_OUTSIDE_BATCH, "row 0");
}

#[test]
fn hostile_out_of_bounds_pointers_in_every_import() {
    let far = "(i32.const 65535)";
    let neg = "(i32.const -8)";
    let cases = [
        format!("(drop (call $dataset {far} (i32.const 11)))"),
        format!("(drop (call $dataset {neg} (i32.const 11)))"),
        format!("(drop (call $column (local.get $ds) {far} (i32.const 16)))"),
        format!("(drop (call $aggregate {far} (i32.const 18)))"),
        format!(
            "(local.set $c (call $column (local.get $ds) (i32.const 16) (i32.const 3)))
             (drop (call $next_batch (local.get $ds) (i32.const 100)))
             (drop (call $read (local.get $c) {far} (i32.const 800)))"
        ),
        format!(
            "(local.set $c (call $column (local.get $ds) (i32.const 16) (i32.const 3)))
             (drop (call $next_batch (local.get $ds) (i32.const 100)))
             (drop (call $read (local.get $c) {neg} (i32.const -1)))"
        ),
        format!(
            "{ONE_CONTRIBUTION} (drop (call $emit (local.get $agg) (local.get $ds) (i32.const 1) {far} (i32.const 2048) (i32.const 0)))"
        ),
        format!(
            "{ONE_CONTRIBUTION} (drop (call $emit (local.get $agg) (local.get $ds) (i32.const 1) (i32.const 1024) {neg} (i32.const 0)))"
        ),
        format!(
            "{ONE_CONTRIBUTION} (drop (call $emit (local.get $agg) (local.get $ds) (i32.const 100000) (i32.const 1024) (i32.const 2048) (i32.const 0)))"
        ),
        format!("(call $log {far} (i32.const 100))"),
    ];
    for body in &cases {
        assert_violation(
            hostile_outcome(body),
            codes::BAD_POINTER,
            "outside the guest memory",
        );
    }
    // A bad measures pointer, on an aggregate that declares a measure.
    let mut m = manifest("a_visits_65plus");
    m.aggregates[0]
        .measures
        .push(dataop_sandbox::manifest::MeasureDecl {
            name: "x".into(),
            scale: 0,
            min: 0.0,
            max: 1.0,
        });
    let module = runtime()
        .load(&hostile(&format!(
            "{ONE_CONTRIBUTION} (drop (call $emit (local.get $agg) (local.get $ds) (i32.const 1) (i32.const 1024) (i32.const 2048) {far}))"
        )))
        .unwrap();
    let r = runtime().run(
        &module,
        &m,
        &[input("outpatients", table())],
        &RunOptions::default(),
    );
    assert_violation(
        r.report.outcome,
        codes::BAD_POINTER,
        "outside the guest memory",
    );
    let o = hostile_outcome("(drop (call $column_kind (i32.const 12345)))");
    assert_violation(o, codes::BAD_HANDLE, "12345");
    let o = hostile_outcome("(drop (call $next_batch (i32.const 7) (i32.const 1)))");
    assert_violation(o, codes::BAD_HANDLE, "dataset handle");
    let o = hostile_outcome(
        "(drop (call $emit (i32.const 9) (local.get $ds) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)))",
    );
    assert_violation(o, codes::BAD_HANDLE, "aggregate handle");
    let o = hostile_outcome(
        "(local.set $c (call $column (local.get $ds) (i32.const 16) (i32.const 3)))
         (drop (call $next_batch (local.get $ds) (i32.const 100)))
         (drop (call $read (local.get $c) (i32.const 1024) (i32.const 8)))",
    );
    assert_violation(o, codes::BAD_ARGUMENT, "cannot hold");
}

#[test]
fn hostile_contribution_and_log_floods() {
    let flood = format!(
        "{ONE_CONTRIBUTION} (loop $l
           (drop (call $emit (local.get $agg) (local.get $ds) (i32.const 1000) (i32.const 8192) (i32.const 16384) (i32.const 0)))
           (br $l))"
    );
    let limits = Limits {
        max_contributions: 1_000_000,
        timeout: Duration::from_secs(20),
        ..Limits::default()
    };
    assert_eq!(
        run_hostile(&hostile(&flood), limits),
        Outcome::TooManyContributions
    );
    let log = "(loop $l (call $log (i32.const 0) (i32.const 4000)) (br $l))";
    assert_eq!(hostile_outcome(log), Outcome::LogLimit);
}

#[test]
fn hostile_malformed_and_incomplete_modules_are_refused() {
    for bytes in [&b"\0asm\x01\0\0\0garbage"[..], b"not wasm at all", b""] {
        match run_hostile(bytes, Limits::default()) {
            Outcome::Refused { reason } => assert!(reason.contains("malformed"), "{reason}"),
            o => panic!("{o:?}"),
        }
    }
    let no_main = br#"(module (memory (export "memory") 1))"#;
    match run_hostile(no_main, Limits::default()) {
        Outcome::Refused { reason } => assert!(reason.contains("dataop_main"), "{reason}"),
        o => panic!("{o:?}"),
    }
    let no_memory = br#"(module (func (export "dataop_main") (result i32) (i32.const 0)))"#;
    match run_hostile(no_memory, Limits::default()) {
        Outcome::Refused { reason } => assert!(reason.contains("memory"), "{reason}"),
        o => panic!("{o:?}"),
    }
    let big = vec![0u8; 2000];
    let limits = Limits {
        max_module_bytes: 1000,
        ..Limits::default()
    };
    assert!(matches!(run_hostile(&big, limits), Outcome::Refused { .. }));
    let traps = hostile_outcome("unreachable");
    assert!(matches!(traps, Outcome::GuestTrap { .. }), "{traps:?}");
    let fails = hostile("(return (i32.const 3))");
    assert_eq!(
        run_hostile(&fails, Limits::default()),
        Outcome::GuestTrap {
            message: "dataop_main returned 3".into()
        }
    );
}

#[test]
fn one_person_groups_are_all_suppressed_and_counted() {
    // Every person has a district of their own: every cell has one person, below k.
    let n = 13;
    let specs = demo::outpatient_columns();
    let t = MemTable::new(
        specs,
        vec![
            MemColumn::U64((0..n).collect()),
            MemColumn::U64((0..n).collect()),
            MemColumn::U32((0..n as u32).collect()),
            MemColumn::I64(vec![80; n as usize]),
            MemColumn::U32(vec![0; n as usize]),
            MemColumn::I32(vec![0; n as usize]),
            MemColumn::U32(vec![0; n as usize]),
            MemColumn::U32(vec![0; n as usize]),
            MemColumn::I64(vec![100; n as usize]),
            MemColumn::I64(vec![100; n as usize]),
        ],
    )
    .unwrap();
    let wasm = std::fs::read(examples().join("a_visits_65plus.wat")).unwrap();
    let mut m = manifest("a_visits_65plus");
    m.aggregates[0].k = Some(1); // raised to the platform floor of 10
    let r = run(&wasm, &m, &[input("outpatients", Arc::new(t))], 1);
    assert_eq!(r.report.outcome, Outcome::Finished);
    assert_eq!(r.report.cells_suppressed, 13);
    assert_eq!(r.report.cells_released, 0);
    assert_eq!(r.report.aggregates[0].cells_suppressed, 13);
    let out = r.output.unwrap();
    assert_eq!(out.aggregates[0].k, 10);
    assert!(
        out.aggregates[0]
            .cells
            .iter()
            .all(|c| c.suppressed && c.count.is_none() && c.persons.is_none())
    );
    assert!(out.to_json().contains("\"suppressed\": true"));
    assert!(out.to_csv(0).unwrap().contains("330102,true,,"));
}

#[test]
fn a_run_can_be_cancelled() {
    let rt = Runtime::new(
        Limits {
            timeout: Duration::from_secs(30),
            ..Limits::default()
        },
        None,
    )
    .unwrap();
    let module = rt.load(&hostile("(loop $l (br $l))")).unwrap();
    let cancel = CancelToken::new();
    let c2 = cancel.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        c2.cancel();
    });
    let opts = RunOptions {
        instances: 2,
        cancel,
        noise_seed: None,
    };
    let t = std::time::Instant::now();
    let r = rt.run(
        &module,
        &manifest("a_visits_65plus"),
        &[input("outpatients", table())],
        &opts,
    );
    assert_eq!(r.report.outcome, Outcome::Cancelled);
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[test]
fn too_many_groups_is_a_typed_outcome() {
    let wasm = std::fs::read(examples().join("a_visits_65plus.wat")).unwrap();
    let rt = Runtime::new(
        Limits {
            max_groups: 5,
            ..Limits::default()
        },
        None,
    )
    .unwrap();
    let module = rt.load(&wasm).unwrap();
    let r = rt.run(
        &module,
        &manifest("a_visits_65plus"),
        &[input("outpatients", table())],
        &RunOptions::default(),
    );
    assert!(
        matches!(r.report.outcome, Outcome::TooManyGroups { .. }),
        "{:?}",
        r.report.outcome
    );
    let rt = Runtime::new(
        Limits {
            max_person_cells: 100,
            ..Limits::default()
        },
        None,
    )
    .unwrap();
    let module = rt.load(&wasm).unwrap();
    let r = rt.run(
        &module,
        &manifest("a_visits_65plus"),
        &[input("outpatients", table())],
        &RunOptions::default(),
    );
    assert!(
        matches!(r.report.outcome, Outcome::TooManyGroups { .. }),
        "{:?}",
        r.report.outcome
    );
}

#[test]
fn hostile_recursion_and_random_bytes_never_harm_the_host() {
    let deep = br#"(module (memory (export "memory") 1)
        (func $f (result i32) (call $f))
        (func (export "dataop_main") (result i32) (call $f)))"#;
    match run_hostile(deep, Limits::default()) {
        Outcome::GuestTrap { message } => assert!(message.contains("stack"), "{message}"),
        o => panic!("{o:?}"),
    }
    let imported_memory = br#"(module (import "dataop" "memory" (memory 1))
        (func (export "dataop_main") (result i32) (i32.const 0)))"#;
    assert!(matches!(
        run_hostile(imported_memory, Limits::default()),
        Outcome::Refused { .. }
    ));
    let mut x = 0x1234_5678_9abc_def0u64;
    let rt = runtime();
    for len in 0..200usize {
        let mut bytes = b"\0asm\x01\0\0\0".to_vec();
        for _ in 0..len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            bytes.push(x as u8);
        }
        assert!(rt.load(&bytes).is_err());
    }
}

#[test]
fn runtime_and_modules_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Runtime>();
    assert_send_sync::<dataop_sandbox::JobModule>();
    assert_send_sync::<CancelToken>();
    assert_send_sync::<DatasetInput>();
}
