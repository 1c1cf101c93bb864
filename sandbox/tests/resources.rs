//! Hostile guests and manifests against guarantee 9 (bounded resources): memories and tables,
//! the manifest's caps, the module's compile caps and the run's host buffers. Each test says
//! what it tries and what stops it.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use dataop_sandbox::{Limits, Outcome, RunOptions, Runtime};

mod common;

use common::*;

/// Denial of service through memories, tables, aggregates, measures and cells.
#[test]
fn hostile_resource_exhaustion_is_bounded() {
    let limits = Limits {
        max_memory_bytes: 4 << 20,
        ..Limits::default()
    };
    let rt = Runtime::new(limits, None).unwrap();
    let m = manifest("a_visits_65plus");
    let inputs = [input("outpatients", table())];
    for extra in [
        "(memory 100)",                      // 6.4 MiB of memory at instantiation
        "(table 1000000 funcref)",           // a million table elements
        "(memory 60) (table 10000 funcref)", // under each cap alone, over them together
    ] {
        let wasm = row_module(extra, "(i32.const 1)", "(i32.const 0)");
        let module = rt.load(&wasm).unwrap();
        let r = rt.run(&module, &m, &inputs, &RunOptions::default());
        assert_eq!(r.report.outcome, Outcome::OutOfMemory, "{extra}");
    }
    let mut many = m.clone();
    for i in 0..16 {
        let mut a = many.aggregates[0].clone();
        a.name = format!("more_{i}");
        many.aggregates.push(a);
    }
    let r = run(&example("a_visits_65plus.wat"), &many, &inputs, 1);
    assert!(
        matches!(&r.report.outcome, Outcome::Refused { reason } if reason.contains("17 aggregates")),
        "{:?}",
        r.report.outcome
    );
    let mut measures = manifest("b_cost_by_chapter_sex");
    let one = measures.aggregates[0].measures[0].clone();
    measures.aggregates[0].measures = (0..9)
        .map(|i| dataop_sandbox::manifest::MeasureDecl {
            name: format!("m{i}"),
            ..one.clone()
        })
        .collect();
    let r = plan_refusal(&measures, &inputs);
    assert!(r.contains("dimensions or measures"), "{r}");
    // Cells: bins make a domain as large as the manifest likes; the product is capped.
    let mut cells = m.clone();
    cells.aggregates[0].dimensions = vec![dataop_sandbox::manifest::DimensionDecl {
        name: "bins".into(),
        dataset: None,
        column: None,
        bins: Some((0..200_001).collect()),
    }];
    let r = run(&example("a_visits_65plus.wat"), &cells, &inputs, 1);
    assert!(
        matches!(r.report.outcome, Outcome::TooManyGroups { .. }),
        "{:?}",
        r.report.outcome
    );
}

#[test]
fn too_many_person_cell_pairs_is_a_typed_outcome() {
    let rt = Runtime::new(
        Limits {
            max_person_cells: 100,
            ..Limits::default()
        },
        None,
    )
    .unwrap();
    let module = rt.load(&example("a_visits_65plus.wat")).unwrap();
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

/// The module caps that bound compilation: a module over 4 MiB (as a binary, and as WAT text
/// whose binary would be small), more than 10,000 functions or exports, a function body over
/// 8 KiB, more than 256 KiB of code, more than 1,000 locals in one function. Each is refused
/// before it is compiled, naming the limit; modules just within the caps load.
#[test]
fn hostile_module_size_and_function_caps_are_refused_before_compiling() {
    let limits = Limits::default();
    let big_data = format!(
        "(module (memory 65) (data (i32.const 0) \"{}\"))",
        "\\00".repeat(limits.max_module_bytes)
    );
    let reason = refusal(big_data.as_bytes());
    assert!(
        reason.contains("more than the limit of 4194304"),
        "{reason}"
    );
    let padded_text = format!("(module) ;; {}", "x".repeat(limits.max_module_bytes));
    assert!(refusal(padded_text.as_bytes()).contains("4194304"));
    let functions = |n: u32, export: bool| {
        let mut s = String::from("(module");
        for i in 0..n {
            if export {
                let _ = write!(s, " (func (export \"f{i}\"))");
            } else {
                s.push_str(" (func)");
            }
        }
        s.push(')');
        s.into_bytes()
    };
    assert!(refusal(&functions(10_001, false)).contains("10001 functions"));
    runtime().load(&functions(10_000, true)).unwrap();
    let exports = {
        let mut s = String::from("(module (func $f)");
        for i in 0..10_001 {
            let _ = write!(s, " (export \"f{i}\" (func $f))");
        }
        s.push(')');
        s.into_bytes()
    };
    assert!(refusal(&exports).contains("10001 exports"));
    let body = |ops: usize| {
        format!(
            "(module (func (result i32) (i32.const 0) {}))",
            "(i32.eqz)".repeat(ops)
        )
        .into_bytes()
    };
    // Each `i32.eqz` is one byte; the body also holds its locals' count, the constant and `end`.
    runtime()
        .load(&body(limits.max_function_bytes - 5))
        .unwrap();
    let reason = refusal(&body(limits.max_function_bytes));
    assert!(reason.contains("more than the limit of 8192"), "{reason}");
    // All code together: 33 bodies of the largest size, each within the cap of one.
    let many = format!(
        "(module {})",
        format!(
            "(func (result i32) (i32.const 0) {})",
            "(i32.eqz)".repeat(8_000)
        )
        .repeat(33)
    );
    let reason = refusal(many.as_bytes());
    assert!(reason.contains("more than the limit of 262144"), "{reason}");
    let locals = |n: u32| format!("(module (func (local {})))", "i64 ".repeat(n as usize));
    runtime()
        .load(locals(limits.max_function_locals).as_bytes())
        .unwrap();
    // The locals are counted, not the entries declaring them (one entry of 1,001 here).
    let reason = refusal(locals(limits.max_function_locals + 1).as_bytes());
    assert!(reason.contains("1001 locals"), "{reason}");
}

/// The body of a function of about `bytes` bytes that costs Cranelift most among those found:
/// a loop with a branch back to its head every 12 bytes, each after a step on one of 128 live
/// locals (the compile time grows faster than the size: every branch passes every local).
fn loop_with_live_locals(bytes: usize) -> String {
    let mut body = String::new();
    let mut i = 0;
    while 12 * (i + 1) + 16 < bytes {
        let _ = write!(
            body,
            "(local.set {} (i64.add (local.get {}) (i64.const 1))) (br_if 0 (i64.eqz (local.get {})))",
            i % 128,
            (i + 1) % 128,
            (i + 2) % 128
        );
        i += 1;
    }
    format!("(func (local {}) (loop {body}))", "i64 ".repeat(128))
}

/// Compilation is bounded by the caps, not by a clock (Cranelift cannot be interrupted, and
/// compiles one function at a time): its time grows faster than a function's size, so the
/// caps bound the size of a body (8 KiB) and of all code (256 KiB, at most 32 bodies of the
/// largest size). The bodies of the largest size that cost Cranelift most among those tried (a
/// loop with hundreds of branches back to its head passing 128 live locals, nested loops
/// with locals, branches on locals, a `br_table` of thousands of targets, nested blocks) each
/// compile within 5 s in this debug build (release builds are several times faster: ABI.md
/// §7 gives the figures and the bound for a whole module).
#[test]
fn compilation_of_the_worst_bodies_within_the_caps_is_bounded() {
    let max = Limits::default().max_function_bytes;
    let nested_loops = {
        let mut body = String::new();
        for d in 0..32 {
            body.push_str("(loop ");
            for j in 0..(max / 32 - 16) / 12 {
                let _ = write!(
                    body,
                    "(local.set {} (i64.add (local.get {}) (i64.const 1))) (br_if {} (i64.eqz (local.get {})))",
                    (d + j) % 128,
                    (d + j + 1) % 128,
                    j % (d + 1),
                    (j + 2) % 128
                );
            }
        }
        format!(
            "(func (local {}) {body}{})",
            "i64 ".repeat(128),
            ")".repeat(32)
        )
    };
    let branches = {
        let mut body = String::new();
        for i in 0..(max - 64) / 10 {
            let _ = write!(
                body,
                "(if (i64.eqz (local.get {})) (then (local.set {} (i64.const 1))))",
                i % 128,
                (i * 7 + 3) % 128
            );
        }
        format!(
            "(func (result i64) (local {}) {body} (local.get 5))",
            "i64 ".repeat(128)
        )
    };
    let br_table = format!(
        "(func (param i32) (result i32) {} (br_table {} (local.get 0)) {} (i32.const 0))",
        "(block ".repeat(100),
        (0..max - 400)
            .map(|i| (i % 100).to_string())
            .collect::<Vec<_>>()
            .join(" "),
        ")".repeat(100)
    );
    let nested_blocks = {
        let n = (max - 64) / 3;
        format!(
            "(func (result i32) {} (i32.const 0) {})",
            "(block (result i32)".repeat(n),
            ")".repeat(n)
        )
    };
    for (name, func) in [
        ("a loop with live locals", loop_with_live_locals(max)),
        ("nested loops with locals", nested_loops),
        ("branches on locals", branches),
        ("br_table", br_table),
        ("nested blocks", nested_blocks),
    ] {
        let wasm = wat::parse_str(format!("(module {func})")).unwrap();
        let rt = Runtime::new(Limits::default(), None).unwrap();
        let t = Instant::now();
        if let Err(o) = rt.load(&wasm) {
            panic!("{name}: {o}");
        }
        let took = t.elapsed();
        eprintln!(
            "compiling {name} ({} bytes): {:.0} ms",
            wasm.len(),
            took.as_secs_f64() * 1e3
        );
        assert!(wasm.len() > max * 7 / 8, "{name} is near the cap");
        assert!(took < Duration::from_secs(5), "{name}: {took:?}");
    }
}
