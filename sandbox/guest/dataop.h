/* dataop guest SDK, ABI v2 (see sandbox/ABI.md).
 *
 * A job is a set of pure functions. The host calls them once per row (or, in the per-person
 * stage, once per person) with the row's declared columns as parameters, in the manifest's
 * order, and takes one value back from each: whether to keep the row, each key of its cell,
 * each measure. The functions may read constant data (lookup tables) but write nothing: no
 * stores, no mutable globals, no memory growth. The host validates this before anything runs,
 * so write scalar code: no arrays on the stack, no address-taken locals (clang at -O2 then
 * keeps no shadow stack).
 *
 * Build a job as sandbox/guest/build-examples.sh builds the examples:
 *   clang --target=wasm32 -nostdlib -ffreestanding -O2 -I sandbox/guest \
 *         -Wl,--no-entry -Wl,--strip-all -o job.wasm job.c
 * then drop the global section, which holds only wasm-ld's unused `__stack_pointer` (a mutable
 * global, which the host refuses); the script's `drop_stack_pointer` does it.
 *
 * Parameter types follow the column types: integer and decimal columns are int64_t (a decimal
 * is value x 10^scale), dates int32_t (days since 1970-01-01), categories int32_t (the code's
 * index among the column's declared codes). NULL values arrive as the sentinels below. In the
 * per-person stage every parameter is int64_t: for each [[person]] input in order, the number
 * of the person's rows its keep function kept, then the sum of each of its measures.
 */
#ifndef DATAOP_H
#define DATAOP_H

typedef signed char int8_t;
typedef int int32_t;
typedef unsigned int uint32_t;
typedef long long int64_t;
typedef unsigned long long uint64_t;

/* NULL sentinels of the values handed to the functions. */
#define DATAOP_NULL_I64 ((int64_t)0x8000000000000000ULL)
#define DATAOP_NULL_DATE ((int32_t)0x80000000U)
#define DATAOP_NULL_CATEGORY (-1)

#define DATAOP_EXPORT(name) __attribute__((export_name(name)))

/* `DATAOP_KEEP(agg, params...) { return ...; }`: keep the row (non-zero) for aggregate `agg`
 * (optional: without it every row is kept). */
#define DATAOP_KEEP(agg, ...) DATAOP_EXPORT(#agg ".keep") int32_t agg##__keep(__VA_ARGS__)
/* `DATAOP_KEY(agg, dim, params...) { return code; }`: the row's code in dimension `dim` of `agg`
 * (a code outside the dimension's domain drops the row). */
#define DATAOP_KEY(agg, dim, ...) DATAOP_EXPORT(#agg "." #dim) int32_t agg##__##dim(__VA_ARGS__)
/* `DATAOP_MEASURE(agg, m, params...) { return value; }`: the row's value of measure `m` of `agg`
 * (fixed point with the measure's scale; the host clamps it to the declared bounds). */
#define DATAOP_MEASURE(agg, m, ...) DATAOP_EXPORT(#agg "." #m) int64_t agg##__##m(__VA_ARGS__)
/* `DATAOP_PERSON_KEEP(ds, params...)`: keep the row of dataset `ds` for the per-person stage. */
#define DATAOP_PERSON_KEEP(ds, ...) \
    DATAOP_EXPORT("person." #ds ".keep") int32_t person__##ds##__keep(__VA_ARGS__)
/* `DATAOP_PERSON_MEASURE(ds, m, params...)`: the row's value of measure `m`, summed per person. */
#define DATAOP_PERSON_MEASURE(ds, m, ...) \
    DATAOP_EXPORT("person." #ds "." #m) int64_t person__##ds##__##m(__VA_ARGS__)

#endif
