/* dataop guest SDK, ABI v1 (see sandbox/ABI.md).
 *
 * Build a job with:
 *   clang --target=wasm32 -nostdlib -ffreestanding -O2 -I sandbox/guest \
 *         -Wl,--no-entry -Wl,--export-dynamic -o job.wasm job.c
 *
 * A job defines `DATAOP_MAIN { ... return 0; }`, opens its dataset, columns and aggregates by
 * name, pulls batches of rows with dataop_next_batch, copies the columns it declared into its own
 * buffers with dataop_read, and emits contributions in bulk with dataop_emit. The host counts,
 * sums, bounds, thresholds and (optionally) noises; the job never writes the output.
 * Any misuse (bad handle, pointer outside memory, key outside its domain, row outside the batch,
 * undeclared or forbidden column) stops the run with a named reason.
 */
#ifndef DATAOP_H
#define DATAOP_H

typedef signed char int8_t;
typedef int int32_t;
typedef unsigned int uint32_t;
typedef long long int64_t;
typedef unsigned long long uint64_t;

#define DATAOP_IMPORT(n) __attribute__((import_module("dataop"), import_name(n)))

/* Handle of the dataset `name` declared in the manifest. */
DATAOP_IMPORT("dataset") int32_t dataop_dataset(const char *name, int32_t len);
/* Handle of column `name` of dataset `ds`, declared in the manifest. */
DATAOP_IMPORT("column") int32_t dataop_column(int32_t ds, const char *name, int32_t len);
/* Kind of a column: 1 integer (int64), 2 decimal (int64 = value * 10^scale),
 * 3 date (int32 days since 1970-01-01), 4 category (uint32 code index). */
DATAOP_IMPORT("column_kind") int32_t dataop_column_kind(int32_t col);
/* Handle of the aggregate `name` declared in the manifest. */
DATAOP_IMPORT("aggregate") int32_t dataop_aggregate(const char *name, int32_t len);
/* Moves dataset `ds` to its next batch of at most `max_rows` rows; returns the number of rows,
 * 0 when there are no more. */
DATAOP_IMPORT("next_batch") int32_t dataop_next_batch(int32_t ds, int32_t max_rows);
/* Copies the current batch of column `col` into `dst` (capacity `cap` bytes); returns rows. */
DATAOP_IMPORT("read") int32_t dataop_read(int32_t col, void *dst, int32_t cap);
/* Emits `n` contributions to aggregate `agg` for rows of the current batch of `ds`:
 * rows[n] (row numbers in the batch), keys[n * dimensions] (one code per dimension, row-major),
 * measures[n * measures] (fixed-point values, row-major). Returns n. */
DATAOP_IMPORT("emit") int32_t dataop_emit(int32_t agg, int32_t ds, int32_t n, const uint32_t *rows,
                                          const uint32_t *keys, const int64_t *measures);
/* Appends `len` bytes to the run's log (seen by the platform operator only; capped). */
DATAOP_IMPORT("log") void dataop_log(const char *msg, int32_t len);

/* NULL sentinels of the stored values. */
#define DATAOP_NULL_I64 ((int64_t)0x8000000000000000ULL)
#define DATAOP_NULL_DATE ((int32_t)0x80000000U)
#define DATAOP_NULL_CATEGORY 0xFFFFFFFFU

/* Helpers taking string literals. */
#define DATAOP_DATASET(lit) dataop_dataset(lit, (int32_t)sizeof(lit) - 1)
#define DATAOP_COLUMN(ds, lit) dataop_column(ds, lit, (int32_t)sizeof(lit) - 1)
#define DATAOP_AGGREGATE(lit) dataop_aggregate(lit, (int32_t)sizeof(lit) - 1)
#define DATAOP_LOG(lit) dataop_log(lit, (int32_t)sizeof(lit) - 1)

/* The entry point: `DATAOP_MAIN { ...; return 0; }`. A non-zero return fails the run. */
#define DATAOP_MAIN __attribute__((export_name("dataop_main"))) int32_t dataop_main(void)

#endif
