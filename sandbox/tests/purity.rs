//! Hostile guests against guarantee 1 (row-local computation): WebAssembly features that add
//! state or nondeterminism, mutable globals, NaN bits, and padding one person's value into
//! other people's rows. Each test says what it tries and what stops it.

use std::collections::BTreeMap;
use std::sync::Arc;

use dataop_sandbox::{Manifest, MemColumn, MemTable, Output, TableSource, demo};

mod common;

use common::*;

/// Every WebAssembly feature that adds state or nondeterminism, each used by the key function
/// of example (a)'s manifest: exceptions (state carried by a thrown value, and control flow
/// across calls), GC and function references (heap objects and references as state),
/// memory64, relaxed SIMD (results that differ between machines), and the table and segment
/// instructions (a table or a dropped segment as a latch). Each module is refused at
/// validation, naming ABI v2, before anything runs.
#[test]
fn hostile_features_that_add_state_or_nondeterminism_are_refused_at_validation() {
    // `$f` is exported, so `ref.func` may name it without a declaring segment.
    let f = r#"(type $t (func (result i32))) (func $f (export "f") (result i32) (i32.const 0))"#;
    let cases: &[(&str, &str, &str)] = &[
        // Exceptions: a tag, then `throw` caught by the legacy `try` and by `try_table`.
        (
            "(tag $e (param i32))",
            "try (result i32) (throw $e (local.get $district)) catch $e end",
            "exceptions",
        ),
        (
            "(tag $e)",
            "(block $h (try_table (catch_all $h) (throw $e))) (i32.const 0)",
            "exceptions",
        ),
        // GC: a heap object built from the row.
        (
            "(type $s (struct (field (mut i32))))",
            "(struct.get $s 0 (struct.new $s (local.get $district)))",
            "gc",
        ),
        // Function references: a call through a typed reference (refused as an instruction,
        // whatever its operand); a reference to a function at all.
        (f, "(call_ref $t (i32.const 0))", "function references"),
        (f, "(drop (ref.func $f)) (i32.const 0)", "reference types"),
        // Memory64.
        ("(memory i64 1)", "(i32.load (i64.const 0))", "memory64"),
        // Relaxed SIMD: results the specification leaves to the machine.
        (
            "",
            "(i8x16.extract_lane_u 0 (i8x16.relaxed_swizzle (v128.const i64x2 0 0) (v128.const i64x2 0 0)))",
            "relaxed SIMD",
        ),
        (
            "",
            "(i32x4.extract_lane 0 (i32x4.relaxed_trunc_f32x4_s (v128.const f32x4 1 2 3 4)))",
            "relaxed SIMD",
        ),
        // Tables and segments as latches: drop a segment, copy or initialise a table (from
        // an active segment, which the 1.0 core allows).
        (
            &format!("{f} (table 2 funcref) (elem $seg (i32.const 0) func $f)"),
            "(elem.drop $seg) (i32.const 0)",
            "bulk memory",
        ),
        (
            &format!("{f} (table 2 funcref) (elem (i32.const 0) func $f)"),
            "(table.copy (i32.const 1) (i32.const 0) (i32.const 1)) (i32.const 0)",
            "bulk memory",
        ),
        (
            &format!("{f} (table 2 funcref) (elem $seg (i32.const 0) func $f)"),
            "(table.init $seg (i32.const 1) (i32.const 0) (i32.const 1)) (i32.const 0)",
            "bulk memory",
        ),
        // Memory as a latch through bulk copies and a segment copied again.
        (
            "(memory 1) (data $d (i32.const 0) \"x\")",
            "(memory.init $d (i32.const 0) (i32.const 0) (i32.const 1)) (i32.const 0)",
            "bulk memory",
        ),
        (
            "(memory 1)",
            "(memory.copy (i32.const 0) (i32.const 1) (i32.const 1)) (i32.const 0)",
            "bulk memory",
        ),
    ];
    for (extra, key, feature) in cases {
        let reason = refusal(&row_module(extra, "(i32.const 1)", key));
        assert!(
            reason.contains("outside ABI v2") && reason.contains(feature),
            "{extra} {key}: {reason}"
        );
    }
}

/// A mutable global is state a call could leave for the next one, whether the module sets it
/// or not: every mutable global definition is refused (exported or not, of any type), naming
/// the global. The checked-in C examples, built by clang and lld, define none (their build
/// drops wasm-ld's unused `__stack_pointer`) and load.
#[test]
fn hostile_mutable_globals_are_refused_and_the_c_examples_define_none() {
    for global in [
        "(global (mut i32) (i32.const 1024))",
        "(global (mut i64) (i64.const 0))",
        "(global (export \"g\") (mut f64) (f64.const 0))",
        "(global i32 (i32.const 0)) (global (mut v128) (v128.const i64x2 0 0))",
    ] {
        let reason = refusal(&row_module(global, "(i32.const 1)", "(i32.const 0)"));
        assert!(reason.contains("mutable"), "{global}: {reason}");
    }
    for name in [
        "a_visits_65plus",
        "b_cost_by_chapter_sex",
        "d_patients_two_datasets",
    ] {
        let wasm = example(&format!("{name}.wasm"));
        for payload in wasmparser::Parser::new(0).parse_all(&wasm) {
            if let wasmparser::Payload::GlobalSection(globals) = payload.unwrap() {
                for g in globals {
                    assert!(
                        !g.unwrap().ty.mutable,
                        "{name}.wasm defines a mutable global"
                    );
                }
            }
        }
        runtime().load(&wasm).unwrap();
    }
}

/// NaN bits: without canonicalisation a NaN's sign and payload depend on the machine and on
/// the operands (x86 produces a negative default NaN, and propagates an operand's payload),
/// so a guest could read them to make a result that differs between machines or carries bits
/// of its input. The key function below makes NaNs every way it can (0/0 and the square root
/// of a negative number on row values, arithmetic on a NaN carrying the row's age as payload,
/// demotion and promotion, min, and SIMD lanes) and keeps the row's district only when every
/// result has the canonical bits (0x7ff8000000000000, 0x7fc00000); any other bits send the row
/// out of the domain. The engine canonicalises every NaN an instruction produces, so every run
/// releases example (a)'s reference, on 1 or 2 instances.
#[test]
fn hostile_nan_bits_are_canonical_and_the_same_every_run() {
    let key = r#"
      (local $zero f64) (local $payload f64) (local $bad i32)
      (local.set $zero (f64.convert_i64_s (i64.sub (local.get $age) (local.get $age))))
      (local.set $payload (f64.reinterpret_i64
        (i64.or (i64.const 0xfff0000000000000) (i64.add (local.get $age) (i64.const 1)))))
      (local.set $bad (i32.or
        (call $not64 (f64.div (local.get $zero) (local.get $zero)))
        (call $not64 (f64.add (local.get $payload) (f64.const 1)))))
      (local.set $bad (i32.or (local.get $bad)
        (call $not64 (f64.min (local.get $payload) (f64.const 0)))))
      (local.set $bad (i32.or (local.get $bad)
        (call $not32 (f32.sqrt (f32.convert_i64_s (i64.sub (i64.const -1) (local.get $age)))))))
      (local.set $bad (i32.or (local.get $bad)
        (call $not32 (f32.demote_f64 (local.get $payload)))))
      (local.set $bad (i32.or (local.get $bad)
        (call $not64 (f64.promote_f32 (f32.demote_f64 (local.get $payload))))))
      (local.set $bad (i32.or (local.get $bad)
        (call $not64 (f64x2.extract_lane 1
          (f64x2.mul (f64x2.splat (local.get $payload)) (f64x2.splat (f64.const 2)))))))
      (select (i32.const 999) (local.get $district) (local.get $bad))"#;
    let helpers = r#"
      (func $not64 (param f64) (result i32)
        (i64.ne (i64.reinterpret_f64 (local.get 0)) (i64.const 0x7ff8000000000000)))
      (func $not32 (param f32) (result i32)
        (i32.ne (i32.reinterpret_f32 (local.get 0)) (i32.const 0x7fc00000)))"#;
    let keep = "(i32.and (i64.ge_s (local.get $age) (i64.const 65)) (i32.ne (local.get $district) (i32.const -1)))";
    let wasm = row_module(helpers, keep, key);
    let m = manifest("a_visits_65plus");
    let inputs = [input("outpatients", table())];
    let first = run(&wasm, &m, &inputs, 1);
    check_a(&first);
    assert_eq!(first.report.contributions_out_of_domain, 0);
    for instances in [1, 2] {
        let again = run(&wasm, &m, &inputs, instances);
        assert_eq!(again.report.contributions_out_of_domain, 0);
        assert_eq!(
            again.output.unwrap().to_json(),
            first.output.as_ref().unwrap().to_json()
        );
    }
}

/// The manifest of the padding test: per sex, the sum and mean of `total_cost`, each row
/// handed `(age, sex, total_cost)`.
const PADDING: &str = r#"
abi = 2
name = "padding"

[[datasets]]
name = "outpatients"
columns = ["age", "sex", "total_cost"]

[[aggregates]]
name = "padded"
dataset = "outpatients"
k = 10
max_cells_per_person = 1
max_rows_per_person_cell = 100
dimensions = [{ name = "sex", column = "sex" }]
measures = [{ name = "total_cost", scale = 2, min = 0, max = 5000 }]
"#;

/// The padding guest: every row's measure is its own cost plus whatever the module can recall
/// of the target's row (the one aged 101) through each channel a pure module keeps: its
/// memory (read only), an immutable global, a function called through the table; `$leave`
/// is how the target's row would leave its value behind (nothing in the module that loads).
fn padding_guest(leave: &str, extra: &str) -> Vec<u8> {
    format!(
        r#"(module
  (memory 1)
  (data (i32.const 0) "\00\00\00\00\00\00\00\00")
  (global $last i64 (i64.const 0))
  (type $recall (func (result i64)))
  (table 1 funcref)
  (elem (i32.const 0) $from_memory)
  {extra}
  (func $from_memory (result i64) (i64.load (i32.const 0)))
  (func (export "padded.sex") (param $age i64) (param $sex i32) (param $cost i64) (result i32)
    (local.get $sex))
  (func (export "padded.total_cost") (param $age i64) (param $sex i32) (param $cost i64) (result i64)
    (if (result i64) (i64.eq (local.get $age) (i64.const 101))
      (then {leave} (local.get $cost))
      (else
        (i64.add (local.get $cost)
          (i64.add
            (i64.add (i64.load (i32.const 0)) (global.get $last))
            (call_indirect (type $recall) (i32.const 0))))))))"#
    )
    .into_bytes()
}

/// The demo table with its first row made the target's: aged 101, costing `secret` (fixed
/// point).
fn padding_table(secret: i64) -> Arc<MemTable> {
    let base = table();
    let mut cols: Vec<MemColumn> = (0..10).map(|c| base.column(c).unwrap().clone()).collect();
    if let MemColumn::I64(v) = &mut cols[3] {
        v.iter_mut().for_each(|a| *a = (*a).min(100));
        v[0] = 101;
    }
    if let MemColumn::I64(v) = &mut cols[8] {
        v[0] = secret;
    }
    Arc::new(MemTable::new(demo::outpatient_columns(), cols).unwrap())
}

/// The padding guest's functions evaluated row by row, each row in a fresh instance of its
/// own (so nothing can pass from one row to another), then aggregated as ABI.md §4 says:
/// per sex, (count, persons, sum) of the clamped measures, one cell per person (the lowest),
/// at most 100 rows per person and cell.
fn padding_reference(wasm: &[u8], t: &MemTable) -> BTreeMap<u32, (u64, u64, i128)> {
    let engine = wasmtime::Engine::default();
    let module = wasmtime::Module::new(&engine, wasm).unwrap();
    let mut per: BTreeMap<u64, BTreeMap<u32, (u64, i128)>> = BTreeMap::new();
    for i in 0..t.rows() as usize {
        let mut store = wasmtime::Store::new(&engine, ());
        let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
        let row = (i64s(t, 3)[i], u32s(t, 4)[i] as i32, i64s(t, 8)[i]);
        let sex = instance
            .get_typed_func::<(i64, i32, i64), i32>(&mut store, "padded.sex")
            .unwrap()
            .call(&mut store, row)
            .unwrap();
        let cost = instance
            .get_typed_func::<(i64, i32, i64), i64>(&mut store, "padded.total_cost")
            .unwrap()
            .call(&mut store, row)
            .unwrap();
        let e = per
            .entry(u64s(t, 0)[i])
            .or_default()
            .entry(sex as u32)
            .or_default();
        e.0 += 1;
        e.1 += i128::from(cost.clamp(0, 500_000));
    }
    let mut out: BTreeMap<u32, (u64, u64, i128)> = BTreeMap::new();
    for cells in per.values() {
        let (&cell, &(n, s)) = cells.iter().next().unwrap();
        let kept = n.min(100);
        let e = out.entry(cell).or_default();
        e.0 += kept;
        e.1 += 1;
        e.2 += s.clamp(0, 500_000 * i128::from(kept));
    }
    out
}

/// Padding: one person's value copied into thousands of other people's contributions, which
/// v1's shared guest state allowed. The guest recognises the target's row (the one aged 101)
/// and tries every way left to leave its cost behind for the rows after it: a store into its
/// memory, a mutable global, a table entry (each refused at validation: no store, no mutable
/// global, no table instructions); what loads is a module that only reads its memory, an
/// immutable global and a function through its table. Run on 1 and 3 instances, in batches,
/// its released sums equal the reference computed row by row in a fresh instance per row, and
/// the target's secret moves only the target's own cell, by exactly its own (clamped) value.
#[test]
fn hostile_padding_cannot_carry_one_rows_value_into_other_rows() {
    let leaves: &[(&str, &str, &str)] = &[
        ("(i64.store (i32.const 0) (local.get $cost))", "", "store"),
        (
            "(global.set $mine (local.get $cost))",
            "(global $mine (mut i64) (i64.const 0))",
            "mutable",
        ),
        (
            "(table.set 0 (i32.const 0) (ref.null func))",
            "",
            "outside ABI v2",
        ),
    ];
    for (leave, extra, needle) in leaves {
        let reason = refusal(&padding_guest(leave, extra));
        assert!(reason.contains(needle), "{leave}: {reason}");
    }
    let wasm = padding_guest("", "");
    let m = Manifest::from_toml(PADDING).unwrap();
    let mut released = Vec::new();
    for secret in [100, 400_000] {
        let t = padding_table(secret);
        let reference = padding_reference(&wasm, &t);
        for instances in [1, 3] {
            let r = run(&wasm, &m, &[input("outpatients", t.clone())], instances);
            finished(&r);
            let out = r.output.unwrap();
            let cells = &out.aggregates[0].cells;
            assert_eq!(cells.len(), 2);
            for (i, c) in cells.iter().enumerate() {
                let (n, p, s) = reference[&(i as u32)];
                assert!(!c.suppressed && !c.dominated, "{c:?}");
                assert_eq!((c.count, c.persons), (Some(n as i64), Some(p as i64)));
                let cents = (s / 100, s % 100);
                assert_eq!(c.sums[0], format!("{}.{:02}", cents.0, cents.1), "cell {i}");
            }
            released.push(out);
        }
    }
    // The target's cell moves by its own value only; the other cell not at all.
    let target_sex = u32s(&padding_table(0), 4)[0] as usize;
    let sum = |o: &Output, c: usize| -> f64 { o.aggregates[0].cells[c].sums[0].parse().unwrap() };
    let (low, high) = (&released[0], &released[2]);
    assert_eq!(sum(high, 1 - target_sex), sum(low, 1 - target_sex));
    assert!((sum(high, target_sex) - sum(low, target_sex) - 3999.0).abs() < 1e-6);
}
