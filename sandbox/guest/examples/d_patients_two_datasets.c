/* (d) Distinct patients aged 65 and over by district, seen in the outpatient or the inpatient
 * dataset: both datasets contribute to one aggregate and the host counts each person once,
 * because pseudonyms are the same in every dataset. The job never sees the pseudonyms. */
#include "dataop.h"

#define B 8192
static int64_t age[B];
static uint32_t district[B];
static uint32_t rows[B];
static uint32_t keys[B];

static void scan(int32_t ds, int32_t agg) {
    int32_t c_age = DATAOP_COLUMN(ds, "age");
    int32_t c_district = DATAOP_COLUMN(ds, "district");
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
}

DATAOP_MAIN {
    int32_t agg = DATAOP_AGGREGATE("patients_by_district");
    scan(DATAOP_DATASET("outpatients"), agg);
    scan(DATAOP_DATASET("inpatients"), agg);
    return 0;
}
