//! Why the sandbox refused a submitted manifest or module, in the reader's language.
//!
//! The sandbox states its refusals in English for platform staff ([`Manifest::from_toml`],
//! `Runtime::load`, `Runtime::check_exports`). An operator is shown a message of the page's
//! catalog instead (`jobs.refusal.*`), whose arguments the host picks:
//!
//! * a manifest that is not TOML, or whose tables do not have the manifest's fields, is parsed
//!   again here: the message names the line and column, and the field that is missing, unknown
//!   or of the wrong type;
//! * every other refusal is one of the sandbox's forms listed here (`MANIFEST_FORMS`,
//!   `MODULE_FORMS`); the message takes the names and numbers the form holds (a
//!   declaration, an import, an export, a limit) and the declarations it is about
//!   (`aggregate a: measure m: …`), never the sandbox's words.
//!
//! A reason of a form not listed reads as the stage's general message (`manifest_other`,
//! `module_other`) and is logged for platform staff; a unit test provokes every refusal of the
//! sandbox and checks that none of them falls there.

use dataop_sandbox::{Manifest, Outcome};

use crate::i18n::{Lang, t, t_args};

/// A refusal: a message of `jobs.refusal` with its arguments, under the declarations it is
/// about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    /// The declarations the refusal is about, outermost first: a word of
    /// `jobs.refusal.what` and the declaration's name.
    within: Vec<(&'static str, String)>,
    /// The message, under `jobs.refusal`.
    key: &'static str,
    /// Values for the message's placeholders.
    args: Vec<(&'static str, Arg)>,
}

/// A placeholder's value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Arg {
    /// A name or number, shown as it is.
    Text(String),
    /// A word of `jobs.refusal.what`, in the reader's language.
    Word(&'static str),
}

impl Reason {
    fn new(key: &'static str) -> Self {
        Reason {
            within: Vec::new(),
            key,
            args: Vec::new(),
        }
    }

    fn arg(mut self, name: &'static str, value: impl ToString) -> Self {
        self.args.push((name, Arg::Text(value.to_string())));
        self
    }

    /// The refusal in `lang`.
    pub fn message(&self, lang: Lang) -> String {
        let word = |w: &str| t(lang, &format!("jobs.refusal.what.{w}")).to_owned();
        let mut out = String::new();
        for (what, name) in &self.within {
            out.push_str(&t_args(
                lang,
                "jobs.refusal.within",
                &[("what", word(what)), ("name", name.clone())],
            ));
        }
        let args: Vec<(&str, String)> = self
            .args
            .iter()
            .map(|(name, value)| match value {
                Arg::Text(s) => (*name, s.clone()),
                Arg::Word(w) => (*name, word(w)),
            })
            .collect();
        out.push_str(&t_args(lang, &format!("jobs.refusal.{}", self.key), &args));
        out
    }
}

/// Why `text` was refused as a manifest, the sandbox's reason being `refused`.
pub fn manifest(text: &str, refused: &str) -> Reason {
    toml_reason(text)
        .or_else(|| sandbox_reason(refused, MANIFEST_FORMS))
        .unwrap_or_else(|| unlisted("manifest_other", refused))
}

/// Why the sandbox refused a module (`Runtime::load`, `Runtime::check_exports`).
pub fn module(outcome: &Outcome) -> Reason {
    match outcome {
        Outcome::Refused { reason } => malformed(reason)
            .or_else(|| sandbox_reason(reason, MODULE_FORMS))
            .unwrap_or_else(|| unlisted("module_other", reason)),
        other => unlisted("module_other", &other.describe()),
    }
}

/// The general message of a stage, for a reason of a form not listed here (logged).
fn unlisted(key: &'static str, refused: &str) -> Reason {
    tracing::warn!(
        reason = refused,
        "a sandbox refusal of a form without a message"
    );
    Reason::new(key)
}

/// A manifest that is not TOML, an ABI v1 manifest, or one whose tables do not have the
/// manifest's fields: what parsing it again tells, `None` when it parses (the sandbox's
/// checks of the declarations refused it).
fn toml_reason(text: &str) -> Option<Reason> {
    let table = match toml::from_str::<toml::Table>(text) {
        Ok(table) => table,
        Err(e) => {
            let (line, column) = position(text, e.span().map_or(0, |s| s.start));
            return Some(
                Reason::new("syntax")
                    .arg("line", line)
                    .arg("column", column),
            );
        }
    };
    if table.get("abi").and_then(toml::Value::as_integer) == Some(1) {
        return Some(Reason::new("abi_retired"));
    }
    let e = toml::from_str::<Manifest>(text).err()?;
    let span = e.span().unwrap_or(0..0);
    let (line, column) = position(text, span.start);
    let at = text.get(span.clone()).unwrap_or("");
    if at.is_empty() || at.starts_with('[') {
        // A table lacks a field: the span is the table's header (the top: empty, at 0), and
        // serde names the field (`missing field `name``).
        let field = quoted(e.message()).filter(|f| is_key(f))?;
        return Some(Reason::new("missing").arg("line", line).arg("field", field));
    }
    let line_text = text[text[..span.start].rfind('\n').map_or(0, |i| i + 1)..]
        .lines()
        .next()
        .unwrap_or("")
        .trim();
    let header = line_text.starts_with('[') && !line_text.contains(['=', ',']);
    // A field the table does not have: the span is its key, before `=` (or in a header).
    if is_key(at)
        && (text[span.end..].trim_start().starts_with('=')
            || (header && at.starts_with(|c: char| c.is_ascii_alphabetic())))
    {
        return Some(
            Reason::new("unknown")
                .arg("line", line)
                .arg("column", column)
                .arg("field", at),
        );
    }
    // A value of the wrong type or out of range: its key is the last `key =` before it.
    let before = &text[..span.start];
    let key = before[..before.rfind('=')?].trim_end();
    let key = &key[key
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .map_or(0, |i| i + 1)..];
    is_key(key).then(|| {
        Reason::new("value")
            .arg("line", line)
            .arg("column", column)
            .arg("field", key)
    })
}

/// The 1-based line and column (in characters) of byte `offset` of `text`.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..text.floor_char_boundary(offset)];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
}

/// Whether `s` is a bare TOML key.
fn is_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The first text between backquotes in `s`.
fn quoted(s: &str) -> Option<&str> {
    let start = s.find('`')? + 1;
    let len = s[start..].find('`')?;
    Some(&s[start..start + len])
}

/// A module the sandbox could not read (`malformed module: …`): where in its WAT text, when
/// the parser says (`--> <anon>:line:column` or `at <anon>:line:column`).
fn malformed(reason: &str) -> Option<Reason> {
    let detail = reason.strip_prefix("malformed module: ")?;
    let at = detail
        .find("<anon>:")
        .map(|i| &detail[i + "<anon>:".len()..])
        .and_then(|rest| {
            let mut it = rest.split(|c: char| !c.is_ascii_digit());
            Some((
                it.next()?.parse::<u64>().ok()?,
                it.next()?.parse::<u64>().ok()?,
            ))
        });
    Some(match at {
        Some((line, column)) => Reason::new("malformed_at")
            .arg("line", line)
            .arg("column", column),
        None => Reason::new("malformed"),
    })
}

/// A form of the sandbox's reasons: its words with `{}` where it holds a value, the message,
/// and the placeholder of each value (`_`: not shown).
type Form = (&'static str, &'static str, &'static [&'static str]);

/// The forms of `Manifest::from_toml`'s reasons (after the declarations they are about).
const MANIFEST_FORMS: &[Form] = &[
    ("ABI v1 is retired: {}", "abi_retired", &["_"]),
    (
        "ABI version {} is not supported (this host implements {})",
        "abi",
        &["abi", "supported"],
    ),
    ("no dataset is declared", "no_datasets", &[]),
    ("no aggregate is declared", "no_aggregates", &[]),
    (
        "names use a-z, 0-9 and _, start with a letter, at most 64 bytes",
        "name_rule",
        &[],
    ),
    ("{} `{}` is declared twice", "twice", &["what", "name"]),
    ("the dataset is not declared", "undeclared", &[]),
    (
        "dataset `{}` is not declared",
        "dataset_undeclared",
        &["name"],
    ),
    ("max_rows must be at least 1", "max_rows", &[]),
    (
        "the name `{}` is reserved for the per-person stage",
        "reserved",
        &["name"],
    ),
    (
        "the name `{}` is reserved for the row filter",
        "reserved",
        &["name"],
    ),
    (
        "a per-person aggregate takes one contribution per person: {}",
        "per_person_one",
        &["_"],
    ),
    (
        "per_person needs the per-person stage: {}",
        "per_person_stage",
        &["_"],
    ),
    (
        "give either `dataset` (one contribution per row) or `per_person = true`",
        "dataset_or_per_person",
        &[],
    ),
    ("per-person bounds must be at least 1", "bounds", &[]),
    ("epsilon {} is not a number", "epsilon_nan", &["_"]),
    (
        "bins need at least two strictly ascending edges",
        "bins",
        &[],
    ),
    ("give either `column` or `bins`", "column_or_bins", &[]),
    ("scale above {}", "scale", &["max"]),
    (
        "needs finite bounds min <= max of at most 10^12 in fixed point",
        "measure_bounds",
        &[],
    ),
];

/// The forms of `Runtime::load`'s and `Runtime::check_exports`' reasons.
const MODULE_FORMS: &[Form] = &[
    (
        "the module has {} bytes, more than the limit of {}",
        "module_size",
        &["size", "max"],
    ),
    (
        "the module uses WebAssembly outside ABI v2 ({}): {}",
        "features",
        &["_", "_"],
    ),
    (
        "the module imports `dataop::{}`: {}",
        "import_retired",
        &["name", "_"],
    ),
    ("import `{}` is not allowed: {}", "import", &["name", "_"]),
    ("the module has a start function: {}", "start", &["_"]),
    (
        "the module has {} functions, more than the limit of {}",
        "functions",
        &["count", "max"],
    ),
    (
        "the module has {} exports, more than the limit of {}",
        "exports",
        &["count", "max"],
    ),
    (
        "global {} is mutable: {}",
        "mutable_global",
        &["global", "_"],
    ),
    (
        "the module has {} bytes of code, more than the limit of {} {}",
        "code_size",
        &["size", "max", "_"],
    ),
    (
        "function {} has {} bytes of code, more than the limit of {} {}",
        "function_size",
        &["function", "size", "max", "_"],
    ),
    (
        "function {} declares {} locals, more than the limit of {} {}",
        "locals",
        &["function", "count", "max", "_"],
    ),
    (
        "function {} writes state at byte {} (`{}`): {}",
        "writes_state",
        &["function", "offset", "op", "_"],
    ),
    (
        "the module does not export the function `{}`",
        "export_missing",
        &["name"],
    ),
    (
        "export `{}` must take {} parameters (the declared columns, in order) and return {}",
        "export_type",
        &["name", "params", "result"],
    ),
];

/// The declarations a reason may be about, as the sandbox names them, and their words
/// (`jobs.refusal.what`); longest first, as one may start another.
const DECLARATIONS: &[(&str, &str)] = &[
    ("dimension or measure", "field"),
    ("per-person input", "person"),
    ("aggregate", "aggregate"),
    ("dimension", "dimension"),
    ("measure", "measure"),
    ("dataset", "dataset"),
    ("column", "column"),
];

/// The word of a declaration the sandbox names `what`.
fn declaration(what: &str) -> Option<&'static str> {
    DECLARATIONS
        .iter()
        .find(|(name, _)| *name == what)
        .map(|(_, word)| *word)
}

/// `refused` as one of `forms`, under the declarations it names first (`aggregate `a`: `,
/// `manifest: ` left out).
fn sandbox_reason(refused: &str, forms: &[Form]) -> Option<Reason> {
    let mut rest = refused;
    let mut within = Vec::new();
    loop {
        rest = rest.strip_prefix("manifest: ").unwrap_or(rest);
        let Some((word, name, after)) = DECLARATIONS.iter().find_map(|(what, word)| {
            let r = rest.strip_prefix(what)?.strip_prefix(" `")?;
            let end = r.find("`: ")?;
            Some((*word, &r[..end], &r[end + "`: ".len()..]))
        }) else {
            break;
        };
        within.push((word, shown(name)?));
        rest = after;
    }
    forms.iter().find_map(|(form, key, names)| {
        let values = holes(rest, form)?;
        let mut reason = Reason::new(key);
        reason.within.clone_from(&within);
        for (name, value) in names.iter().zip(values) {
            match *name {
                "_" => {}
                "what" => reason.args.push((name, Arg::Word(declaration(value)?))),
                _ => reason.args.push((name, Arg::Text(shown(value)?))),
            }
        }
        Some(reason)
    })
}

/// A name or number of a reason, as shown: printable, at most 200 characters.
fn shown(value: &str) -> Option<String> {
    (value.chars().count() <= 200 && !value.chars().any(char::is_control)).then(|| value.to_owned())
}

/// The values in the holes (`{}`) of `form` when `s` has that form: each hole takes the text
/// up to the first place the next words follow (the last one, up to the end).
fn holes<'a>(s: &'a str, form: &str) -> Option<Vec<&'a str>> {
    let mut words = form.split("{}");
    let mut rest = s.strip_prefix(words.next()?)?;
    let words: Vec<&str> = words.collect();
    let mut values = Vec::new();
    for (i, w) in words.iter().enumerate() {
        let end = if i + 1 == words.len() {
            rest.strip_suffix(w)?.len()
        } else {
            rest.find(w)?
        };
        values.push(&rest[..end]);
        rest = &rest[end + w.len()..];
    }
    rest.is_empty().then_some(values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataop_sandbox::{Limits, Runtime};

    const MANIFEST: &str = "abi = 2
name = \"x\"

[[datasets]]
name = \"d\"
columns = [\"age\"]

[[aggregates]]
name = \"a\"
dataset = \"d\"
dimensions = [{ name = \"band\", bins = [0, 65, 200] }]
measures = [{ name = \"m\", scale = 0, min = 0, max = 10 }]
";

    const MODULE: &str = "(module
  (func (export \"a.band\") (param i64) (result i32) (i32.const 0))
  (func (export \"a.m\") (param i64) (result i64) (i64.const 1)))";

    fn manifest_reason(text: &str) -> Reason {
        let refused = Manifest::from_toml(text).expect_err(text);
        manifest(text, &refused)
    }

    #[test]
    fn toml_errors_name_the_line_column_and_field() {
        let r = manifest_reason("abi = 2\nname = ");
        assert_eq!(r.message(Lang::En), "line 2, column 8 is not valid TOML.");
        assert_eq!(r.message(Lang::Zh), "第 2 行第 8 列不是有效的 TOML。");
        let r = manifest_reason(&MANIFEST.replace("columns = [\"age\"]\n", ""));
        assert_eq!(
            r,
            Reason::new("missing")
                .arg("line", 4)
                .arg("field", "columns")
        );
        let r = manifest_reason(&MANIFEST.replace("name = \"x\"", "name = \"x\"\ncolour = 1"));
        assert_eq!(
            r,
            Reason::new("unknown")
                .arg("line", 3)
                .arg("column", 1)
                .arg("field", "colour")
        );
        let r = manifest_reason(&MANIFEST.replace("min = 0", "min = \"low\""));
        assert_eq!(
            r,
            Reason::new("value")
                .arg("line", 12)
                .arg("column", 44)
                .arg("field", "min")
        );
        let r = manifest_reason(&MANIFEST.replace("abi = 2", "abi = 1"));
        assert_eq!(r, Reason::new("abi_retired"));
        let r = manifest_reason(&MANIFEST.replace("name = \"x\"\n", ""));
        assert_eq!(
            r,
            Reason::new("missing").arg("line", 1).arg("field", "name")
        );
    }

    /// Every refusal of `Manifest::from_toml`'s checks has a message of its own.
    #[test]
    fn every_manifest_refusal_of_the_sandbox_has_a_message() {
        let person = "[[person]]\ndataset = \"d\"\n\n[[aggregates]]";
        let cases = [
            (MANIFEST.replace("abi = 2", "abi = 3"), "abi"),
            (
                MANIFEST.replace("[[aggregates]]", "[[aggregatez]]"),
                "unknown",
            ),
            (
                "abi = 2\nname = \"x\"\ndatasets = []\naggregates = []\n".to_owned(),
                "no_datasets",
            ),
            (
                MANIFEST[..MANIFEST.find("[[aggregates]]").unwrap()]
                    .replace("name = \"x\"\n", "name = \"x\"\naggregates = []\n"),
                "no_aggregates",
            ),
            (
                MANIFEST.replace("name = \"d\"", "name = \"D\""),
                "name_rule",
            ),
            (
                MANIFEST.replace("columns = [\"age\"]", "columns = [\"age\", \"age\"]"),
                "twice",
            ),
            (
                MANIFEST.replace("dataset = \"d\"\ndim", "dataset = \"e\"\ndim"),
                "dataset_undeclared",
            ),
            (
                MANIFEST.replace(
                    "[[aggregates]]",
                    "[[person]]\ndataset = \"e\"\n\n[[aggregates]]",
                ),
                "undeclared",
            ),
            (
                MANIFEST.replace(
                    "[[aggregates]]",
                    "[[person]]\ndataset = \"d\"\nmax_rows = 0\n\n[[aggregates]]",
                ),
                "max_rows",
            ),
            (
                MANIFEST.replace("name = \"a\"", "name = \"person\""),
                "reserved",
            ),
            (
                MANIFEST.replace("name = \"m\"", "name = \"keep\""),
                "reserved",
            ),
            (
                MANIFEST
                    .replace("[[aggregates]]", person)
                    .replace("dataset = \"d\"\ndim", "per_person = true\ndim"),
                "per_person_one",
            ),
            (
                MANIFEST.replace("dataset = \"d\"\ndim", "per_person = true\ndim"),
                "per_person_stage",
            ),
            (
                MANIFEST.replace("dataset = \"d\"\ndim", "dim"),
                "dataset_or_per_person",
            ),
            (
                MANIFEST.replace(
                    "dataset = \"d\"\ndim",
                    "dataset = \"d\"\nmax_cells_per_person = 0\ndim",
                ),
                "bounds",
            ),
            (
                MANIFEST.replace(
                    "dataset = \"d\"\ndim",
                    "dataset = \"d\"\nepsilon = nan\ndim",
                ),
                "epsilon_nan",
            ),
            (MANIFEST.replace("[0, 65, 200]", "[0]"), "bins"),
            (
                MANIFEST.replace("bins = [0, 65, 200]", "column = \"age\", bins = [0, 1]"),
                "column_or_bins",
            ),
            (MANIFEST.replace("scale = 0", "scale = 7"), "scale"),
            (MANIFEST.replace("max = 10", "max = 1e13"), "measure_bounds"),
        ];
        for (text, key) in cases {
            let r = manifest_reason(&text);
            assert_eq!(r.key, key, "{text}\n{r:?}");
        }
        let r = manifest_reason(&MANIFEST.replace("name = \"m\"", "name = \"M\""));
        assert_eq!(
            r.message(Lang::Zh),
            "汇总 a：维度或度量 M：名称只能使用 a–z、0–9 和 _，以字母开头，最多 64 字节。"
        );
        assert_eq!(
            r.message(Lang::En),
            "aggregate a: dimension or measure M: names use a-z, 0-9 and _, start with a \
             letter, and have at most 64 bytes."
        );
        let r = manifest_reason(&MANIFEST.replace("name = \"band\"", "name = \"m\""));
        assert_eq!(
            r.message(Lang::En),
            "aggregate a: dimension or measure m is declared twice."
        );
        assert_eq!(r.message(Lang::Zh), "汇总 a：维度或度量 m 声明了两次。");
    }

    /// Every refusal of `Runtime::load` and `Runtime::check_exports` has a message of its own.
    #[test]
    fn every_module_refusal_of_the_sandbox_has_a_message() {
        let limits = Limits {
            max_functions: 3,
            max_module_bytes: 6000,
            ..Limits::default()
        };
        let rt = Runtime::new(limits, None).unwrap();
        let cases = [
            (" ".repeat(7000), "module_size"),
            ("(module (func $f (param i32)".to_owned(), "malformed_at"),
            (
                MODULE.replace("(module", "(module (memory 1) (func (memory.fill (i32.const 0) (i32.const 0) (i32.const 0)))"),
                "features",
            ),
            (
                MODULE.replace("(module", "(module (import \"dataop\" \"emit\" (func))"),
                "import_retired",
            ),
            (
                MODULE.replace("(module", "(module (import \"wasi_snapshot_preview1\" \"fd_write\" (func))"),
                "import",
            ),
            (MODULE.replace("(module", "(module (func $s) (start $s)"), "start"),
            (
                MODULE.replace("(module", "(module (func) (func)"),
                "functions",
            ),
            (
                MODULE.replace("(module", "(module (global $g (mut i64) (i64.const 0))")
                    .replace("(i64.const 1)", "(global.set $g (i64.const 1)) (i64.const 1)"),
                "mutable_global",
            ),
            (
                MODULE.replace("(module", "(module (memory 1)").replace(
                    "(i64.const 1)",
                    "(i64.store (i32.const 0) (i64.const 1)) (i64.const 1)",
                ),
                "writes_state",
            ),
            (
                MODULE.replace("(result i64) (i64.const 1)", "(result i64) (local i64 i64 i64 i64 i64 i64 i64 i64 i64 i64) (i64.const 1)")
                    .replace("(local i64 i64 i64 i64 i64 i64 i64 i64 i64 i64)", &"(local i64 i64 i64 i64 i64 i64 i64 i64 i64 i64)".repeat(101)),
                "locals",
            ),
            (MODULE.replace("a.m", "a.other"), "export_missing"),
            (
                MODULE.replace("(param i64) (result i64)", "(param i64 i64) (result i64)"),
                "export_type",
            ),
        ];
        let manifest = Manifest::from_toml(MANIFEST).unwrap();
        for (text, key) in cases {
            let outcome = match rt.load(text.as_bytes()) {
                Ok(m) => rt.check_exports(&m, &manifest).expect_err(&text),
                Err(outcome) => outcome,
            };
            let r = module(&outcome);
            assert_eq!(r.key, key, "{text}\n{outcome:?}");
        }
        let outcome = rt.load(b"\xff\xfe").unwrap_err();
        assert_eq!(module(&outcome).key, "malformed", "{outcome:?}");
        let exports = (0..4)
            .map(|i| format!("(export \"e{i}\" (func 0))"))
            .collect::<String>();
        let outcome = rt
            .load(
                MODULE
                    .replace("(module", &format!("(module {exports}"))
                    .as_bytes(),
            )
            .unwrap_err();
        assert_eq!(module(&outcome).key, "exports");

        let outcome = rt
            .load(
                MODULE
                    .replace(
                        "(module",
                        "(module (import \"wasi_snapshot_preview1\" \"fd_write\" (func))",
                    )
                    .as_bytes(),
            )
            .unwrap_err();
        assert_eq!(
            module(&outcome).message(Lang::Zh),
            "不允许导入 wasi_snapshot_preview1::fd_write：ABI v2 模块不导入任何东西（无 WASI、时钟、随机数、文件、网络或宿主函数）。"
        );
    }

    #[test]
    fn a_reason_of_an_unlisted_form_reads_as_the_general_message() {
        let r = manifest(MANIFEST, "something new");
        assert_eq!(r, Reason::new("manifest_other"));
        let r = module(&Outcome::Refused {
            reason: "something new".into(),
        });
        assert_eq!(r, Reason::new("module_other"));
        assert!(r.message(Lang::Zh).contains("sandbox/ABI.md"));
    }

    #[test]
    fn holes_take_the_text_between_the_words() {
        assert_eq!(
            holes("a `x` b `y` c", "a `{}` b `{}` c"),
            Some(vec!["x", "y"])
        );
        assert_eq!(holes("scale above 6", "scale above {}"), Some(vec!["6"]));
        assert_eq!(holes("scale above 6!", "scale above {}."), None);
        assert_eq!(holes("x", "y"), None);
    }
}
