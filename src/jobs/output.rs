//! A run's output as tables for pages, as the released files (CSV and JSON with their
//! provenance), and as a server-rendered bar chart.
//!
//! Provenance (DOMAIN.md: a product states the source of the data and the date it was
//! obtained): each dataset's titles, provider, version and upload date; the job and its
//! computation, the module's sha256, the agreement number, the release time and the signing
//! key. The platform signs the hex sha256 of each file with the seal key; the signature and
//! the hash are given with every download (`X-Dataop-Sha256`, `X-Dataop-Signature`,
//! `X-Dataop-Public-Key`) and on the job page.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde_json::Value;

use super::model::{Computation, Job};

/// One aggregate table.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// The aggregate's name.
    pub name: String,
    /// Its dimensions.
    pub dimensions: Vec<String>,
    /// Its measures.
    pub measures: Vec<String>,
    /// The threshold applied.
    pub k: String,
    /// The epsilon spent (empty without noise).
    pub epsilon: String,
    /// The cells.
    pub rows: Vec<Row>,
}

/// One cell.
#[derive(Debug, Clone, Default)]
pub struct Row {
    /// The key labels.
    pub key: Vec<String>,
    /// Whether the cell is suppressed.
    pub suppressed: bool,
    /// Count (empty when suppressed).
    pub count: String,
    /// Distinct persons (empty when suppressed).
    pub persons: String,
    /// Sums then means of each measure (empty when suppressed).
    pub values: Vec<String>,
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The tables of a sandbox output (JSON as `Output::to_json` writes it).
pub fn tables(output_json: &str) -> Vec<Table> {
    let Ok(v) = serde_json::from_str::<Value>(output_json) else {
        return Vec::new();
    };
    let strings = |x: &Value| -> Vec<String> {
        x.as_array()
            .map(|a| a.iter().map(text).collect())
            .unwrap_or_default()
    };
    v["aggregates"]
        .as_array()
        .map(|aggs| {
            aggs.iter()
                .map(|a| {
                    let measures = strings(&a["measures"]);
                    Table {
                        name: text(&a["name"]),
                        dimensions: strings(&a["dimensions"]),
                        k: text(&a["k"]),
                        epsilon: text(&a["epsilon"]),
                        rows: a["cells"]
                            .as_array()
                            .map(|cells| {
                                cells
                                    .iter()
                                    .map(|c| {
                                        let suppressed = c["suppressed"].as_bool().unwrap_or(true);
                                        let mut values = strings(&c["sums"]);
                                        values.extend(strings(&c["means"]));
                                        if suppressed {
                                            values = vec![String::new(); 2 * measures.len()];
                                        }
                                        Row {
                                            key: strings(&c["key"]),
                                            suppressed,
                                            count: text(&c["count"]),
                                            persons: text(&c["persons"]),
                                            values,
                                        }
                                    })
                                    .collect()
                            })
                            .unwrap_or_default(),
                        measures,
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Replaces the category codes of each table's keys by their labels in `lang` (the code
/// follows in parentheses), using the catalog domains of the dimensions' columns.
pub fn label_keys(
    conn: &mut crate::db::DbConnection,
    c: &Computation,
    tables: &mut [Table],
    lang: crate::i18n::Lang,
) -> QueryResult<()> {
    name_keys(conn, c, tables, |l| {
        format!("{} ({})", l.label(lang), l.code)
    })
}

/// Replaces each category code of the tables' keys by `name(code label)`, using the catalog
/// domains of the dimensions' columns; codes the catalog does not name stay as they are.
fn name_keys(
    conn: &mut crate::db::DbConnection,
    c: &Computation,
    tables: &mut [Table],
    name: impl Fn(&crate::catalog::model::CodeLabel) -> String,
) -> QueryResult<()> {
    let Ok(manifest) = dataop_sandbox::Manifest::from_toml(&c.manifest) else {
        return Ok(());
    };
    let bindings = c.binding_map();
    let single = match manifest.datasets.as_slice() {
        [only] => only.name.clone(),
        _ => String::new(),
    };
    for t in tables.iter_mut() {
        let Some(agg) = manifest.aggregates.iter().find(|a| a.name == t.name) else {
            continue;
        };
        let mut maps = Vec::new();
        for dim in &agg.dimensions {
            let dataset = dim.dataset.clone().unwrap_or_else(|| single.clone());
            let map: Option<std::collections::HashMap<String, String>> =
                match (&dim.column, bindings.get(&dataset)) {
                    (Some(col), Some(&dataset_id)) => {
                        crate::catalog::model::columns_of(conn, dataset_id)?
                            .into_iter()
                            .find(|x| &x.name == col)
                            .map(|x| {
                                x.code_labels()
                                    .into_iter()
                                    .filter(|l| !l.zh.is_empty() || !l.en.is_empty())
                                    .map(|l| (l.code.clone(), name(&l)))
                                    .collect()
                            })
                    }
                    _ => None,
                };
            maps.push(map);
        }
        for row in &mut t.rows {
            for (k, map) in row.key.iter_mut().zip(&maps) {
                if let Some(label) = map.as_ref().and_then(|m| m.get(k.as_str())) {
                    *k = label.clone();
                }
            }
        }
    }
    Ok(())
}

/// The released files.
#[derive(Debug, Clone)]
pub struct Files {
    /// JSON: `{"provenance": …, "output": …}`.
    pub json: String,
    /// CSV: one table (see [`csv_table`]), starting with a UTF-8 byte order mark.
    pub csv: String,
}

/// The CSV of every aggregate as one table that spreadsheet programs and pandas open as it
/// is: a UTF-8 byte order mark, one header line, one line per cell. The columns are the
/// aggregate's name, every dimension of any aggregate (empty where an aggregate lacks it),
/// `suppressed`, `count`, `persons`, `sum_<m>` and `mean_<m>` of every measure, then the
/// provenance columns (`extra`, the same on every line).
pub fn csv_table(tables: &[Table], extra: &[(&str, String)]) -> String {
    fn union<'a>(lists: impl Iterator<Item = &'a Vec<String>>) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for l in lists {
            for x in l {
                if !out.contains(x) {
                    out.push(x.clone());
                }
            }
        }
        out
    }
    let dims = union(tables.iter().map(|t| &t.dimensions));
    let measures = union(tables.iter().map(|t| &t.measures));
    let mut w = ::csv::WriterBuilder::new().from_writer(crate::web::UTF8_BOM.to_vec());
    let mut header = vec!["aggregate".to_owned()];
    header.extend(dims.iter().cloned());
    header.extend(["suppressed", "count", "persons"].map(String::from));
    header.extend(measures.iter().map(|m| format!("sum_{m}")));
    header.extend(measures.iter().map(|m| format!("mean_{m}")));
    header.extend(extra.iter().map(|(k, _)| (*k).to_owned()));
    let _ = w.write_record(&header);
    for t in tables {
        for r in &t.rows {
            let mut rec = vec![t.name.clone()];
            rec.extend(dims.iter().map(|d| {
                t.dimensions
                    .iter()
                    .position(|x| x == d)
                    .and_then(|i| r.key.get(i).cloned())
                    .unwrap_or_default()
            }));
            rec.push(r.suppressed.to_string());
            rec.push(r.count.clone());
            rec.push(r.persons.clone());
            let n = t.measures.len();
            for part in 0..2 {
                rec.extend(measures.iter().map(|m| {
                    t.measures
                        .iter()
                        .position(|x| x == m)
                        .and_then(|i| r.values.get(part * n + i).cloned())
                        .unwrap_or_default()
                }));
            }
            rec.extend(extra.iter().map(|(_, v)| v.clone()));
            let _ = w.write_record(&rec);
        }
    }
    w.into_inner()
        .map(|b| String::from_utf8(b).unwrap_or_default())
        .unwrap_or_default()
}

/// Builds the released files of a run.
pub fn build(
    conn: &mut crate::db::DbConnection,
    job: &Job,
    c: &Computation,
    agreement_number: &str,
    released_at: NaiveDateTime,
    zone: chrono_tz::Tz,
) -> QueryResult<Files> {
    let versions = job.versions_used();
    let ids: Vec<i64> = versions.iter().map(|v| v.dataset_id).collect();
    let labels = super::model::dataset_labels(conn, &ids)?;
    let mut sources = Vec::new();
    for v in versions {
        let label = labels
            .get(&v.dataset_id)
            .ok_or(diesel::result::Error::NotFound)?;
        sources.push(serde_json::json!({
            "dataset_id": v.dataset_id,
            "title_zh": label.title_zh,
            "title_en": label.title_en,
            "provider": label.provider,
            "version": v.version_no,
            "obtained_on": v.obtained_at.date().to_string(),
            "rows": v.rows,
        }));
    }
    let released = crate::calendar::local(zone, released_at)
        .and_local_timezone(zone)
        .earliest()
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default();
    let provenance = serde_json::json!({
        "platform": "dataop",
        "job": job.id,
        "computation": c.id,
        "name": c.name,
        "module_sha256": c.module_sha256,
        "agreement": agreement_number,
        "released_at": released,
        "sources": sources,
    });
    let output: Value = job
        .output
        .as_deref()
        .and_then(|o| serde_json::from_str(o).ok())
        .unwrap_or(Value::Null);
    let json = serde_json::to_string_pretty(&serde_json::json!({
        "provenance": provenance,
        "output": output,
    }))
    .unwrap_or_default();
    let mut tables = tables(job.output.as_deref().unwrap_or(""));
    name_keys(conn, c, &mut tables, |l| {
        format!("{} {}", l.code, l.label(crate::i18n::Lang::Zh))
    })?;
    let sources_text = sources
        .iter()
        .map(|s| {
            format!(
                "{} / {}; {}; v{}; {}",
                text(&s["title_zh"]),
                text(&s["title_en"]),
                text(&s["provider"]),
                s["version"],
                text(&s["obtained_on"]),
            )
        })
        .collect::<Vec<_>>()
        .join(" | ");
    let csv = csv_table(
        &tables,
        &[
            ("job", job.id.to_string()),
            ("agreement", agreement_number.to_owned()),
            ("module_sha256", c.module_sha256.clone()),
            ("released_at", released.clone()),
            ("sources", sources_text),
        ],
    );
    Ok(Files { json, csv })
}

/// One bar of the chart.
#[derive(Debug, Clone)]
pub struct Bar {
    /// Top of the bar.
    pub y: i64,
    /// Baseline of the label text.
    pub text_y: i64,
    /// Width of the bar.
    pub w: i64,
    /// The cell's key.
    pub label: String,
    /// The value shown.
    pub value: String,
    /// Whether the cell is suppressed (no bar).
    pub suppressed: bool,
}

/// A horizontal bar chart of a table's counts.
#[derive(Debug, Clone)]
pub struct Chart {
    /// The bars, in key order.
    pub bars: Vec<Bar>,
    /// Height of the drawing.
    pub height: i64,
}

/// Most bars drawn.
pub const MAX_BARS: usize = 60;
/// Width of the longest bar.
pub const BAR_SPACE: i64 = 420;

/// The chart of a table's counts (at most [`MAX_BARS`] cells).
pub fn chart(t: &Table) -> Chart {
    let rows: Vec<&Row> = t.rows.iter().take(MAX_BARS).collect();
    let max = rows
        .iter()
        .filter_map(|r| r.count.parse::<i64>().ok())
        .max()
        .unwrap_or(0)
        .max(1);
    let bars: Vec<Bar> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let v = r.count.parse::<i64>().unwrap_or(0).max(0);
            let y = 8 + 26 * i as i64;
            Bar {
                y,
                text_y: y + 15,
                w: if r.suppressed {
                    0
                } else {
                    (v * BAR_SPACE) / max
                },
                label: r.key.join(" · "),
                value: r.count.clone(),
                suppressed: r.suppressed,
            }
        })
        .collect();
    Chart {
        height: 16 + 26 * bars.len() as i64,
        bars,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUT: &str = r#"{"job":"j","abi":1,"aggregates":[{"name":"a","dimensions":["d"],
        "measures":["m"],"k":10,"epsilon":null,"cells":[
        {"key":["x"],"suppressed":false,"count":20,"persons":12,"sums":["1.50"],"means":["0.0750"]},
        {"key":["y"],"suppressed":true}]}]}"#;

    #[test]
    fn tables_and_chart() {
        let t = tables(OUT);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].rows[0].values, vec!["1.50", "0.0750"]);
        assert!(t[0].rows[1].suppressed);
        assert_eq!(t[0].rows[1].values, vec!["", ""]);
        let c = chart(&t[0]);
        assert_eq!(c.bars[0].w, BAR_SPACE);
        assert_eq!(c.bars[1].w, 0);
        assert!(tables("not json").is_empty());
    }
}
