;; (a) Visits by district for patients aged 65 and over, in WebAssembly text.
;; Memory layout: names at 0, age (i64 x 4096) at 1024, district (u32 x 4096) at 33792,
;; rows (u32 x 4096) at 50176, keys (u32 x 4096) at 66560.
(module
  (import "dataop" "dataset" (func $dataset (param i32 i32) (result i32)))
  (import "dataop" "column" (func $column (param i32 i32 i32) (result i32)))
  (import "dataop" "aggregate" (func $aggregate (param i32 i32) (result i32)))
  (import "dataop" "next_batch" (func $next_batch (param i32 i32) (result i32)))
  (import "dataop" "read" (func $read (param i32 i32 i32) (result i32)))
  (import "dataop" "emit" (func $emit (param i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 0) "outpatients")
  (data (i32.const 16) "age")
  (data (i32.const 32) "district")
  (data (i32.const 48) "visits_by_district")
  (func (export "dataop_main") (result i32)
    (local $ds i32) (local $age i32) (local $district i32) (local $agg i32)
    (local $n i32) (local $i i32) (local $k i32) (local $d i32)
    (local.set $ds (call $dataset (i32.const 0) (i32.const 11)))
    (local.set $age (call $column (local.get $ds) (i32.const 16) (i32.const 3)))
    (local.set $district (call $column (local.get $ds) (i32.const 32) (i32.const 8)))
    (local.set $agg (call $aggregate (i32.const 48) (i32.const 18)))
    (block $done
      (loop $batches
        (local.set $n (call $next_batch (local.get $ds) (i32.const 4096)))
        (br_if $done (i32.eqz (local.get $n)))
        (drop (call $read (local.get $age) (i32.const 1024) (i32.const 32768)))
        (drop (call $read (local.get $district) (i32.const 33792) (i32.const 16384)))
        (local.set $i (i32.const 0))
        (local.set $k (i32.const 0))
        (block $rows_done
          (loop $rows
            (br_if $rows_done (i32.ge_u (local.get $i) (local.get $n)))
            (local.set $d (i32.load (i32.add (i32.const 33792) (i32.shl (local.get $i) (i32.const 2)))))
            (i32.store (i32.add (i32.const 50176) (i32.shl (local.get $k) (i32.const 2))) (local.get $i))
            (i32.store (i32.add (i32.const 66560) (i32.shl (local.get $k) (i32.const 2))) (local.get $d))
            (local.set $k (i32.add (local.get $k)
              (i32.and
                (i64.ge_s (i64.load (i32.add (i32.const 1024) (i32.shl (local.get $i) (i32.const 3)))) (i64.const 65))
                (i32.ne (local.get $d) (i32.const -1)))))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $rows)))
        (drop (call $emit (local.get $agg) (local.get $ds) (local.get $k)
          (i32.const 50176) (i32.const 66560) (i32.const 0)))
        (br $batches)))
    (i32.const 0)))
