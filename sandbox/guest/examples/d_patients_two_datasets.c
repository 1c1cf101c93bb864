/* (d) Patients aged 65 and over seen in both the outpatient and the inpatient dataset, by
 * their number of outpatient visits (1, 2-4, 5 or more), through the per-person stage: the
 * host links each person's rows across the two datasets by pseudonym (which the job never
 * sees), counts the rows each dataset's `keep` function kept, and hands the person's counts
 * to the per-person functions, which place the person in a cell. */
#include "dataop.h"

/* Rows of both datasets: `age`, `district`, in that order. */
DATAOP_PERSON_KEEP(outpatients, int64_t age, int32_t district) {
    (void)district;
    return age >= 65 && age != DATAOP_NULL_I64;
}

DATAOP_PERSON_KEEP(inpatients, int64_t age, int32_t district) {
    (void)district;
    return age >= 65 && age != DATAOP_NULL_I64;
}

/* Per person: the outpatient rows kept, then the inpatient rows kept (no measures). */
#define PERSON int64_t outpatient_visits, int64_t inpatient_stays

DATAOP_KEEP(patients_in_both, PERSON) {
    return outpatient_visits > 0 && inpatient_stays > 0;
}

DATAOP_KEY(patients_in_both, outpatient_visits, PERSON) {
    (void)inpatient_stays;
    return outpatient_visits >= 5 ? 2 : outpatient_visits >= 2 ? 1 : 0;
}
