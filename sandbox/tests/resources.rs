//! Hostile guests and manifests against guarantee 9 (bounded resources): memories and tables,
//! the manifest's caps, the module's compile caps, the per-run host-buffer budget, and the
//! peak RSS of a run measured in a child process. Each test says what it tries and what stops
//! it.

use std::fmt::Write as _;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dataop_sandbox::columnar::ColumnSpec;
use dataop_sandbox::manifest::{DimensionDecl, MeasureDecl};
use dataop_sandbox::source::TableSource;
use dataop_sandbox::{DatasetInput, Limits, Manifest, Outcome, RunOptions, Runtime, demo};

mod common;

use common::*;

/// Denial of service through memories, tables, aggregates, measures and cells: each cap of
/// the platform ends the run with its outcome (`out_of_memory`, `refused`, `too_many_groups`).
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
        .map(|i| MeasureDecl {
            name: format!("m{i}"),
            ..one.clone()
        })
        .collect();
    let r = plan_refusal(&measures, &inputs);
    assert!(r.contains("dimensions or measures"), "{r}");
    // Cells: bins make a domain as large as the manifest likes; the product is capped.
    let mut cells = m.clone();
    cells.aggregates[0].dimensions = vec![bins("bins", 200_000)];
    let r = run(&example("a_visits_65plus.wat"), &cells, &inputs, 1);
    assert!(
        matches!(&r.report.outcome, Outcome::TooManyGroups { reason } if reason.contains("100000")),
        "{:?}",
        r.report.outcome
    );
}

/// A dimension of `n` integer bins (its codes are whatever the guest returns, `0..n`).
fn bins(name: &str, n: i64) -> DimensionDecl {
    DimensionDecl {
        name: name.into(),
        dataset: None,
        column: None,
        bins: Some((0..=n).collect()),
    }
}

/// Cells across aggregates: five aggregates of 100,000 cells each are each within the cap of
/// one aggregate, 500,000 together over the cap of all (400,000): the run ends as
/// `too_many_groups` naming the total before anything runs; four of them are allowed.
#[test]
fn hostile_cells_across_aggregates_are_capped_in_total() {
    let wasm = {
        let mut funcs = String::new();
        for i in 0..5 {
            let _ = write!(
                funcs,
                r#"(func (export "a{i}.b") (param i64 i32) (result i32) (i32.const 0))"#
            );
        }
        format!("(module {funcs})").into_bytes()
    };
    let mut m = manifest("a_visits_65plus");
    let template = m.aggregates[0].clone();
    m.aggregates = (0..5)
        .map(|i| {
            let mut a = template.clone();
            a.name = format!("a{i}");
            a.dimensions = vec![bins("b", 100_000)];
            a
        })
        .collect();
    let inputs = [input("outpatients", table())];
    let r = run(&wasm, &m, &inputs, 1);
    assert!(
        matches!(&r.report.outcome, Outcome::TooManyGroups { reason } if reason.contains("400000")),
        "{:?}",
        r.report.outcome
    );
    m.aggregates.pop();
    finished(&run(&wasm, &m, &inputs, 1));
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

/// The CPU time of the calling thread (user and system, from `/proc/thread-self/stat`, in
/// ticks of 10 ms): the module compiles on it (parallel compilation is off), and unlike the
/// elapsed time it does not grow with the machine's load.
fn thread_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    // The fields after the command's closing parenthesis: utime and stime are the 12th and 13th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|f| f.parse::<u64>().unwrap())
        .sum();
    Duration::from_millis(ticks * 10)
}

/// Compilation is bounded by the caps, not by a clock (Cranelift cannot be interrupted, and
/// compiles one function at a time): its time grows faster than a function's size, so the
/// caps bound the size of a body (8 KiB) and of all code (256 KiB, at most 32 bodies of the
/// largest size). The bodies of the largest size that cost Cranelift most among those tried (a
/// loop with hundreds of branches back to its head passing 128 live locals, nested loops
/// with locals, branches on locals, a `br_table` of thousands of targets, nested blocks) each
/// compile within 2 s of CPU in this debug build (about 0.5 s for the worst; release builds
/// are several times faster: ABI.md §7 gives the figures and the bound for a whole module).
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
        let (t, cpu) = (Instant::now(), thread_cpu());
        if let Err(o) = rt.load(&wasm) {
            panic!("{name}: {o}");
        }
        let took = thread_cpu() - cpu;
        eprintln!(
            "compiling {name} ({} bytes): {:.0} ms of CPU ({:.0} ms elapsed)",
            wasm.len(),
            took.as_secs_f64() * 1e3,
            t.elapsed().as_secs_f64() * 1e3
        );
        assert!(wasm.len() > max * 7 / 8, "{name} is near the cap");
        assert!(took < Duration::from_secs(2), "{name}: {took:?}");
    }
}

/// A table whose rows are computed from their number, holding nothing: the demo columns,
/// `rows` rows, person `row / rows_per_person` (pseudonymized). It lets a child process run a
/// job over millions of rows with no data in memory.
struct Synthetic {
    columns: Vec<ColumnSpec>,
    rows: u64,
    rows_per_person: u64,
}

impl Synthetic {
    fn value(&self, col: usize, row: u64) -> i64 {
        let mut x = row.wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ (col as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x ^= x >> 29;
        match col {
            0 | 1 => demo::person_pseudonym(row / self.rows_per_person) as i64,
            2 => (x % 13) as i64,
            3 => (x % 100) as i64,
            4 => (x % 2) as i64,
            5 => 19_358 + (x % 730) as i64,
            6 => (x % 22) as i64,
            7 => (x % 8) as i64,
            _ => 1_000 + (x % 200_000) as i64,
        }
    }
}

impl TableSource for Synthetic {
    fn columns(&self) -> &[ColumnSpec] {
        &self.columns
    }

    fn rows(&self) -> u64 {
        self.rows
    }

    fn read_raw(&self, col: usize, start: u64, n: usize, dst: &mut [u8]) -> io::Result<()> {
        let w = self.columns[col].storage().width();
        for (i, d) in dst.chunks_exact_mut(w).take(n).enumerate() {
            let v = self.value(col, start + i as u64);
            d.copy_from_slice(&v.to_le_bytes()[..w]);
        }
        Ok(())
    }
}

fn synthetic(rows: u64, rows_per_person: u64) -> Arc<dyn TableSource> {
    Arc::new(Synthetic {
        columns: demo::outpatient_columns(),
        rows,
        rows_per_person,
    })
}

/// A guest for the aggregates `(name, cells)` of manifests over the demo columns `(district,
/// age, total_cost)`: its key spreads rows over the aggregate's cells, its 8 measures are the
/// cost, and each function also reads its memory (a 2 MiB data segment, resident in every
/// instance).
fn pushing_guest(aggregates: &[(&str, u32)]) -> Vec<u8> {
    let mut s = format!(
        r#"(module (memory 40) (data (i32.const 0) "{}")
  (func $touch (param $x i64) (result i64)
    (i64.extend_i32_u (i32.load8_u (i32.wrap_i64 (i64.rem_u (local.get $x) (i64.const 2097152))))))
"#,
        "\\01".repeat(2 << 20)
    );
    let row = "(param $district i32) (param $age i64) (param $cost i64)";
    for (name, cells) in aggregates {
        let _ = write!(
            s,
            r#"(func (export "{name}.b") {row} (result i32)
    (i32.wrap_i64 (i64.rem_u
      (i64.add (i64.mul (local.get $cost) (i64.const 7919)) (call $touch (local.get $cost)))
      (i64.const {cells}))))
"#
        );
        for k in 0..8 {
            let _ = writeln!(
                s,
                r#"(func (export "{name}.m{k}") {row} (result i64) (i64.add (local.get $cost) (call $touch (local.get $age))))"#
            );
        }
    }
    s.push(')');
    wat::parse_str(s).unwrap()
}

/// The measures `m0..m7` of the pushing manifests.
fn eight_measures() -> String {
    (0..8)
        .map(|k| format!("{{ name = \"m{k}\", scale = 2, min = 0, max = 5000 }}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A hostile job that pushes host buffers as far as it can, for the peak-RSS test:
/// - `contributions`: one aggregate of 100,000 cells with 8 measures, 16 cells per person and
///   every row a new (person, cell) pair: raw contributions, their measures and compacted
///   pairs grow on every instance;
/// - `persons`: four per-person inputs with 8 measures each and every row a new person: the
///   per-person totals of every instance, their merge, the list of persons;
/// - `tallies`: an aggregate of 100,000 cells with 8 measures, about twelve persons per cell
///   and member lists: each tally thread's totals and sorting buffers, the member lists.
fn pushing_job(scenario: &str) -> (Vec<u8>, Manifest, Vec<DatasetInput>) {
    let columns = r#"columns = ["district", "age", "total_cost"]"#;
    let measures = eight_measures();
    let aggregate = |name: &str, dataset: &str, cells: u32, extra: &str| {
        format!(
            "[[aggregates]]\nname = \"{name}\"\n{dataset}\nk = 10\n{extra}\ndimensions = [{{ name = \"b\", bins = [{}] }}]\nmeasures = [{measures}]\n",
            (0..=cells)
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let allowed = |name: &str, source: Arc<dyn TableSource>| DatasetInput {
        name: name.into(),
        source,
        allowed_columns: ["district", "age", "total_cost"].map(String::from).to_vec(),
        grade: 1,
    };
    match scenario {
        "contributions" => {
            let toml = format!(
                "abi = 2\nname = \"push\"\n[[datasets]]\nname = \"d\"\n{columns}\n{}",
                aggregate(
                    "a",
                    "dataset = \"d\"",
                    100_000,
                    "max_cells_per_person = 16\nmax_rows_per_person_cell = 1000"
                )
            );
            (
                pushing_guest(&[("a", 100_000)]),
                Manifest::from_toml(&toml).unwrap(),
                vec![allowed("d", synthetic(20_000_000, 16))],
            )
        }
        "persons" => {
            let names: Vec<String> = (0..4).map(|i| format!("d{i}")).collect();
            let mut toml = String::from("abi = 2\nname = \"push\"\n");
            for d in &names {
                let _ = write!(toml, "[[datasets]]\nname = \"{d}\"\n{columns}\n");
            }
            for d in &names {
                let _ = write!(
                    toml,
                    "[[person]]\ndataset = \"{d}\"\nmax_rows = 1000\nmeasures = [{measures}]\n"
                );
            }
            toml.push_str(&aggregate(
                "p",
                "per_person = true",
                1_000,
                "max_cells_per_person = 1\nmax_rows_per_person_cell = 1",
            ));
            let mut wasm_persons = String::from("(module (memory 1)");
            for d in &names {
                let row = "(param i32 i64 i64)";
                let _ = write!(
                    wasm_persons,
                    r#" (func (export "person.{d}.keep") {row} (result i32) (i32.const 1))"#
                );
                for k in 0..8 {
                    let _ = write!(
                        wasm_persons,
                        r#" (func (export "person.{d}.m{k}") {row} (result i64) (local.get 2))"#
                    );
                }
            }
            let params = "(param".to_string() + &" i64".repeat(4 * 9) + ")";
            let _ = write!(
                wasm_persons,
                r#" (func (export "p.b") {params} (result i32) (i32.wrap_i64 (i64.rem_u (local.get 1) (i64.const 1000))))"#
            );
            for k in 0..8 {
                let _ = write!(
                    wasm_persons,
                    r#" (func (export "p.m{k}") {params} (result i64) (local.get 1))"#
                );
            }
            wasm_persons.push(')');
            let source = synthetic(5_000_000, 1);
            (
                wasm_persons.into_bytes(),
                Manifest::from_toml(&toml).unwrap(),
                names.iter().map(|d| allowed(d, source.clone())).collect(),
            )
        }
        _ => {
            let toml = format!(
                "abi = 2\nname = \"push\"\n[[datasets]]\nname = \"d\"\n{columns}\n{}",
                aggregate("a", "dataset = \"d\"", 100_000, ""),
            );
            (
                pushing_guest(&[("a", 100_000)]),
                Manifest::from_toml(&toml).unwrap(),
                vec![allowed("d", synthetic(1_200_000, 1))],
            )
        }
    }
}

/// The limits of the child runs: a host-buffer budget of 256 MiB and 16 MiB of memory per
/// instance, on 2 instances.
fn rss_limits() -> Limits {
    Limits {
        max_host_bytes: 256 << 20,
        max_memory_bytes: 16 << 20,
        timeout: Duration::from_secs(300),
        ..Limits::default()
    }
}

/// The constant of ABI.md §7: a run's peak RSS stays under `max_host_bytes` + instances ×
/// `max_memory_bytes` + this (the process, the engine and the compiled code, the reusable
/// blocks of raw contributions kept between runs (64 MiB of each kind), thread stacks and
/// the allocator's slack).
const RSS_CONSTANT: u64 = 192 << 20;

/// `VmHWM` of this process, in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// The child's part of [`peak_rss_of_a_hostile_run_stays_under_the_limits_plus_the_constant`]:
/// runs `scenario` and prints its outcome, the host buffers' peak and its own `VmHWM`.
fn rss_child(scenario: &str) {
    let (wasm, manifest, inputs) = pushing_job(scenario);
    let rt = Runtime::new(rss_limits(), None).unwrap();
    let module = rt.load(&wasm).unwrap();
    let opts = RunOptions {
        instances: 2,
        members: true,
        noise_seed: Some(1),
        ..RunOptions::default()
    };
    let r = rt.run(&module, &manifest, &inputs, &opts);
    println!(
        "rss-child outcome={} host_bytes_peak={} vm_hwm={}",
        r.report.outcome.kind(),
        r.report.host_bytes_peak,
        peak_rss()
    );
    println!("rss-child-outcome {}", r.report.outcome);
}

/// Peak RSS: a hostile job pushing every host buffer the run has (raw and compacted
/// contributions, per-person totals, tallies, member lists, released tables; see
/// [`pushing_job`]) and its guest's memory runs in a child process (this test binary run on
/// itself with `DATAOP_RSS_SCENARIO` set, see [`rss_child`]) over a synthetic table of millions of rows that holds no data. The host
/// buffers reach the budget (the run ends as `too_many_groups` naming it, or finishes just
/// under it), and the child's `VmHWM`, read from `/proc`, stays under `max_host_bytes` + 2 ×
/// `max_memory_bytes` + the constant stated in ABI.md.
#[test]
fn peak_rss_of_a_hostile_run_stays_under_the_limits_plus_the_constant() {
    if let Ok(scenario) = std::env::var("DATAOP_RSS_SCENARIO") {
        return rss_child(&scenario);
    }
    let limits = rss_limits();
    let bound = limits.max_host_bytes + 2 * limits.max_memory_bytes as u64 + RSS_CONSTANT;
    for scenario in ["contributions", "persons", "tallies"] {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "peak_rss_of_a_hostile_run_stays_under_the_limits_plus_the_constant",
                "--nocapture",
            ])
            .env("DATAOP_RSS_SCENARIO", scenario)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout
            .lines()
            .find(|l| l.starts_with("rss-child "))
            .unwrap_or_else(|| {
                panic!(
                    "{scenario}: {stdout}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        let field = |name: &str| -> &str {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
                .unwrap()
        };
        let (outcome, host, hwm) = (
            field("outcome"),
            field("host_bytes_peak").parse::<u64>().unwrap(),
            field("vm_hwm").parse::<u64>().unwrap(),
        );
        let described = stdout
            .lines()
            .find_map(|l| l.strip_prefix("rss-child-outcome "))
            .unwrap_or_default();
        eprintln!(
            "{scenario}: {described}; host buffers {} MiB, VmHWM {} MiB (bound {} MiB)",
            host >> 20,
            hwm >> 20,
            bound >> 20
        );
        assert!(
            outcome == "too_many_groups" || outcome == "finished",
            "{scenario}: {outcome}"
        );
        assert!(
            host >= limits.max_host_bytes / 2,
            "{scenario} pushed the budget: {host}"
        );
        assert!(hwm <= bound, "{scenario}: VmHWM {hwm} over {bound}");
    }
}

/// Per-run budget: the host's buffers of every instance count against one budget. Example
/// (a) on 1 instance holds about 8 MiB of raw-contribution blocks; on 4 instances, each
/// holding as much (300,000 rows: each instance takes batches), the run needs several times
/// that and ends as `too_many_groups` naming `max_host_bytes` under a budget of 12 MiB, which
/// every instance alone would fit.
#[test]
fn host_buffers_of_every_instance_share_one_budget_per_run() {
    let rt = Runtime::new(
        Limits {
            max_host_bytes: 12 << 20,
            ..Limits::default()
        },
        None,
    )
    .unwrap();
    let module = rt.load(&example("a_visits_65plus.wat")).unwrap();
    let rows = Arc::new(demo::outpatients(300_000, 30_000, 3));
    let go = |instances| {
        rt.run(
            &module,
            &manifest("a_visits_65plus"),
            &[input("outpatients", rows.clone())],
            &RunOptions {
                instances,
                ..RunOptions::default()
            },
        )
    };
    let one = go(1);
    finished(&one);
    assert!(one.report.host_bytes_peak > 4 << 20 && one.report.host_bytes_peak <= 12 << 20);
    let four = go(4);
    assert!(
        matches!(&four.report.outcome, Outcome::TooManyGroups { reason } if reason.contains("max_host_bytes")),
        "{:?}",
        four.report.outcome
    );
}

/// A module of example (a)'s row functions whose key spreads rows over 100,000 cells and
/// with the measures `m0..m7` (each the age).
fn wide_module() -> Vec<u8> {
    let mut s = String::from(
        r#"(module (func (export "a.b") (param i64 i32) (result i32)
      (i32.wrap_i64 (i64.rem_u (i64.mul (local.get 0) (i64.const 7919)) (i64.const 100000))))"#,
    );
    for k in 0..8 {
        let _ = write!(
            s,
            r#" (func (export "a.m{k}") (param i64 i32) (result i64) (local.get 0))"#
        );
    }
    s.push(')');
    s.into_bytes()
}

/// Example (a)'s manifest with one aggregate `a` of 100,000 cells and `measures` measures.
fn wide_manifest(measures: usize) -> Manifest {
    let mut m = manifest("a_visits_65plus");
    let a = &mut m.aggregates[0];
    a.name = "a".into();
    a.dimensions = vec![bins("b", 100_000)];
    a.measures = (0..measures)
        .map(|k| MeasureDecl {
            name: format!("m{k}"),
            scale: 0,
            min: 0.0,
            max: 100.0,
        })
        .collect();
    m
}

/// Every kind of host buffer is charged, and named when it takes the run over the budget: the
/// scan's contributions (example (a) under 1 MiB: its raw-contribution blocks alone take
/// 8 MiB), the per-person totals (example (d) under 64 KiB), a tally thread's totals (100,000
/// cells with 8 measures, 40 MB, under 32 MiB, which the scan fits), and the released tables
/// (100,000 cells, about 15 MB even when all are suppressed, under 12 MiB, which the scan and
/// the tally fit).
#[test]
fn hostile_host_buffers_of_each_kind_are_charged_and_named() {
    let d_inputs = [
        input("outpatients", table()),
        input("inpatients", Arc::new(demo::outpatients(5_000, 3_000, 2))),
    ];
    let a_inputs = [input("outpatients", table())];
    let cases = [
        (
            "the contributions",
            example("a_visits_65plus.wat"),
            manifest("a_visits_65plus"),
            &a_inputs[..],
            1 << 20,
        ),
        (
            "the per-person totals",
            example("d_patients_two_datasets.wat"),
            manifest("d_patients_two_datasets"),
            &d_inputs[..],
            64 << 10,
        ),
        (
            "the tallies",
            wide_module(),
            wide_manifest(8),
            &a_inputs,
            32 << 20,
        ),
        (
            "the released tables",
            wide_module(),
            wide_manifest(0),
            &a_inputs,
            12 << 20,
        ),
    ];
    for (what, wasm, m, inputs, budget) in cases {
        let rt = Runtime::new(
            Limits {
                max_host_bytes: budget,
                ..Limits::default()
            },
            None,
        )
        .unwrap();
        let module = rt.load(&wasm).unwrap();
        let opts = RunOptions {
            instances: 1,
            ..RunOptions::default()
        };
        let r = rt.run(&module, &m, inputs, &opts);
        assert!(
            matches!(&r.report.outcome, Outcome::TooManyGroups { reason }
                if reason.contains("max_host_bytes") && reason.contains(what)),
            "{what}: {:?}",
            r.report.outcome
        );
        assert!(r.report.host_bytes_peak > budget, "{what}");
        // With room for them, the same run finishes.
        let rt = Runtime::new(Limits::default(), None).unwrap();
        let module = rt.load(&wasm).unwrap();
        finished(&rt.run(&module, &m, inputs, &opts));
    }
}
