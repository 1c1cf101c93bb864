/* (a) Visits by district for patients aged 65 and over.
 * The row functions receive the declared columns `age` and `district`, in that order. */
#include "dataop.h"

DATAOP_KEEP(visits_by_district, int64_t age, int32_t district) {
    return age >= 65 && district != DATAOP_NULL_CATEGORY;
}

DATAOP_KEY(visits_by_district, district, int64_t age, int32_t district) {
    (void)age;
    return district;
}
