;; (d) Patients aged 65 and over seen in both the outpatient and the inpatient dataset, by
;; their number of outpatient visits (1, 2-4, 5 or more), through the per-person stage (ABI v2,
;; WebAssembly text); the twin of d_patients_two_datasets.c. The host links each person's rows
;; across the two datasets by pseudonym (which the job never sees), counts the rows each
;; dataset's `keep` function kept, and hands the person's counts to the per-person functions.
(module
  ;; Rows of both datasets: age (integer: i64, NULL = i64::MIN), district (category: i32).
  ;; NULL is below 65, so one comparison keeps the known ages of 65 and over.
  (func (export "person.outpatients.keep") (param $age i64) (param $district i32) (result i32)
    (i64.ge_s (local.get $age) (i64.const 65)))
  (func (export "person.inpatients.keep") (param $age i64) (param $district i32) (result i32)
    (i64.ge_s (local.get $age) (i64.const 65)))
  ;; Per person: the outpatient rows kept, then the inpatient rows kept (no measures).
  (func (export "patients_in_both.keep") (param $visits i64) (param $stays i64) (result i32)
    (i32.and
      (i64.gt_s (local.get $visits) (i64.const 0))
      (i64.gt_s (local.get $stays) (i64.const 0))))
  ;; The person's cell: 0 for one visit, 1 for 2 to 4, 2 for 5 or more.
  (func (export "patients_in_both.outpatient_visits") (param $visits i64) (param $stays i64) (result i32)
    (select
      (i32.const 2)
      (i64.ge_s (local.get $visits) (i64.const 2))
      (i64.ge_s (local.get $visits) (i64.const 5)))))
