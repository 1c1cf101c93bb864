//! Hostile guests and manifests against guarantee 9 (bounded resources): memories and tables,
//! the manifest's caps and the run's host buffers. Each test says what it tries and what stops
//! it.

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
