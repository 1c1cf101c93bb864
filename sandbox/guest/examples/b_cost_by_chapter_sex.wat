;; (b) Mean total cost by ICD-10 chapter and sex (ABI v2, WebAssembly text); the twin of
;; b_cost_by_chapter_sex.c. (c) is this module run under c_cost_by_chapter_sex_dp.toml, which
;; declares an epsilon. Each row's declared columns arrive as parameters, in the manifest's
;; order: icd10_chapter and sex (category codes: i32, NULL = -1) and total_cost (decimal with
;; scale 2: i64, value x 100, NULL = i64::MIN). The host clamps each cost to [0, 5000.00].
(module
  ;; Keep the row when the chapter, the sex and the cost are known.
  (func (export "cost_by_chapter_sex.keep")
    (param $chapter i32) (param $sex i32) (param $cost i64) (result i32)
    (i32.and
      (i32.and
        (i32.ne (local.get $chapter) (i32.const -1))
        (i32.ne (local.get $sex) (i32.const -1)))
      (i64.ne (local.get $cost) (i64.const 0x8000000000000000))))
  ;; The row's cell: its chapter and its sex.
  (func (export "cost_by_chapter_sex.icd10_chapter")
    (param $chapter i32) (param $sex i32) (param $cost i64) (result i32)
    (local.get $chapter))
  (func (export "cost_by_chapter_sex.sex")
    (param $chapter i32) (param $sex i32) (param $cost i64) (result i32)
    (local.get $sex))
  ;; The row's value of the measure: its cost.
  (func (export "cost_by_chapter_sex.total_cost")
    (param $chapter i32) (param $sex i32) (param $cost i64) (result i64)
    (local.get $cost)))
