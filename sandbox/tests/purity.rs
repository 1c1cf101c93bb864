//! Hostile guests against guarantee 1 (row-local computation): WebAssembly features that add
//! state or nondeterminism, mutable globals and NaN bits. Each test says what it tries and
//! what stops it.

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
