//! The differencing guard, platform side (issue 13; `sandbox/ABI.md` §6, guarantee 7).
//!
//! Without noise, two released cells whose persons differ by 1 to k − 1 let the difference of
//! their counts or sums reveal those persons. So a release is withheld when one of its cells
//! and another cell of it, or a cell released earlier to the same operator from a dataset it
//! also depends on, are 1 to k − 1 persons apart (k: the new cell's threshold; for two cells of
//! one release, the larger of theirs).
//!
//! * **Kept** ([`keep`], in the worker's finish transaction): the persons of each cell a run
//!   released without noise (the sandbox's [`dataop_sandbox::RunOptions::members`]), sorted,
//!   8 bytes each, with their digest, their sketch and the catalog datasets the cell depends
//!   on. They count once the run is released; a run that ends otherwise loses them in the
//!   transaction that ends it ([`forget`]), and a release drops those whose persons were
//!   released to the operator already from the same datasets ([`Check::already_kept`]).
//! * **Checked** ([`check`]): at release, inside its transaction, after
//!   [`crate::db::Lock::Releases`] (two releases of one operator never both pass unseen by each
//!   other), and on the job page for platform staff while the output waits for review. Earlier cells are read by size window (within k − 1
//!   persons), a summary (size, digest, sketch) each; only the sets the summaries leave open are
//!   read whole and merged, stopping at the k-th difference ([`dataop_sandbox::differencing`]).
//! * **Shown** ([`record`], [`findings_of`]): the pairs found, to platform staff only; the
//!   operator sees the run withheld with the fixed reason [`super::ops::DIFFERENCING`].

use std::collections::{BTreeMap, BTreeSet};

use dataop_sandbox::differencing::{self as guard, Cell, Summary};
use dataop_sandbox::{Manifest, RunResult};
use diesel::prelude::*;

use super::machine::RunState;
use super::model::{Computation, Job};
use crate::db::DbConnection;
use crate::errors::AppError;
use crate::schema::{differencing_findings, jobs, released_cell_datasets, released_cells};

/// The most pairs a check reports: it stops there (one is enough to withhold).
pub const MAX_FINDINGS: usize = 20;

/// Earlier cells whose persons are read in one query.
const READ_AT_ONCE: usize = 64;

/// The catalog datasets an aggregate of `m` depends on: its dataset (every dataset of the job
/// when it names none), or the inputs of the per-person stage.
fn datasets_of(m: &Manifest, aggregate: &str, bindings: &BTreeMap<String, i64>) -> Vec<i64> {
    let names: Vec<&str> = match m.aggregates.iter().find(|a| a.name == aggregate) {
        Some(a) if a.per_person => m.person.iter().map(|p| p.dataset.as_str()).collect(),
        Some(a) if a.dataset.is_some() => a.dataset.iter().map(String::as_str).collect(),
        _ => m.datasets.iter().map(|d| d.name.as_str()).collect(),
    };
    let ids: BTreeSet<i64> = names
        .into_iter()
        .filter_map(|n| bindings.get(n).copied())
        .collect();
    ids.into_iter().collect()
}

/// Keeps the persons of every cell a finished run released without noise (inside the
/// worker's finish transaction): one statement for the cells, one for their datasets.
pub fn keep(
    conn: &mut DbConnection,
    job: &Job,
    c: &Computation,
    result: &RunResult,
) -> Result<(), AppError> {
    let Some(output) = &result.output else {
        return Ok(());
    };
    if result.members.iter().all(Vec::is_empty) {
        return Ok(());
    }
    let manifest = Manifest::from_toml(&c.manifest).map_err(|e| anyhow::anyhow!(e))?;
    let bindings = c.binding_map();
    let mut rows = Vec::new();
    let mut datasets: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for (table, cells) in output.aggregates.iter().zip(&result.members) {
        if !cells.is_empty() {
            datasets.insert(&table.name, datasets_of(&manifest, &table.name, &bindings));
        }
        for (cell, keys) in cells {
            let labels = table
                .cells
                .get(*cell as usize)
                .map(|c| c.key.clone())
                .unwrap_or_default();
            let members = guard::encode(keys);
            rows.push((
                released_cells::job_id.eq(job.id),
                released_cells::org_id.eq(job.org_id),
                released_cells::aggregate.eq(&table.name),
                released_cells::cell_key.eq(serde_json::json!(labels).to_string()),
                released_cells::k.eq(i64::try_from(table.k).unwrap_or(i64::MAX)),
                released_cells::persons.eq(keys.len() as i64),
                released_cells::digest.eq(guard::digest(&members)),
                released_cells::sketch.eq(guard::sketch(keys)),
                released_cells::members.eq(members),
            ));
        }
    }
    // A batch insert is written for each backend (diesel's multi-backend connection has none).
    let insert = diesel::insert_into(released_cells::table)
        .values(rows)
        .returning((released_cells::id, released_cells::aggregate));
    let ids: Vec<(i64, String)> = match conn {
        DbConnection::Sqlite(c) => insert.get_results(c)?,
        DbConnection::Pg(c) => insert.get_results(c)?,
    };
    let links: Vec<_> = ids
        .iter()
        .flat_map(|(id, aggregate)| {
            datasets
                .get(aggregate.as_str())
                .into_iter()
                .flatten()
                .map(move |d| {
                    (
                        released_cell_datasets::cell_id.eq(*id),
                        released_cell_datasets::dataset_id.eq(*d),
                    )
                })
        })
        .collect();
    if !links.is_empty() {
        let insert = diesel::insert_into(released_cell_datasets::table).values(links);
        match conn {
            DbConnection::Sqlite(c) => insert.execute(c)?,
            DbConnection::Pg(c) => insert.execute(c)?,
        };
    }
    Ok(())
}

/// Deletes the kept cells of a run that ends without being released (inside the transaction
/// that ends it; their datasets go with them).
pub fn forget(conn: &mut DbConnection, job_id: i64) -> QueryResult<()> {
    diesel::delete(released_cells::table.filter(released_cells::job_id.eq(job_id)))
        .execute(conn)?;
    Ok(())
}

/// Deletes kept cells of a run being released whose persons the operator was released already
/// from the same datasets ([`Check::already_kept`]): the earlier cell stands for them.
pub fn drop_kept(conn: &mut DbConnection, ids: &[i64]) -> QueryResult<()> {
    if !ids.is_empty() {
        diesel::delete(released_cells::table.filter(released_cells::id.eq_any(ids)))
            .execute(conn)?;
    }
    Ok(())
}

/// Two cells found 1 to k − 1 persons apart.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = differencing_findings)]
pub struct Finding {
    /// The run checked.
    pub job_id: i64,
    /// The aggregate of its cell.
    pub aggregate: String,
    /// Its cell's key (JSON array of labels).
    pub cell_key: String,
    /// The run that released the other cell (`job_id` itself for a cell of the same release).
    pub other_job_id: i64,
    /// The aggregate of the other cell.
    pub other_aggregate: String,
    /// The other cell's key (JSON array of labels).
    pub other_cell_key: String,
    /// Persons in exactly one of the two cells.
    pub difference: i64,
    /// The threshold they were compared with.
    pub k: i64,
}

impl Finding {
    /// The labels of the run's cell.
    pub fn labels(&self) -> Vec<String> {
        serde_json::from_str(&self.cell_key).unwrap_or_default()
    }

    /// The labels of the other cell.
    pub fn other_labels(&self) -> Vec<String> {
        serde_json::from_str(&self.other_cell_key).unwrap_or_default()
    }
}

/// A kept cell of the run being checked.
#[derive(Debug, Queryable)]
struct Own {
    id: i64,
    aggregate: String,
    cell_key: String,
    k: i64,
    persons: i64,
    digest: String,
    sketch: Vec<u8>,
    members: Vec<u8>,
}

impl Own {
    fn cell(&self) -> Cell<'_> {
        Cell {
            k: u64::try_from(self.k).unwrap_or(0),
            summary: Summary {
                persons: u64::try_from(self.persons).unwrap_or(0),
                digest: &self.digest,
                sketch: &self.sketch,
            },
            members: &self.members,
        }
    }
}

/// The summary of an earlier released cell: its id, digest, size and sketch.
type EarlierSet = (i64, String, i64, Vec<u8>);

/// An earlier released cell read whole.
#[derive(Debug, Queryable)]
struct Earlier {
    id: i64,
    job_id: i64,
    aggregate: String,
    cell_key: String,
    persons: i64,
    digest: String,
    sketch: Vec<u8>,
    members: Vec<u8>,
}

fn finding(job_id: i64, own: &Own, other: (i64, &str, &str), difference: u64, k: u64) -> Finding {
    Finding {
        job_id,
        aggregate: own.aggregate.clone(),
        cell_key: own.cell_key.clone(),
        other_job_id: other.0,
        other_aggregate: other.1.to_owned(),
        other_cell_key: other.2.to_owned(),
        difference: difference as i64,
        k: k as i64,
    }
}

/// What the guard found of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Check {
    /// The pairs of cells that forbid releasing it (at most [`MAX_FINDINGS`]).
    pub findings: Vec<Finding>,
    /// Its kept cells whose persons were released to the operator already from the datasets
    /// they depend on (or more): the earlier cell stands for them ([`drop_kept`]).
    pub already_kept: Vec<i64>,
}

/// Checks run `job`: the pairs of cells that forbid releasing it (two of its cells sharing a
/// dataset, or one of its cells and a cell released earlier to its operator from a dataset the
/// cell depends on, 1 to k − 1 persons apart), and its cells kept already. Nothing when the run
/// kept no cell (noise everywhere, nothing released, or a run from before the guard).
pub fn check(conn: &mut DbConnection, job: &Job) -> QueryResult<Check> {
    // The run's cells with their datasets, one row per dataset.
    let rows: Vec<(Own, i64)> = released_cells::table
        .inner_join(released_cell_datasets::table)
        .filter(released_cells::job_id.eq(job.id))
        .order((
            released_cells::id.asc(),
            released_cell_datasets::dataset_id.asc(),
        ))
        .select((
            (
                released_cells::id,
                released_cells::aggregate,
                released_cells::cell_key,
                released_cells::k,
                released_cells::persons,
                released_cells::digest,
                released_cells::sketch,
                released_cells::members,
            ),
            released_cell_datasets::dataset_id,
        ))
        .load(conn)?;
    let mut own: Vec<Own> = Vec::new();
    let mut scopes: Vec<Vec<i64>> = Vec::new();
    for (cell, dataset) in rows {
        if own.last().is_some_and(|c| c.id == cell.id) {
            scopes.last_mut().expect("a scope per cell").push(dataset);
        } else {
            own.push(cell);
            scopes.push(vec![dataset]);
        }
    }
    let cells: Vec<Cell<'_>> = own.iter().map(Own::cell).collect();
    let mut out = Check::default();

    // Two cells of this release.
    for (i, j) in guard::candidate_pairs(&cells) {
        if !scopes[i].iter().any(|d| scopes[j].binary_search(d).is_ok()) {
            continue;
        }
        let k = cells[i].k.max(cells[j].k);
        if let Some(d) = guard::collision(&cells[i], &cells[j], k) {
            let other = (job.id, own[j].aggregate.as_str(), own[j].cell_key.as_str());
            out.findings.push(finding(job.id, &own[i], other, d, k));
            if out.findings.len() >= MAX_FINDINGS {
                return Ok(out);
            }
        }
    }

    // Each cell against the earlier releases of its datasets, one query per set of datasets.
    let mut by_scope: BTreeMap<&[i64], Vec<usize>> = BTreeMap::new();
    for (i, s) in scopes.iter().enumerate() {
        by_scope.entry(s.as_slice()).or_default().push(i);
    }
    let mut already: BTreeSet<i64> = BTreeSet::new();
    for (scope, ours) in by_scope {
        let windows: Vec<_> = ours
            .iter()
            .map(|&i| guard::size_window(cells[i].summary.persons, cells[i].k))
            .collect();
        let lo = windows.iter().map(|w| *w.start()).min().unwrap_or(0);
        let hi = windows.iter().map(|w| *w.end()).max().unwrap_or(0);
        let sets: Vec<EarlierSet> = released_cells::table
            .inner_join(jobs::table)
            .filter(released_cells::org_id.eq(job.org_id))
            .filter(jobs::state.eq(RunState::Released.as_str()))
            .filter(released_cells::persons.between(clamp(lo), clamp(hi)))
            .filter(diesel::dsl::exists(
                released_cell_datasets::table
                    .filter(released_cell_datasets::cell_id.eq(released_cells::id))
                    .filter(released_cell_datasets::dataset_id.eq_any(scope)),
            ))
            .order(released_cells::id.asc())
            .select((
                released_cells::id,
                released_cells::digest,
                released_cells::persons,
                released_cells::sketch,
            ))
            .load(conn)?;
        // The earlier sets each cell must be merged with: those its summary leaves open (the
        // first cell of each distinct set stands for the others). Cells of the same persons are
        // noted: this run's cell need not be kept if one covers its datasets.
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        let mut wanted: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
        let mut same: Vec<(usize, i64)> = Vec::new();
        for (id, digest, persons, sketch) in &sets {
            for &i in &ours {
                if *digest == own[i].digest {
                    same.push((i, *id));
                }
            }
            if !seen.insert(digest) {
                continue;
            }
            let earlier = Summary {
                persons: u64::try_from(*persons).unwrap_or(0),
                digest,
                sketch,
            };
            for &i in &ours {
                if guard::may_collide(&cells[i].summary, &earlier, cells[i].k) {
                    wanted.entry(*id).or_default().push(i);
                }
            }
        }
        if scope.len() == 1 {
            // Every earlier cell read depends on this one dataset too.
            already.extend(same.iter().map(|&(i, _)| own[i].id));
        } else if !same.is_empty() {
            let mut covers: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
            for (cell, dataset) in released_cell_datasets::table
                .filter(released_cell_datasets::cell_id.eq_any(same.iter().map(|s| s.1)))
                .select((
                    released_cell_datasets::cell_id,
                    released_cell_datasets::dataset_id,
                ))
                .load::<(i64, i64)>(conn)?
            {
                covers.entry(cell).or_default().push(dataset);
            }
            for (i, earlier) in same {
                let theirs = covers.get(&earlier).map_or(&[][..], Vec::as_slice);
                if scopes[i].iter().all(|d| theirs.contains(d)) {
                    already.insert(own[i].id);
                }
            }
        }
        let wanted: Vec<(i64, Vec<usize>)> = wanted.into_iter().collect();
        for chunk in wanted.chunks(READ_AT_ONCE) {
            let earlier: Vec<Earlier> = released_cells::table
                .filter(released_cells::id.eq_any(chunk.iter().map(|(id, _)| *id)))
                .order(released_cells::id.asc())
                .select((
                    released_cells::id,
                    released_cells::job_id,
                    released_cells::aggregate,
                    released_cells::cell_key,
                    released_cells::persons,
                    released_cells::digest,
                    released_cells::sketch,
                    released_cells::members,
                ))
                .load(conn)?;
            for e in &earlier {
                let Some((_, against)) = chunk.iter().find(|(id, _)| *id == e.id) else {
                    continue;
                };
                for &i in against {
                    let k = cells[i].k;
                    let old = Cell {
                        k,
                        summary: Summary {
                            persons: u64::try_from(e.persons).unwrap_or(0),
                            digest: &e.digest,
                            sketch: &e.sketch,
                        },
                        members: &e.members,
                    };
                    if let Some(d) = guard::collision(&cells[i], &old, k) {
                        let other = (e.job_id, e.aggregate.as_str(), e.cell_key.as_str());
                        out.findings.push(finding(job.id, &own[i], other, d, k));
                        if out.findings.len() >= MAX_FINDINGS {
                            return Ok(out);
                        }
                    }
                }
            }
        }
    }
    out.already_kept = already.into_iter().collect();
    Ok(out)
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Records why the guard withheld a run (inside the transaction that withholds it).
pub fn record(conn: &mut DbConnection, findings: &[Finding]) -> QueryResult<()> {
    for f in findings {
        diesel::insert_into(differencing_findings::table)
            .values(f)
            .execute(conn)?;
    }
    Ok(())
}

/// Why the guard withheld run `job_id`, if it did.
pub fn findings_of(conn: &mut DbConnection, job_id: i64) -> QueryResult<Vec<Finding>> {
    differencing_findings::table
        .filter(differencing_findings::job_id.eq(job_id))
        .order(differencing_findings::id.asc())
        .select(Finding::as_select())
        .load(conn)
}
