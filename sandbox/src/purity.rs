//! The proof that a guest module is a set of pure functions (ABI v2, guarantee 1).
//!
//! A module passes when, and only when:
//! - it validates with the WebAssembly features listed in [`FEATURES`] and no others (no bulk
//!   memory, reference types, threads and atomics, multi-memory, exceptions, GC or function
//!   references, memory64, relaxed SIMD);
//! - it imports nothing, has no start function and defines no mutable global;
//! - no function body holds an instruction that writes state that outlives a call: no store
//!   of any width (scalar or SIMD, lane stores included), no `memory.grow`, no `global.set`
//!   (the instructions that change tables, drop segments, copy or fill memory need the
//!   features refused above, so validation already rules them out);
//! - it is small enough to compile in bounded time: at most [`Limits::max_functions`]
//!   functions with at most [`Limits::max_code_bytes`] of code together, each body at most
//!   [`Limits::max_function_bytes`] bytes declaring at most [`Limits::max_function_locals`]
//!   locals (the module itself is at most [`Limits::max_module_bytes`], checked by the
//!   runtime).
//!
//! Locals and the operand stack live for one call only, the memory and the globals keep their
//! initial values for ever, so every exported function is a function of its arguments alone:
//! a call can carry nothing to the next one. Memory and data segments stay allowed, read only,
//! for lookup tables, and immutable globals for constants. Floating-point results are
//! deterministic: the engine canonicalises every NaN an instruction produces
//! (`Runtime::new`), and the nondeterministic relaxed SIMD is refused.
//!
//! Compilation is bounded by these caps rather than by a clock: Cranelift cannot be
//! interrupted, and compiles one function at a time (parallel compilation is off) in time that
//! grows faster than the function's size (a loop with hundreds of branches back to its head
//! and many live locals is the worst case found), so a module compiles in at most
//! `max_code_bytes / max_function_bytes` times the time of the worst body of the largest size
//! (measured in `tests/resources.rs`; figures in `ABI.md` §7).

use wasmparser::{Operator, Parser, Payload, Validator, WasmFeatures};

use crate::manifest::Limits;

/// The WebAssembly features a guest may use: the 1.0 core with the extensions that add
/// neither state nor nondeterminism.
pub(crate) const FEATURES: WasmFeatures = WasmFeatures::SATURATING_FLOAT_TO_INT
    .union(WasmFeatures::SIGN_EXTENSION)
    .union(WasmFeatures::MULTI_VALUE)
    .union(WasmFeatures::SIMD)
    .union(WasmFeatures::FLOATS)
    .union(WasmFeatures::EXTENDED_CONST);

/// Whether `op` writes state that outlives the call.
fn writes_state(op: &Operator<'_>) -> bool {
    use Operator as O;
    matches!(
        op,
        O::I32Store { .. }
            | O::I64Store { .. }
            | O::F32Store { .. }
            | O::F64Store { .. }
            | O::I32Store8 { .. }
            | O::I32Store16 { .. }
            | O::I64Store8 { .. }
            | O::I64Store16 { .. }
            | O::I64Store32 { .. }
            | O::V128Store { .. }
            | O::V128Store8Lane { .. }
            | O::V128Store16Lane { .. }
            | O::V128Store32Lane { .. }
            | O::V128Store64Lane { .. }
            | O::MemoryGrow { .. }
            | O::GlobalSet { .. }
    )
}

/// Checks that `wasm` (binary) is a module of pure functions within the compile caps of
/// `limits`; the reason otherwise.
pub(crate) fn check(wasm: &[u8], limits: &Limits) -> Result<(), String> {
    let max_functions = limits.max_functions;
    Validator::new_with_features(FEATURES)
        .validate_all(wasm)
        .map_err(|e| {
            format!(
                "the module uses WebAssembly outside ABI v2 (the 1.0 core with sign extension, saturating conversions, multi-value, extended constants and SIMD): {}",
                e.message()
            )
        })?;
    let mut function = 0u32;
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(|e| format!("malformed module: {}", e.message()))?;
        match payload {
            Payload::ImportSection(imports) => {
                if let Some(import) = imports.into_imports().next() {
                    let import =
                        import.map_err(|e| format!("malformed module: {}", e.message()))?;
                    if import.module == "dataop" {
                        return Err(format!(
                            "the module imports `dataop::{}`: {}",
                            import.name,
                            crate::manifest::retired()
                        ));
                    }
                    return Err(format!(
                        "import `{}::{}` is not allowed: an ABI v2 module imports nothing (no WASI, clock, randomness, files, network or host functions)",
                        import.module, import.name
                    ));
                }
            }
            Payload::StartSection { .. } => {
                return Err("the module has a start function: ABI v2 modules have none".into());
            }
            Payload::FunctionSection(f) if f.count() > max_functions => {
                return Err(format!(
                    "the module has {} functions, more than the limit of {max_functions}",
                    f.count()
                ));
            }
            Payload::ExportSection(e) if e.count() > max_functions => {
                return Err(format!(
                    "the module has {} exports, more than the limit of {max_functions}",
                    e.count()
                ));
            }
            Payload::GlobalSection(globals) => {
                for (i, global) in globals.into_iter().enumerate() {
                    let global =
                        global.map_err(|e| format!("malformed module: {}", e.message()))?;
                    if global.ty.mutable {
                        return Err(format!(
                            "global {i} is mutable: ABI v2 modules define no mutable global (a global is state a call could leave for the next; clang's unused `__stack_pointer` is dropped by sandbox/guest/build-examples.sh)"
                        ));
                    }
                }
            }
            Payload::CodeSectionStart { size, .. } if size as usize > limits.max_code_bytes => {
                return Err(format!(
                    "the module has {size} bytes of code, more than the limit of {} (compilation must stay bounded)",
                    limits.max_code_bytes
                ));
            }
            Payload::CodeSectionEntry(body) => {
                let size = body.range().len();
                if size > limits.max_function_bytes {
                    return Err(format!(
                        "function {function} has {size} bytes of code, more than the limit of {} (compilation must stay bounded)",
                        limits.max_function_bytes
                    ));
                }
                let mut locals = body
                    .get_locals_reader()
                    .map_err(|e| format!("malformed module: {}", e.message()))?;
                let mut declared = 0u64;
                for _ in 0..locals.get_count() {
                    let (n, _) = locals
                        .read()
                        .map_err(|e| format!("malformed module: {}", e.message()))?;
                    declared += u64::from(n);
                }
                if declared > u64::from(limits.max_function_locals) {
                    return Err(format!(
                        "function {function} declares {declared} locals, more than the limit of {} (compilation must stay bounded)",
                        limits.max_function_locals
                    ));
                }
                let mut ops = body
                    .get_operators_reader()
                    .map_err(|e| format!("malformed module: {}", e.message()))?;
                while !ops.eof() {
                    let offset = ops.original_position();
                    let op = ops
                        .read()
                        .map_err(|e| format!("malformed module: {}", e.message()))?;
                    if writes_state(&op) {
                        return Err(format!(
                            "function {function} writes state at byte {offset} (`{}`): ABI v2 functions must be pure (no stores, no memory.grow, no global.set)",
                            op_name(&op)
                        ));
                    }
                }
                function += 1;
            }
            _ => {}
        }
    }
    Ok(())
}

/// The text-format name of a refused instruction.
fn op_name(op: &Operator<'_>) -> &'static str {
    use Operator as O;
    match op {
        O::MemoryGrow { .. } => "memory.grow",
        O::GlobalSet { .. } => "global.set",
        O::V128Store { .. }
        | O::V128Store8Lane { .. }
        | O::V128Store16Lane { .. }
        | O::V128Store32Lane { .. }
        | O::V128Store64Lane { .. } => "v128.store",
        _ => "store",
    }
}
