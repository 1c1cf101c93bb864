//! How an audit entry reads to a person: its action and object named in the page language and
//! its JSON details as `label: value` lines, ids linked to their pages. The audit page, its CSV
//! export and every history drawn from the audit log (e.g. an agreement's) use these.
//!
//! Names come from `locales/<lang>/supervision.toml`: `actions.<object>.<verb>` for actions,
//! `objects.<type>` for object types, `fields.<key>` for detail keys. A code without a name
//! is shown as stored, so a new action is readable before it is translated.

use serde_json::Value;

use chrono::NaiveDateTime;
use chrono_tz::Tz;

use crate::i18n::{self, Lang};

/// Longest value shown for one detail (characters); longer texts end with `…`.
const MAX_VALUE_CHARS: usize = 600;
/// Most detail lines shown for one entry.
const MAX_LINES: usize = 40;

/// One `label: value` line of an entry's details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detail {
    /// The key's name in the page language (the key itself when it has none).
    pub label: String,
    /// The value as text.
    pub value: String,
    /// The pages the value names (an id of an application, job, …), as `(text, href)`.
    pub links: Vec<(String, String)>,
}

/// The name of an action code (`agreement.seal`) in `lang`, or the code.
pub fn action_name(lang: Lang, action: &str) -> String {
    let key = format!("supervision.actions.{action}");
    if i18n::has_key(lang, &key) {
        i18n::t(lang, &key).to_owned()
    } else {
        action.to_owned()
    }
}

/// The name of an object type (`agreement`) in `lang`, or the type.
pub fn object_name(lang: Lang, object_type: &str) -> String {
    let key = format!("supervision.objects.{object_type}");
    if i18n::has_key(lang, &key) {
        i18n::t(lang, &key).to_owned()
    } else {
        object_type.to_owned()
    }
}

/// Every translated action code, in code order, with its name in `lang` (for the filter).
pub fn known_actions(lang: Lang) -> Vec<(String, String)> {
    let mut codes: Vec<String> = i18n::keys_with_prefix(lang, "supervision.actions.")
        .into_iter()
        .map(|k| k["supervision.actions.".len()..].to_owned())
        .collect();
    codes.sort();
    codes
        .into_iter()
        .map(|c| {
            let name = action_name(lang, &c);
            (c, name)
        })
        .collect()
}

/// The page of an object, when there is one to link to.
pub fn object_href(object_type: &str, id: &str) -> Option<String> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let base = match object_type {
        "agreement" => "/agreements",
        "application" => "/applications",
        "job" => "/jobs",
        "computation" => "/admin/computations",
        "dataset" => "/catalog",
        "call" => "/admission/calls",
        "organisation" => "/admission/orgs",
        "notice" => "/notices",
        "mail" => "/admin/outbox",
        _ => return None,
    };
    Some(format!("{base}/{id}"))
}

/// The object type an id-carrying detail key refers to (`application_id` → `application`).
fn linked_type(key: &str) -> Option<&'static str> {
    Some(match key {
        "application_id" | "application" => "application",
        "agreement_id" | "agreement" | "previous_id" | "amends" => "agreement",
        "job_id" | "job" | "runs" => "job",
        "computation_id" | "computation" => "computation",
        "dataset_id" => "dataset",
        "call_id" => "call",
        "org_id" | "organisation_id" => "organisation",
        _ => return None,
    })
}

fn label(lang: Lang, key: &str) -> String {
    let k = format!("supervision.fields.{key}");
    if i18n::has_key(lang, &k) {
        i18n::t(lang, &k).to_owned()
    } else {
        key.to_owned()
    }
}

/// A stored (UTC) timestamp written into details, if `s` is one.
fn timestamp(s: &str) -> Option<NaiveDateTime> {
    [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.fZ",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
}

fn scalar(v: &Value, zone: Tz) -> String {
    match v {
        Value::String(s) => match timestamp(s) {
            Some(t) => crate::web::fmt_datetime(zone, t),
            None => s.clone(),
        },
        Value::Null => "—".to_owned(),
        other => other.to_string(),
    }
}

fn shorten(s: String) -> String {
    if s.chars().count() <= MAX_VALUE_CHARS {
        s
    } else {
        let mut t: String = s.chars().take(MAX_VALUE_CHARS).collect();
        t.push('…');
        t
    }
}

fn push(out: &mut Vec<Detail>, (lang, zone): (Lang, Tz), key: &str, path: &str, v: &Value) {
    if out.len() >= MAX_LINES {
        return;
    }
    match v {
        Value::Object(map) => {
            for (k, inner) in map {
                push(
                    out,
                    (lang, zone),
                    k,
                    &format!("{path}{} · ", label(lang, k)),
                    inner,
                );
            }
        }
        Value::Array(items) if items.iter().any(Value::is_object) => {
            for (i, inner) in items.iter().enumerate() {
                push(out, (lang, zone), key, &format!("{path}{} ", i + 1), inner);
            }
        }
        _ => {
            let values: Vec<&Value> = match v {
                Value::Array(items) => items.iter().collect(),
                other => vec![other],
            };
            let text = values
                .iter()
                .map(|x| scalar(x, zone))
                .collect::<Vec<_>>()
                .join(", ");
            let links = linked_type(key)
                .map(|t| {
                    values
                        .iter()
                        .filter_map(|x| {
                            let id = scalar(x, zone);
                            object_href(t, &id).map(|h| (id, h))
                        })
                        .collect()
                })
                .unwrap_or_default();
            let label = path.trim_end_matches(" · ").trim_end().to_owned();
            out.push(Detail {
                label,
                value: shorten(text),
                links,
            });
        }
    }
}

/// The details of an entry (its stored JSON) as lines in `lang`, timestamps in `zone`; text
/// that is not a JSON object is one line labelled with the name of `details`.
pub fn render(lang: Lang, zone: Tz, details: &str) -> Vec<Detail> {
    let mut out = Vec::new();
    match serde_json::from_str::<Value>(details) {
        Ok(Value::Object(map)) => {
            for (k, v) in &map {
                push(
                    &mut out,
                    (lang, zone),
                    k,
                    &format!("{} · ", label(lang, k)),
                    v,
                );
            }
        }
        Ok(Value::Null) => {}
        Ok(other) => push(&mut out, (lang, zone), "details", "", &other),
        Err(_) if details.trim().is_empty() => {}
        Err(_) => out.push(Detail {
            label: i18n::t(lang, "supervision.details").to_owned(),
            value: shorten(details.to_owned()),
            links: Vec::new(),
        }),
    }
    out
}

/// The details as one line of text (`label: value; label: value`), for the CSV export.
pub fn one_line(lang: Lang, zone: Tz, details: &str) -> String {
    let sep = match lang {
        Lang::Zh => "：",
        Lang::En => ": ",
    };
    render(lang, zone, details)
        .into_iter()
        .map(|d| format!("{}{sep}{}", d.label, d.value))
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_are_labelled_and_ids_linked() {
        let z = chrono_tz::Asia::Shanghai;
        let d = render(
            Lang::En,
            z,
            r#"{"application_id": 7, "runs": [3, 4], "reason": "late", "x": {"from": "a"}, "expires_at": "2026-12-04 12:04:00.5"}"#,
        );
        let app = d.iter().find(|l| l.value == "7").unwrap();
        assert_eq!(app.label, "Application");
        assert_eq!(app.links, vec![("7".into(), "/applications/7".into())]);
        let runs = d.iter().find(|l| l.value == "3, 4").unwrap();
        assert_eq!(runs.links.len(), 2);
        assert!(d.iter().any(|l| l.label == "x · From" && l.value == "a"));
        assert!(
            d.iter().any(|l| l.value == "2026-12-04 20:04:00"),
            "in the zone"
        );
        assert!(render(Lang::Zh, z, "").is_empty());
        assert_eq!(render(Lang::Zh, z, "not json")[0].value, "not json");
        assert_eq!(action_name(Lang::Zh, "agreement.seal"), "协议盖章");
        assert_eq!(action_name(Lang::Zh, "no.such"), "no.such");
        assert!(one_line(Lang::Zh, z, r#"{"reason": "late"}"#).contains("：late"));
    }

    #[test]
    fn every_action_the_code_records_has_a_name() {
        for lang in Lang::ALL {
            let known: Vec<String> = known_actions(lang).into_iter().map(|(c, _)| c).collect();
            for code in [
                "agreement.seal",
                "job.release",
                "user.login",
                "dataset.create",
            ] {
                assert!(known.iter().any(|k| k == code), "{code} in {lang:?}");
            }
        }
    }
}
