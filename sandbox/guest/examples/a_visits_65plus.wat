;; (a) Visits by district for patients aged 65 and over (ABI v2, WebAssembly text).
;; Each row's declared columns arrive as parameters, in the manifest's order:
;; age (integer: i64, NULL = i64::MIN) and district (category code: i32, NULL = -1).
(module
  ;; Keep the row when the patient is 65 or over and the district is known.
  (func (export "visits_by_district.keep") (param $age i64) (param $district i32) (result i32)
    (i32.and
      (i64.ge_s (local.get $age) (i64.const 65))
      (i32.ne (local.get $district) (i32.const -1))))
  ;; The row's cell: its district code.
  (func (export "visits_by_district.district") (param $age i64) (param $district i32) (result i32)
    (local.get $district)))
