//! The driver: a WebAssembly module the host writes from the plan, so that a batch of rows
//! crosses from the host into wasm once rather than once per row and function.
//!
//! The driver is the host's code, not the guest's: it imports the guest's pure functions
//! (namespace `guest`), owns a memory the host fills with one batch of columns, calls the
//! guest's functions for each row in order, checks every key against its domain, and writes
//! for each kept row its number, its cell and its measures where the host reads them. The guest
//! never sees the batch, the row numbers or anything the driver writes; its functions receive
//! one row's values as parameters and return one value each.
//!
//! Memory layout (one batch of at most `rows` rows; every region 8-byte aligned):
//! `columns` (each input column in turn, `rows` values of its width), then `out_rows`
//! (`u32 × rows`), `out_cells` (`u32 × rows`, [`OUT_OF_DOMAIN`] for a key outside its domain),
//! `out_measures` (`i64 × rows × measures`, row-major).

use std::fmt::Write as _;

use crate::manifest::{Plan, PlanMeasure, Stage, Wasm};

/// The cell the driver writes for a row one of whose keys is outside its dimension's domain
/// (the host drops the row and counts it in the report).
pub(crate) const OUT_OF_DOMAIN: u32 = u32::MAX;

/// One loop of the driver: a guest function set over one input table.
#[derive(Debug, Clone)]
pub(crate) struct Loop {
    /// Export of the driver that runs it: `(n: i32) -> i32` rows kept.
    pub export: String,
    /// The input columns' wasm types, in parameter order.
    pub params: Vec<Wasm>,
    /// The guest's export names this loop calls: keep (if the guest has one), each key, each
    /// measure.
    pub keep: Option<String>,
    /// Guest exports of the keys with their domain sizes.
    pub keys: Vec<(String, u64)>,
    /// Guest exports of the measures.
    pub measures: Vec<String>,
}

/// The layout and text of a driver.
#[derive(Debug, Clone)]
pub(crate) struct Driver {
    /// Rows of one batch.
    pub rows: usize,
    /// Offset of each input column of a loop, by loop then parameter.
    pub columns: Vec<Vec<usize>>,
    /// Offset of the kept rows' numbers.
    pub out_rows: usize,
    /// Offset of the kept rows' cells.
    pub out_cells: usize,
    /// Offset of the kept rows' measures.
    pub out_measures: usize,
    /// The loops, by plan order: row-stage aggregates, per-person inputs, per-person
    /// aggregates (see [`loops`]).
    pub loops: Vec<Loop>,
    /// The module's text.
    pub wat: String,
}

/// What a loop of the plan feeds: an aggregate (index) or a per-person input (index).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Feeds {
    /// Contributions to aggregate `.0`.
    Aggregate(usize),
    /// Rows of per-person input `.0`.
    Person(usize),
}

/// The loops of a plan and what each feeds, given the guest's exports (a `keep` function is
/// optional; keys and measures are required, checked by the caller).
pub(crate) fn loops(plan: &Plan, has_export: &dyn Fn(&str) -> bool) -> Vec<(Feeds, Loop)> {
    let keep = |prefix: &str| {
        let name = format!("{prefix}.keep");
        has_export(&name).then_some(name)
    };
    let measures = |prefix: &str, ms: &[PlanMeasure]| {
        ms.iter()
            .map(|m| format!("{prefix}.{}", m.name))
            .collect::<Vec<_>>()
    };
    let person_params = vec![Wasm::I64; plan.person_params()];
    let mut out = Vec::new();
    for (i, a) in plan.aggregates.iter().enumerate() {
        let params = match a.stage {
            Stage::Rows(d) => plan.datasets[d].columns.iter().map(|c| c.wasm).collect(),
            Stage::Persons => person_params.clone(),
        };
        out.push((
            Feeds::Aggregate(i),
            Loop {
                export: format!("a{i}"),
                params,
                keep: keep(&a.name),
                keys: a
                    .dims
                    .iter()
                    .map(|d| (format!("{}.{}", a.name, d.name), d.labels.len() as u64))
                    .collect(),
                measures: measures(&a.name, &a.measures),
            },
        ));
    }
    for (i, p) in plan.person.iter().enumerate() {
        let d = &plan.datasets[p.dataset];
        let prefix = format!("person.{}", d.name);
        out.push((
            Feeds::Person(i),
            Loop {
                export: format!("p{i}"),
                params: d.columns.iter().map(|c| c.wasm).collect(),
                keep: keep(&prefix),
                keys: Vec::new(),
                measures: measures(&prefix, &p.measures),
            },
        ));
    }
    out
}

fn align8(x: usize) -> usize {
    x.div_ceil(8) * 8
}

/// Lays out and writes the driver of `loops` for batches of `rows` rows.
pub(crate) fn driver(loops: Vec<Loop>, rows: usize) -> Driver {
    let widest = loops
        .iter()
        .map(|l| l.params.iter().map(|w| w.width()).sum::<usize>())
        .max()
        .unwrap_or(0);
    let measures = loops.iter().map(|l| l.measures.len()).max().unwrap_or(0);
    let columns: Vec<Vec<usize>> = loops
        .iter()
        .map(|l| {
            let mut at = 0;
            l.params
                .iter()
                .map(|w| {
                    let o = at;
                    at = align8(at + w.width() * rows);
                    o
                })
                .collect()
        })
        .collect();
    let out_rows = align8(widest * rows);
    let out_cells = align8(out_rows + 4 * rows);
    let out_measures = align8(out_cells + 4 * rows);
    let end = out_measures + 8 * rows * measures;
    let pages = end.div_ceil(65536).max(1);
    let mut wat = String::from("(module\n");
    for (li, l) in loops.iter().enumerate() {
        let params: Vec<&str> = l.params.iter().map(|w| w.wat()).collect();
        let params = params.join(" ");
        let mut import = |name: &str, local: &str, result: &str| {
            let _ = writeln!(
                wat,
                "  (import \"guest\" {} (func ${local} (param {params}) (result {result})))",
                wat_string(name)
            );
        };
        if let Some(k) = &l.keep {
            import(k, &format!("l{li}_keep"), "i32");
        }
        for (ki, (k, _)) in l.keys.iter().enumerate() {
            import(k, &format!("l{li}_k{ki}"), "i32");
        }
        for (mi, m) in l.measures.iter().enumerate() {
            import(m, &format!("l{li}_m{mi}"), "i64");
        }
    }
    let _ = writeln!(wat, "  (memory (export \"memory\") {pages} {pages})");
    for (li, l) in loops.iter().enumerate() {
        write_loop(
            &mut wat,
            li,
            l,
            &columns[li],
            out_rows,
            out_cells,
            out_measures,
        );
    }
    wat.push_str(")\n");
    Driver {
        rows,
        columns,
        out_rows,
        out_cells,
        out_measures,
        loops,
        wat,
    }
}

/// A WAT string literal of `s` (every byte escaped, so no name can break out of it).
fn wat_string(s: &str) -> String {
    let mut out = String::from("\"");
    for b in s.bytes() {
        let _ = write!(out, "\\{b:02x}");
    }
    out.push('"');
    out
}

fn write_loop(
    wat: &mut String,
    li: usize,
    l: &Loop,
    columns: &[usize],
    out_rows: usize,
    out_cells: usize,
    out_measures: usize,
) {
    let m = l.measures.len();
    let _ = writeln!(
        wat,
        "  (func (export \"{}\") (param $n i32) (result i32)",
        l.export
    );
    wat.push_str("    (local $i i32) (local $k i32) (local $cell i32) (local $key i32)\n");
    for (pi, w) in l.params.iter().enumerate() {
        let _ = writeln!(wat, "    (local $c{pi} {})", w.wat());
    }
    wat.push_str("    (block $done (loop $row\n");
    wat.push_str("      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))\n");
    for (pi, w) in l.params.iter().enumerate() {
        let (load, shift) = match w {
            Wasm::I32 => ("i32.load", 2),
            Wasm::I64 => ("i64.load", 3),
        };
        let _ = writeln!(
            wat,
            "      (local.set $c{pi} ({load} (i32.add (i32.const {}) (i32.shl (local.get $i) (i32.const {shift})))))",
            columns[pi]
        );
    }
    let args: String = (0..l.params.len())
        .map(|pi| format!(" (local.get $c{pi})"))
        .collect();
    wat.push_str("      (block $skip\n");
    if l.keep.is_some() {
        let _ = writeln!(
            wat,
            "        (br_if $skip (i32.eqz (call $l{li}_keep{args})))"
        );
    }
    wat.push_str("        (local.set $cell (i32.const 0))\n");
    for (ki, (_, size)) in l.keys.iter().enumerate() {
        let _ = writeln!(
            wat,
            "        (local.set $key (call $l{li}_k{ki}{args}))\n        (if (i32.ge_u (local.get $key) (i32.const {size}))\n          (then (local.set $cell (i32.const -1)))\n          (else (if (i32.ne (local.get $cell) (i32.const -1))\n            (then (local.set $cell (i32.add (i32.mul (local.get $cell) (i32.const {size})) (local.get $key)))))))"
        );
    }
    let _ = writeln!(
        wat,
        "        (i32.store (i32.add (i32.const {out_rows}) (i32.shl (local.get $k) (i32.const 2))) (local.get $i))\n        (i32.store (i32.add (i32.const {out_cells}) (i32.shl (local.get $k) (i32.const 2))) (local.get $cell))"
    );
    for mi in 0..m {
        let _ = writeln!(
            wat,
            "        (i64.store (i32.add (i32.const {out_measures}) (i32.shl (i32.add (i32.mul (local.get $k) (i32.const {m})) (i32.const {mi})) (i32.const 3))) (call $l{li}_m{mi}{args}))"
        );
    }
    wat.push_str("        (local.set $k (i32.add (local.get $k) (i32.const 1))))\n");
    wat.push_str("      (local.set $i (i32.add (local.get $i) (i32.const 1)))\n");
    wat.push_str("      (br $row))\n    )\n    (local.get $k))\n");
}
