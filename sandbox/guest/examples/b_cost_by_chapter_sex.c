/* (b) Mean total cost by ICD-10 chapter and sex, costs clamped to the declared bounds by the
 * host. (c) is the same module run under a manifest that declares an epsilon.
 * The row functions receive `icd10_chapter`, `sex` (category codes) and `total_cost` (decimal,
 * value x 100), in that order. */
#include "dataop.h"

#define ROW int32_t chapter, int32_t sex, int64_t cost

DATAOP_KEEP(cost_by_chapter_sex, ROW) {
    return chapter != DATAOP_NULL_CATEGORY && sex != DATAOP_NULL_CATEGORY &&
           cost != DATAOP_NULL_I64;
}

DATAOP_KEY(cost_by_chapter_sex, icd10_chapter, ROW) {
    (void)sex;
    (void)cost;
    return chapter;
}

DATAOP_KEY(cost_by_chapter_sex, sex, ROW) {
    (void)chapter;
    (void)cost;
    return sex;
}

DATAOP_MEASURE(cost_by_chapter_sex, total_cost, ROW) {
    (void)chapter;
    (void)sex;
    return cost;
}
