/* (a) Visits by district for patients aged 65 and over. */
#include "dataop.h"

#define B 16384
static int64_t age[B];
static uint32_t district[B];
static uint32_t rows[B];
static uint32_t keys[B];

DATAOP_MAIN {
    int32_t ds = DATAOP_DATASET("outpatients");
    int32_t c_age = DATAOP_COLUMN(ds, "age");
    int32_t c_district = DATAOP_COLUMN(ds, "district");
    int32_t agg = DATAOP_AGGREGATE("visits_by_district");
    int32_t n;
    while ((n = dataop_next_batch(ds, B)) > 0) {
        dataop_read(c_age, age, sizeof age);
        dataop_read(c_district, district, sizeof district);
        int32_t k = 0;
        for (int32_t i = 0; i < n; i++) {
            rows[k] = (uint32_t)i;
            keys[k] = district[i];
            k += (age[i] >= 65) & (district[i] != DATAOP_NULL_CATEGORY);
        }
        dataop_emit(agg, ds, k, rows, keys, 0);
    }
    return 0;
}
