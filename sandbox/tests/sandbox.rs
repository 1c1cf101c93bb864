//! End-to-end tests of the sandbox (ABI v2): the example jobs (C, built by clang into the
//! checked-in `.wasm` files, and WAT), parallel and deterministic runs, columnar versions, and
//! hostile modules. Each hostile test says what it tries and what stops it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use dataop_sandbox::columnar::{Cell, VersionReader, VersionWriter};
use dataop_sandbox::manifest::check_policy;
use dataop_sandbox::source::TableSource;
use dataop_sandbox::{
    CancelToken, DatasetInput, Limits, Manifest, MemColumn, MemTable, Outcome, RunOptions, Runtime,
    demo,
};

mod common;

use common::*;

#[test]
fn example_a_in_wat_matches_native_and_is_split_invariant() {
    let wasm = example("a_visits_65plus.wat");
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
    let m = manifest("a_visits_65plus");
    let inputs = [input("outpatients", table())];
    let c = run(&example("a_visits_65plus.wasm"), &m, &inputs, 2);
    check_a(&c);
    let wat = run(&example("a_visits_65plus.wat"), &m, &inputs, 1);
    assert_eq!(c.output.unwrap(), wat.output.unwrap());
}

#[test]
fn example_b_clamps_bounds_and_means() {
    let wasm = example("b_cost_by_chapter_sex.wasm");
    let m = manifest("b_cost_by_chapter_sex");
    let inputs = [input("outpatients", table())];
    let r = run(&wasm, &m, &inputs, 2);
    finished(&r);
    let out = r.output.unwrap();
    let agg = &out.aggregates[0];
    assert_eq!(agg.cells.len(), 22 * 2);
    assert_eq!(agg.cells[0].key, vec!["I".to_string(), "M".to_string()]);
    let released: Vec<_> = agg
        .cells
        .iter()
        .filter(|c| !c.suppressed && !c.dominated)
        .collect();
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
        "icd10_chapter,sex,suppressed,dominated,count,persons,sum_total_cost,mean_total_cost\n"
    ));
    let single = run(&wasm, &m, &inputs, 1).output.unwrap();
    assert_eq!(single.to_json(), out.to_json());
}

#[test]
fn example_c_adds_noise_and_decides_suppression_on_noisy_counts() {
    let wasm = example("b_cost_by_chapter_sex.wasm");
    let inputs = [input("outpatients", table())];
    let plain = run(&wasm, &manifest("b_cost_by_chapter_sex"), &inputs, 1);
    let m = manifest("c_cost_by_chapter_sex_dp");
    let r = run(&wasm, &m, &inputs, 1);
    finished(&r);
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
    // Under epsilon no cell is withheld by dominance (the noise covers single persons).
    assert!(b.aggregates[0].cells.iter().all(|c| !c.dominated));
}

/// Example (d) via the per-person stage: patients 65+ seen in both datasets, by their number
/// of outpatient visits, against a native reference.
#[test]
fn example_d_links_two_datasets_host_side_in_the_person_stage() {
    let m = manifest("d_patients_two_datasets");
    let out_t = table();
    let in_t = Arc::new(demo::outpatients(5_000, 3_000, 2));
    let inputs = [
        input("outpatients", out_t.clone()),
        input("inpatients", in_t.clone()),
    ];
    let r = run(&example("d_patients_two_datasets.wasm"), &m, &inputs, 2);
    finished(&r);
    assert_eq!(r.report.rows_read, 35_000);
    let count = |t: &MemTable| {
        let mut per: BTreeMap<u64, i64> = BTreeMap::new();
        for i in 0..t.rows() as usize {
            let age = i64s(t, 3)[i];
            if age >= 65 {
                *per.entry(u64s(t, 0)[i]).or_default() += 1;
            }
        }
        per
    };
    let (outs, ins) = (count(&out_t), count(&in_t));
    let mut expected = [0i64; 3];
    for (p, &n) in &outs {
        if ins.contains_key(p) {
            expected[if n >= 5 {
                2
            } else if n >= 2 {
                1
            } else {
                0
            }] += 1;
        }
    }
    let out = r.output.unwrap();
    let cells = &out.aggregates[0].cells;
    assert_eq!(cells.len(), 3);
    for (c, &e) in cells.iter().zip(&expected) {
        if e >= 10 {
            assert_eq!(c.persons, Some(e), "{c:?}");
            assert_eq!(c.count, Some(e));
        } else {
            assert!(c.suppressed);
        }
    }
    assert!(expected.iter().any(|&e| e >= 10), "{expected:?}");
}

/// Examples (b), (c) and (d) in WAT release what their C twins release on the demo data. (c)
/// has no module of its own: it is (b)'s module under a manifest that declares an epsilon, and
/// the same noise seed over the same exact totals gives the same noisy release.
#[test]
fn examples_b_c_d_in_wat_release_what_their_c_twins_release() {
    let outpatients = input("outpatients", table());
    let inpatients = input("inpatients", Arc::new(demo::outpatients(5_000, 3_000, 2)));
    let one = [outpatients.clone()];
    let two = [outpatients, inpatients];
    for (module, manifest_name, inputs) in [
        ("b_cost_by_chapter_sex", "b_cost_by_chapter_sex", &one[..]),
        (
            "b_cost_by_chapter_sex",
            "c_cost_by_chapter_sex_dp",
            &one[..],
        ),
        (
            "d_patients_two_datasets",
            "d_patients_two_datasets",
            &two[..],
        ),
    ] {
        let m = manifest(manifest_name);
        let c = run(&example(&format!("{module}.wasm")), &m, inputs, 2);
        let wat = run(&example(&format!("{module}.wat")), &m, inputs, 1);
        finished(&c);
        finished(&wat);
        assert!(c.report.cells_released > 0, "{manifest_name}");
        assert_eq!(c.output.unwrap(), wat.output.unwrap(), "{manifest_name}");
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
    let wasm = example("a_visits_65plus.wat");
    let m = manifest("a_visits_65plus");
    let from_disk = run(&wasm, &m, &[input("outpatients", reader)], 2);
    let from_mem = run(&wasm, &m, &[input("outpatients", Arc::new(t))], 1);
    finished(&from_disk);
    assert_eq!(from_disk.output.unwrap(), from_mem.output.unwrap());
}

// ---- hostile modules -------------------------------------------------------------------------

/// Cross-row state: a guest that could remember a value from one row and emit it for others
/// could pad thousands of contributions with one person's value. Every kind of state wasm
/// has is tried; each is refused at validation, naming why, before anything runs.
#[test]
fn hostile_cross_row_state_through_every_kind_of_mutable_state_is_refused() {
    let keep = "(i32.const 1)";
    let cases: &[(&str, &str, &str)] = &[
        // Memory: store the age of the current row for the next one.
        (
            "(memory 1)",
            "(i64.store (i32.const 0) (local.get $age)) (i32.const 1)",
            "store",
        ),
        (
            "(memory 1)",
            "(i32.store8 (i32.const 0) (i32.const 1)) (i32.const 1)",
            "store",
        ),
        // A global counter of rows seen: refused for defining a mutable global at all.
        (
            "(global $g (mut i32) (i32.const 0))",
            "(global.set $g (i32.add (global.get $g) (i32.const 1))) (i32.const 1)",
            "mutable",
        ),
        // A mutable global never set (as clang's `__stack_pointer` would be) is refused too.
        (
            "(global $sp (mut i32) (i32.const 1024))",
            "(i32.const 1)",
            "mutable",
        ),
        // The memory's size as a counter.
        (
            "(memory 1)",
            "(drop (memory.grow (i32.const 1))) (i32.const 1)",
            "memory.grow",
        ),
        // Bulk memory: fill or copy.
        (
            "(memory 1)",
            "(memory.fill (i32.const 0) (i32.const 7) (i32.const 1)) (i32.const 1)",
            "outside ABI v2",
        ),
        // Tables as state.
        (
            "(table $t 1 funcref)",
            "(table.set $t (i32.const 0) (ref.null func)) (i32.const 1)",
            "outside ABI v2",
        ),
        (
            "(table $t 1 funcref)",
            "(drop (table.grow $t (ref.null func) (i32.const 1))) (i32.const 1)",
            "outside ABI v2",
        ),
        // Passive data segments dropped as a one-bit latch.
        (
            "(memory 1) (data $d \"x\")",
            "(data.drop $d) (i32.const 1)",
            "outside ABI v2",
        ),
        // Atomics and shared memory.
        (
            "(memory 1 1 shared)",
            "(drop (i32.atomic.rmw.add (i32.const 0) (i32.const 1))) (i32.const 1)",
            "outside ABI v2",
        ),
        // A second memory.
        ("(memory 1) (memory 1)", "(i32.const 1)", "outside ABI v2"),
        // SIMD stores.
        (
            "(memory 1)",
            "(v128.store (i32.const 0) (v128.const i64x2 0 0)) (i32.const 1)",
            "v128.store",
        ),
    ];
    for (extra, key, needle) in cases {
        let reason = refusal(&row_module(extra, keep, key));
        assert!(reason.contains(needle), "{extra} {key}: {reason}");
    }
    // A start function could prepare state before the first row.
    let start = br#"(module (memory 1) (func $s) (start $s)
        (func (export "visits_by_district.district") (param i64 i32) (result i32) (local.get 1)))"#;
    assert!(refusal(start).contains("start function"));
    // Reading constant data (a lookup table) and immutable globals stays allowed.
    let lut = row_module(
        r#"(memory 1) (data (i32.const 0) "\00\00\00\00") (global $zero i32 (i32.const 0))"#,
        "(i32.and (i32.eqz (i32.add (global.get $zero) (i32.load (i32.const 0)))) (i32.and (i64.ge_s (local.get $age) (i64.const 65)) (i32.ne (local.get $district) (i32.const -1))))",
        "(local.get $district)",
    );
    check_a(&run_a(&lut, table()));
}

/// Imports are how v1 handed a guest its data and its output; v2 modules import nothing, and
/// v1 modules and manifests are refused naming ABI v2.
#[test]
fn hostile_imports_and_v1_modules_are_refused_naming_abi_v2() {
    let wasi = br#"(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32))))"#;
    let reason = refusal(wasi);
    assert!(
        reason.contains("wasi_snapshot_preview1::fd_write"),
        "{reason}"
    );
    let v1 = br#"(module (import "dataop" "next_batch" (func (param i32 i32) (result i32)))
        (memory (export "memory") 1) (func (export "dataop_main") (result i32) (i32.const 0)))"#;
    let reason = refusal(v1);
    assert!(
        reason.contains("ABI v2") && reason.contains("dataop::next_batch"),
        "{reason}"
    );
    let imported_memory = br#"(module (import "env" "memory" (memory 1)))"#;
    assert!(refusal(imported_memory).contains("env::memory"));
    let err = Manifest::from_toml("abi = 1\nname = \"x\"\n").unwrap_err();
    assert!(
        err.contains("ABI v1 is retired") && err.contains("ABI v2"),
        "{err}"
    );
}

/// Cell pattern: a module that recognises the target's row (here: the only person with age
/// 101) and sends it to the cell `district` chosen by a secret, so that only that cell is
/// populated. The target alone is below k, so the cell is suppressed like every small cell,
/// and the released table is the same whatever the target's secret is.
#[test]
fn hostile_cell_pattern_reveals_nothing_about_one_person() {
    let target_table = |district: u32| {
        let n = 2_000usize;
        let mut cols = vec![
            MemColumn::U64((0..n as u64).map(|i| i / 2).collect()),
            MemColumn::U64((0..n as u64).collect()),
            MemColumn::U32((0..n as u32).map(|i| i % 3).collect()),
            MemColumn::I64((0..n as i64).map(|i| 65 + i % 30).collect()),
            MemColumn::U32(vec![0; n]),
            MemColumn::I32(vec![0; n]),
            MemColumn::U32(vec![0; n]),
            MemColumn::U32(vec![0; n]),
            MemColumn::I64(vec![100; n]),
            MemColumn::I64(vec![100; n]),
        ];
        // The target: person 5000 (one row), aged 101, in the secret district.
        if let MemColumn::U64(v) = &mut cols[0] {
            v[7] = 5000;
        }
        if let MemColumn::I64(v) = &mut cols[3] {
            v[7] = 101;
        }
        if let MemColumn::U32(v) = &mut cols[2] {
            v[7] = district;
        }
        Arc::new(MemTable::new(demo::outpatient_columns(), cols).unwrap())
    };
    // Keep only the target's row; its cell is its (secret) district.
    let wasm = row_module(
        "",
        "(i64.eq (local.get $age) (i64.const 101))",
        "(local.get $district)",
    );
    let a = run_a(&wasm, target_table(5));
    let b = run_a(&wasm, target_table(9));
    finished(&a);
    assert_eq!(a.report.cells_released, 0);
    assert_eq!(
        a.output.unwrap().to_json(),
        b.output.unwrap().to_json(),
        "the secret district changes nothing released"
    );
}

/// Padding: in v1 a guest could copy one person's value into thousands of other people's
/// contributions. In v2 a measure is a function of its own row only: a module that gives every
/// row the value of the target's row cannot, because it never sees that row while handling
/// another; what it can do (an arbitrary function of each row) is bounded per person by the
/// host. Here every row's measure is clamped to the declared bounds and each person's cell sum
/// to C x max, whatever the module returns.
#[test]
fn hostile_measures_are_clamped_per_row_and_per_person() {
    let wasm = br#"(module
      (func (export "cost_by_chapter_sex.keep") (param i32 i32 i64) (result i32) (i32.const 1))
      (func (export "cost_by_chapter_sex.icd10_chapter") (param i32 i32 i64) (result i32) (i32.const 0))
      (func (export "cost_by_chapter_sex.sex") (param i32 i32 i64) (result i32) (i32.const 0))
      (func (export "cost_by_chapter_sex.total_cost") (param i32 i32 i64) (result i64) (i64.const 9223372036854775807)))"#;
    let m = manifest("b_cost_by_chapter_sex");
    let r = run(wasm, &m, &[input("outpatients", table())], 2);
    finished(&r);
    let out = r.output.unwrap();
    let c = &out.aggregates[0].cells[0];
    let persons = c.persons.unwrap();
    // Every row clamped to 5000.00; each person's count to 20: sum = count x 5000.
    let sum: f64 = c.sums[0].parse().unwrap();
    assert_eq!(sum, c.count.unwrap() as f64 * 5000.0);
    assert!(c.count.unwrap() <= persons * 20);
}

/// Linkage: in v1 the distinct-person count of one cell fed by rows of two datasets told
/// whether two rows were the same person. In v2 a row-stage aggregate reads one dataset, and
/// linking happens host-side in the per-person stage, whose output is thresholded like any
/// other: whether the target is in both datasets changes nothing released.
#[test]
fn hostile_linkage_across_datasets_is_not_an_oracle() {
    let base = demo::outpatients(3_000, 1_000, 4);
    let with_target = |linked: bool| {
        let mut cols: Vec<MemColumn> = (0..10).map(|c| base.column(c).unwrap().clone()).collect();
        if let MemColumn::U64(v) = &mut cols[0] {
            v[0] = if linked { 777_777 } else { 888_888 };
        }
        if let MemColumn::I64(v) = &mut cols[3] {
            v[0] = 99;
        }
        Arc::new(MemTable::new(demo::outpatient_columns(), cols).unwrap())
    };
    let target_elsewhere = {
        let mut cols: Vec<MemColumn> = (0..10)
            .map(|c| demo::outpatients(500, 400, 8).column(c).unwrap().clone())
            .collect();
        if let MemColumn::U64(v) = &mut cols[0] {
            v[0] = 777_777;
        }
        if let MemColumn::I64(v) = &mut cols[3] {
            v[0] = 99;
        }
        Arc::new(MemTable::new(demo::outpatient_columns(), cols).unwrap())
    };
    // Keep only the target's rows (age 99) in both inputs; count persons in both.
    let wasm = br#"(module
      (func (export "person.outpatients.keep") (param i64 i32) (result i32) (i64.eq (local.get 0) (i64.const 99)))
      (func (export "person.inpatients.keep") (param i64 i32) (result i32) (i64.eq (local.get 0) (i64.const 99)))
      (func (export "patients_in_both.keep") (param i64 i64) (result i32)
        (i32.and (i64.gt_s (local.get 0) (i64.const 0)) (i64.gt_s (local.get 1) (i64.const 0))))
      (func (export "patients_in_both.outpatient_visits") (param i64 i64) (result i32) (i32.const 0)))"#;
    let m = manifest("d_patients_two_datasets");
    let go = |linked| {
        run(
            wasm,
            &m,
            &[
                input("outpatients", with_target(linked)),
                input("inpatients", target_elsewhere.clone()),
            ],
            1,
        )
    };
    let (yes, no) = (go(true), go(false));
    finished(&yes);
    assert_eq!(yes.output.unwrap().to_json(), no.output.unwrap().to_json());
}

/// Outcome and report channels: a guest that traps on a secret value, with a function name
/// that spells a message, and that returns keys out of the domain. The operator's view names
/// only the outcome's kind and coarse figures: no message, no function name, no exact counts.
#[test]
fn hostile_outcome_and_report_channels_give_the_operator_nothing_guest_chosen() {
    let wasm = br#"(module
      (func $secret_is_age_77_in_district_330102 (param i64) (result i32)
        (if (i64.eq (local.get 0) (i64.const 77)) (then unreachable)) (i32.const 1))
      (func (export "visits_by_district.keep") (param $age i64) (param $district i32) (result i32)
        (call $secret_is_age_77_in_district_330102 (local.get $age)))
      (func (export "visits_by_district.district") (param $age i64) (param $district i32) (result i32)
        (i32.const 12345)))"#;
    let r = run_a(wasm, table());
    let staff = r.report.to_json();
    assert!(
        matches!(r.report.outcome, Outcome::GuestTrap { .. }),
        "{staff}"
    );
    // The operator is told it stopped (not that it trapped: the kinds a guest can bring about
    // are one), and the rows of the data as rows read, not how far the instances got.
    let operator = serde_json::to_string(&r.report.for_operator()).unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&operator).unwrap(),
        serde_json::json!({"outcome": "stopped", "rows_read": 30_000,
            "cells_released": 0, "cells_suppressed": 0, "elapsed_s": 1})
    );
    assert!(!operator.contains("secret") && !operator.contains("12345"));
    let parallel = run(
        wasm,
        &manifest("a_visits_65plus"),
        &[input("outpatients", table())],
        4,
    );
    assert!(
        parallel.report.rows_read < 30_000,
        "{}",
        parallel.report.to_json()
    );
    assert_eq!(parallel.report.for_operator().rows_read, 30_000);
    // Out-of-domain keys drop rows (counted for staff only), they do not stop the run.
    let ood = row_module("", "(i32.const 1)", "(i32.const 12345)");
    let r = run_a(&ood, table());
    finished(&r);
    assert_eq!(r.report.contributions_out_of_domain, 30_000);
    assert_eq!(r.report.for_operator().cells_released, 0);
}

/// Huge and tiny epsilon, huge bounds: the noise scale must stay one the sampler draws
/// exactly, and the per-person bounds within the platform's caps.
#[test]
fn hostile_epsilon_and_bounds_outside_the_platform_range_are_refused() {
    let inputs = [input("outpatients", table())];
    let base = manifest("c_cost_by_chapter_sex_dp");
    for (eps, needle) in [(1e-300, "range"), (0.001, "range"), (11.0, "range")] {
        let mut m = base.clone();
        m.aggregates[0].epsilon = Some(eps);
        let r = plan_refusal(&m, &inputs);
        assert!(r.contains(needle) && r.contains("[0.01, 10]"), "{eps}: {r}");
    }
    let nan = std::fs::read_to_string(examples().join("c_cost_by_chapter_sex_dp.toml"))
        .unwrap()
        .replace("epsilon = 1.0", "epsilon = nan");
    assert!(
        Manifest::from_toml(&nan)
            .unwrap_err()
            .contains("not a number")
    );
    let mut m = base.clone();
    m.aggregates[0].max_rows_per_person_cell = u32::MAX;
    assert!(plan_refusal(&m, &inputs).contains("max_rows_per_person_cell"));
    let mut m = base.clone();
    m.aggregates[0].max_cells_per_person = 17;
    assert!(plan_refusal(&m, &inputs).contains("max_cells_per_person"));
    let huge = std::fs::read_to_string(examples().join("c_cost_by_chapter_sex_dp.toml"))
        .unwrap()
        .replace("max = 5000", "max = 1e300");
    assert!(Manifest::from_toml(&huge).unwrap_err().contains("10^12"));
}

/// The release policy of the datasets' grades: grade 3 needs epsilon, grade 4 a smaller one
/// and a larger k; each refusal names the rule and the grade.
#[test]
fn release_policy_per_grade_is_enforced_and_named() {
    let t: Arc<dyn TableSource> = table();
    let plain = manifest("b_cost_by_chapter_sex");
    let r = plan_refusal(&plain, &[graded("outpatients", t.clone(), 3)]);
    assert!(
        r.contains("grade 3") && r.contains("differential privacy"),
        "{r}"
    );
    let dp = manifest("c_cost_by_chapter_sex_dp");
    let r = plan_refusal(&dp, &[graded("outpatients", t.clone(), 4)]);
    assert!(r.contains("grade 4") && r.contains("0.5"), "{r}");
    let mut small = dp.clone();
    small.aggregates[0].epsilon = Some(0.5);
    let ok = run(
        &example("b_cost_by_chapter_sex.wasm"),
        &small,
        &[graded("outpatients", t.clone(), 4)],
        1,
    );
    finished(&ok);
    assert_eq!(ok.output.unwrap().aggregates[0].k, 20);
    let fine = run(
        &example("b_cost_by_chapter_sex.wasm"),
        &dp,
        &[graded("outpatients", t, 3)],
        1,
    );
    finished(&fine);
}

/// Epsilon is capped per release, not per aggregate: sixteen aggregates of ε 0.5 spend 8 on a
/// grade-4 dataset, whose cap is 0.5; the refusal names the rule and the grade. Aggregates
/// reading another dataset count against that dataset's grade only.
#[test]
fn epsilon_is_capped_per_release_summed_over_its_aggregates() {
    let t: Arc<dyn TableSource> = table();
    let mut many = manifest("c_cost_by_chapter_sex_dp");
    many.aggregates[0].epsilon = Some(0.5);
    for i in 1..16 {
        let mut a = many.aggregates[0].clone();
        a.name = format!("more_{i}");
        many.aggregates.push(a);
    }
    let r = plan_refusal(&many, &[graded("outpatients", t.clone(), 4)]);
    assert!(
        r.contains("spend epsilon 8 together")
            && r.contains("0.5, the most the release policy of grade 4 allows per release"),
        "{r}"
    );
    // Five aggregates of 0.1 are 0.5 exactly, within the cap (no rounding up to a refusal).
    let mut five = many.clone();
    five.aggregates.truncate(5);
    for a in &mut five.aggregates {
        a.epsilon = Some(0.1);
        a.k = Some(20);
    }
    let grade = |g: u8| move |_: &str| Some(g);
    let limits = Limits::default();
    assert!(check_policy(&five, &grade(4), &limits).is_empty());
    five.aggregates[0].epsilon = Some(0.2);
    let refused = check_policy(&five, &grade(4), &limits);
    assert_eq!(refused.len(), 1);
    assert_eq!((refused[0].rule(), refused[0].grade), ("epsilon_cap", 4));
    // Per dataset: ε 5 on a grade-1 dataset does not count against a grade-4 one.
    let two = Manifest::from_toml(
        r#"abi = 2
name = "two"
[[datasets]]
name = "open"
columns = []
[[datasets]]
name = "secret"
columns = []
[[aggregates]]
name = "of_open"
dataset = "open"
k = 20
epsilon = 5.0
[[aggregates]]
name = "of_secret"
dataset = "secret"
k = 20
epsilon = 0.5
"#,
    )
    .unwrap();
    let grades = |d: &str| Some(if d == "open" { 1 } else { 4 });
    assert!(check_policy(&two, &grades, &limits).is_empty());
}

/// A grade may require differential privacy for measures alone (`dp_for_measures`): exact
/// sums of values the guest computes can be padded to give one person's value back (ABI.md
/// §0.6). Counts without noise stay allowed on that grade.
#[test]
fn dp_for_measures_refuses_exact_sums_and_keeps_exact_counts() {
    let mut limits = Limits {
        timeout: Duration::from_secs(20),
        ..Limits::default()
    };
    limits.grades[1].dp_for_measures = true;
    let rt = Runtime::new(limits, None).unwrap();
    let go = |wasm: &[u8], m: &Manifest| {
        let module = rt.load(wasm).unwrap();
        rt.run(
            &module,
            m,
            &[graded("outpatients", table(), 2)],
            &RunOptions {
                instances: 1,
                ..RunOptions::default()
            },
        )
    };
    let r = go(
        &example("b_cost_by_chapter_sex.wasm"),
        &manifest("b_cost_by_chapter_sex"),
    );
    assert!(
        matches!(&r.report.outcome, Outcome::Refused { reason }
            if reason.contains("release policy of grade 2 requires differential privacy for sums and means")),
        "{:?}",
        r.report.outcome
    );
    finished(&go(
        &example("b_cost_by_chapter_sex.wasm"),
        &manifest("c_cost_by_chapter_sex_dp"),
    ));
    finished(&go(
        &example("a_visits_65plus.wat"),
        &manifest("a_visits_65plus"),
    ));
}

/// A planted compiled module: a file in the cache directory under the name of an approved
/// module's hash, holding another module's code. It carries no valid tag, so it is ignored and
/// the approved module recompiled.
#[test]
fn hostile_planted_cache_file_is_not_run() {
    let dir = tmpdir("cache");
    let key = b"a key of the data dir";
    let approved = example("a_visits_65plus.wat");
    let other = row_module("", "(i32.const 1)", "(i32.const 0)");
    let rt = Runtime::new(Limits::default(), Some((&dir, key))).unwrap();
    let report = rt
        .check(
            &approved,
            &std::fs::read_to_string(examples().join("a_visits_65plus.toml")).unwrap(),
        )
        .unwrap();
    let other_sha = rt.load(&other).unwrap().sha256().to_string();
    drop(rt);
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");
    let find = |sha: &str| {
        files
            .iter()
            .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(sha))
            .unwrap()
            .clone()
    };
    let (approved_file, other_file) = (find(&report.sha256), find(&other_sha));
    // Plant the other module's compiled code (with its own valid tag) under the approved name,
    // and an untagged copy too: neither may run.
    for planted in [std::fs::read(&other_file).unwrap(), {
        let mut b = std::fs::read(&other_file).unwrap();
        b.truncate(b.len() - 32);
        b
    }] {
        std::fs::write(&approved_file, planted).unwrap();
        let rt = Runtime::new(Limits::default(), Some((&dir, key))).unwrap();
        let module = rt.load(&approved).unwrap();
        let r = rt.run(
            &module,
            &manifest("a_visits_65plus"),
            &[input("outpatients", table())],
            &RunOptions::default(),
        );
        check_a(&r);
    }
    // Under another key every file is a stranger: recompiled, still right.
    let rt = Runtime::new(Limits::default(), Some((&dir, b"another key"))).unwrap();
    let module = rt.load(&approved).unwrap();
    check_a(&rt.run(
        &module,
        &manifest("a_visits_65plus"),
        &[input("outpatients", table())],
        &RunOptions::default(),
    ));
}

/// Dominance: one person makes up most of a cell's cost; without noise the cell's sums and
/// means are withheld (its counts released), and it says why.
#[test]
fn dominant_person_withholds_the_cells_sums() {
    let n = 40usize;
    let cols = vec![
        MemColumn::U64((0..n as u64).collect()),
        MemColumn::U64((0..n as u64).collect()),
        MemColumn::U32(vec![0; n]),
        MemColumn::I64(vec![70; n]),
        MemColumn::U32(vec![0; n]),
        MemColumn::I32(vec![0; n]),
        MemColumn::U32(vec![0; n]),
        MemColumn::U32(vec![0; n]),
        MemColumn::I64(
            (0..n)
                .map(|i| if i == 0 { 500_000 } else { 1_000 })
                .collect(),
        ),
        MemColumn::I64(vec![0; n]),
    ];
    let t = Arc::new(MemTable::new(demo::outpatient_columns(), cols).unwrap());
    let r = run(
        &example("b_cost_by_chapter_sex.wasm"),
        &manifest("b_cost_by_chapter_sex"),
        &[input("outpatients", t)],
        1,
    );
    finished(&r);
    let out = r.output.unwrap();
    let c = &out.aggregates[0].cells[0];
    assert!(!c.suppressed && c.dominated, "{c:?}");
    assert_eq!((c.count, c.persons), (Some(40), Some(40)));
    assert!(c.sums.is_empty() && c.means.is_empty());
    assert_eq!(r.report.aggregates[0].cells_dominated, 1);
    assert!(out.to_json().contains("\"dominated\": true"));
}

/// With epsilon, which cells are released is decided on the noisy distinct count: across
/// seeds an empty cell is sometimes released and a cell of exactly k persons sometimes
/// suppressed, so the released set carries no exact threshold decision.
#[test]
fn with_epsilon_the_threshold_uses_the_noisy_count() {
    let n = 10usize; // ten persons, all in district 0: exactly k.
    let cols = vec![
        MemColumn::U64((0..n as u64).collect()),
        MemColumn::U64((0..n as u64).collect()),
        MemColumn::U32(vec![0; n]),
        MemColumn::I64(vec![70; n]),
        MemColumn::U32(vec![0; n]),
        MemColumn::I32(vec![0; n]),
        MemColumn::U32(vec![0; n]),
        MemColumn::U32(vec![0; n]),
        MemColumn::I64(vec![1000; n]),
        MemColumn::I64(vec![0; n]),
    ];
    let t: Arc<dyn TableSource> =
        Arc::new(MemTable::new(demo::outpatient_columns(), cols).unwrap());
    let mut m = manifest("a_visits_65plus");
    m.aggregates[0].epsilon = Some(1.0);
    let module = runtime().load(&example("a_visits_65plus.wat")).unwrap();
    let (mut k_cell_suppressed, mut empty_released) = (false, false);
    for seed in 0..200 {
        let r = runtime().run(
            &module,
            &m,
            &[input("outpatients", t.clone())],
            &RunOptions {
                instances: 1,
                noise_seed: Some(seed),
                ..RunOptions::default()
            },
        );
        let out = r.output.unwrap();
        let cells = &out.aggregates[0].cells;
        k_cell_suppressed |= cells[0].suppressed;
        empty_released |= cells[1..].iter().any(|c| !c.suppressed);
    }
    assert!(k_cell_suppressed && empty_released);
}

/// The members of released cells (for the platform's differencing guard) are exactly each
/// cell's distinct persons; none are kept under epsilon.
#[test]
fn members_of_released_cells_are_kept_for_the_differencing_guard() {
    let module = runtime().load(&example("a_visits_65plus.wat")).unwrap();
    let m = manifest("a_visits_65plus");
    let opts = RunOptions {
        instances: 2,
        members: true,
        ..RunOptions::default()
    };
    let r = runtime().run(&module, &m, &[input("outpatients", table())], &opts);
    finished(&r);
    let out = r.output.unwrap();
    let released: Vec<_> = out.aggregates[0]
        .cells
        .iter()
        .enumerate()
        .filter(|(_, c)| !c.suppressed)
        .collect();
    assert_eq!(r.members[0].len(), released.len());
    for ((cell, members), (i, c)) in r.members[0].iter().zip(&released) {
        assert_eq!(*cell as usize, *i);
        assert_eq!(members.len() as i64, c.persons.unwrap());
        assert!(members.windows(2).all(|w| w[0] < w[1]));
    }
    let all: BTreeSet<u64> = r.members[0]
        .iter()
        .flat_map(|(_, m)| m.iter().copied())
        .collect();
    assert_eq!(
        all.len(),
        r.members[0].iter().map(|(_, m)| m.len()).sum::<usize>()
    );
}

#[test]
fn hostile_signatures_that_do_not_match_the_columns_are_refused() {
    // `age` is an integer column (i64): a function taking (i32, i32) does not fit.
    let wrong = br#"(module
      (func (export "visits_by_district.district") (param i32 i32) (result i32) (i32.const 0)))"#;
    let r = run_a(wrong, table());
    assert!(
        matches!(&r.report.outcome, Outcome::Refused { reason } if reason.contains("(i64 i32) -> i32")),
        "{:?}",
        r.report.outcome
    );
    let missing = br#"(module)"#;
    let r = run_a(missing, table());
    assert!(
        matches!(&r.report.outcome, Outcome::Refused { reason } if reason.contains("visits_by_district.district")),
        "{:?}",
        r.report.outcome
    );
}

#[test]
fn hostile_infinite_loops_recursion_and_random_bytes_never_harm_the_host() {
    let rt = Runtime::new(
        Limits {
            timeout: Duration::from_millis(300),
            ..Limits::default()
        },
        None,
    )
    .unwrap();
    let spin = row_module("", "(loop $l (br $l)) (i32.const 1)", "(i32.const 0)");
    let module = rt.load(&spin).unwrap();
    let r = rt.run(
        &module,
        &manifest("a_visits_65plus"),
        &[input("outpatients", table())],
        &RunOptions::default(),
    );
    assert_eq!(r.report.outcome, Outcome::OutOfTime);
    let deep = br#"(module (func $f (param i64) (result i32) (call $f (local.get 0)))
      (func (export "visits_by_district.district") (param i64 i32) (result i32) (call $f (local.get 0))))"#;
    let r = run_a(deep, table());
    assert!(
        matches!(r.report.outcome, Outcome::GuestTrap { .. }),
        "{:?}",
        r.report.outcome
    );
    let mut x = 0x1234_5678_9abc_def0u64;
    for len in 0..200usize {
        let mut bytes = b"\0asm\x01\0\0\0".to_vec();
        for _ in 0..len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            bytes.push(x as u8);
        }
        // Random bytes are refused, or (rarely, as a valid module with no functions) refused at
        // the run for lack of the functions the manifest needs.
        if let Ok(module) = runtime().load(&bytes) {
            let r = runtime().run(
                &module,
                &manifest("a_visits_65plus"),
                &[input("outpatients", table())],
                &RunOptions::default(),
            );
            assert!(matches!(r.report.outcome, Outcome::Refused { .. }), "{len}");
        }
    }
}

#[test]
fn one_person_groups_are_all_suppressed_and_counted() {
    let n = 13;
    let t = MemTable::new(
        demo::outpatient_columns(),
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
    let mut m = manifest("a_visits_65plus");
    m.aggregates[0].k = Some(1); // raised to the platform floor of 10
    let r = run(
        &example("a_visits_65plus.wat"),
        &m,
        &[input("outpatients", Arc::new(t))],
        1,
    );
    finished(&r);
    assert_eq!(r.report.cells_suppressed, 13);
    assert_eq!(r.report.cells_released, 0);
    let out = r.output.unwrap();
    assert_eq!(out.aggregates[0].k, 10);
    assert!(
        out.aggregates[0]
            .cells
            .iter()
            .all(|c| c.suppressed && c.count.is_none() && c.persons.is_none())
    );
    assert!(out.to_csv(0).unwrap().contains("330102,true,false,,"));
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
    let module = rt
        .load(&row_module(
            "",
            "(loop $l (br $l)) (i32.const 1)",
            "(i32.const 0)",
        ))
        .unwrap();
    let cancel = CancelToken::new();
    let c2 = cancel.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        c2.cancel();
    });
    let opts = RunOptions {
        instances: 2,
        cancel,
        ..RunOptions::default()
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
fn identifier_privacy_unit_and_undeclared_columns_are_refused() {
    let inputs = [input("outpatients", table())];
    for (column, needle) in [
        ("patient_name", "identifier"),
        ("person_id", "privacy unit"),
        ("nothing", "no such column"),
    ] {
        let mut m = manifest("a_visits_65plus");
        m.datasets[0].columns.push(column.into());
        let r = run(&example("a_visits_65plus.wat"), &m, &inputs, 1);
        assert!(
            matches!(&r.report.outcome, Outcome::Refused { reason } if reason.contains(needle)),
            "{column}: {:?}",
            r.report.outcome
        );
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
