//! The developer commands: `sandbox check` and `sandbox run` on CSV trial data.

use std::fmt::Write as _;
use std::path::Path;

use dataop_sandbox::cli::{check_command, run_command};

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/guest/examples");

fn trial_csv(dir: &Path) -> std::path::PathBuf {
    let mut s = String::from(
        "person_id,patient_name,district,age,sex,visit_date,icd10_chapter,department,total_cost,insured_cost\n",
    );
    for i in 0..60 {
        let district = if i < 40 { "330102" } else { "330106" };
        let _ = writeln!(
            s,
            "3301021950010{:04}X,张{i},{district},{},{},2024-03-{:02},IX,内科,{}.50,10.00",
            i % 30,
            60 + i % 20,
            if i % 2 == 0 { "M" } else { "F" },
            1 + i % 28,
            100 + i
        );
    }
    let path = dir.join("trial.csv");
    std::fs::write(&path, s).unwrap();
    path
}

#[test]
fn check_and_run_on_csv_trial_data() {
    let dir = std::env::temp_dir().join(format!("dataop-sandbox-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let csv = trial_csv(&dir);
    let module = Path::new(EXAMPLES).join("a_visits_65plus.wat");
    let manifest = Path::new(EXAMPLES).join("a_visits_65plus.toml");
    let mut out = Vec::new();
    assert_eq!(check_command(&module, &manifest, &mut out).unwrap(), 0);
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("\"visits_by_district.district\"") && text.contains("\"abi\": 2"),
        "{text}"
    );

    let mut out = Vec::new();
    let code = run_command(&module, &manifest, &[csv.display().to_string()], &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(code, 0, "{text}");
    // 30 distinct persons; ages 65+ are i % 20 >= 5; persons are i % 30.
    assert!(text.contains("\"suppressed\": true"), "{text}");
    assert!(text.contains("\"kind\": \"finished\""), "{text}");

    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "abi = 3\nname = \"x\"\ndatasets = []\naggregates = []\n",
    )
    .unwrap();
    let mut out = Vec::new();
    assert_eq!(
        run_command(&module, &bad, &[csv.display().to_string()], &mut out).unwrap(),
        1
    );
    assert!(
        String::from_utf8(out)
            .unwrap()
            .contains("ABI version 3 is not supported")
    );
}
