/* (b) Mean total cost by ICD-10 chapter and sex, costs clamped to the declared bounds.
 * (c) is the same module run under a manifest that declares an epsilon. */
#include "dataop.h"

#define B 8192
static uint32_t chapter[B];
static uint32_t sex[B];
static int64_t cost[B];
static uint32_t rows[B];
static uint32_t keys[2 * B];
static int64_t measures[B];

DATAOP_MAIN {
    int32_t ds = DATAOP_DATASET("outpatients");
    int32_t c_chapter = DATAOP_COLUMN(ds, "icd10_chapter");
    int32_t c_sex = DATAOP_COLUMN(ds, "sex");
    int32_t c_cost = DATAOP_COLUMN(ds, "total_cost");
    int32_t agg = DATAOP_AGGREGATE("cost_by_chapter_sex");
    if (dataop_column_kind(c_cost) != 2) {
        DATAOP_LOG("total_cost is not a decimal column");
        return 1;
    }
    int32_t n;
    while ((n = dataop_next_batch(ds, B)) > 0) {
        dataop_read(c_chapter, chapter, sizeof chapter);
        dataop_read(c_sex, sex, sizeof sex);
        dataop_read(c_cost, cost, sizeof cost);
        int32_t k = 0;
        for (int32_t i = 0; i < n; i++) {
            rows[k] = (uint32_t)i;
            keys[2 * k] = chapter[i];
            keys[2 * k + 1] = sex[i];
            measures[k] = cost[i];
            k += (chapter[i] != DATAOP_NULL_CATEGORY) & (sex[i] != DATAOP_NULL_CATEGORY) &
                 (cost[i] != DATAOP_NULL_I64);
        }
        dataop_emit(agg, ds, k, rows, keys, measures);
    }
    return 0;
}
