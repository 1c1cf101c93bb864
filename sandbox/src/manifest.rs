//! The job manifest (TOML) and its resolution against the datasets of a run.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::columnar::{ColumnRole, ColumnType, Storage};
use crate::source::DatasetInput;

/// The ABI version this host implements.
pub const ABI_VERSION: u32 = 1;

/// A job manifest, as written in TOML (see `ABI.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// ABI version the job was written for (must be 1).
    pub abi: u32,
    /// Name of the job.
    pub name: String,
    /// The datasets the job reads.
    pub datasets: Vec<DatasetDecl>,
    /// The aggregates the job contributes to (the only outputs).
    pub aggregates: Vec<AggregateDecl>,
}

/// A dataset the job reads and the columns it reads from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetDecl {
    /// Name under which the guest opens the dataset.
    pub name: String,
    /// Columns the guest may read.
    pub columns: Vec<String>,
}

/// An output table: cells keyed by dimensions, with counts, distinct persons and measures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateDecl {
    /// Name of the aggregate.
    pub name: String,
    /// The dimensions of the group key (none: one cell).
    #[serde(default)]
    pub dimensions: Vec<DimensionDecl>,
    /// Measures summed and averaged per cell.
    #[serde(default)]
    pub measures: Vec<MeasureDecl>,
    /// Minimum number of distinct persons per released cell (raised to the platform floor).
    pub k: Option<u64>,
    /// Differential privacy budget of this aggregate (none: no noise).
    pub epsilon: Option<f64>,
    /// Cells one person may contribute to (the lowest cell numbers are kept).
    #[serde(default = "default_cells_per_person")]
    pub max_cells_per_person: u32,
    /// Contributions one person may make to one cell (their count and sums are clamped to it).
    #[serde(default = "default_rows_per_person_cell")]
    pub max_rows_per_person_cell: u32,
}

fn default_cells_per_person() -> u32 {
    1
}

fn default_rows_per_person_cell() -> u32 {
    1000
}

/// One dimension of a group key: the codes of a category column, or integer bins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DimensionDecl {
    /// Name of the dimension in the output.
    pub name: String,
    /// Dataset of `column` (may be left out when the job reads one dataset).
    pub dataset: Option<String>,
    /// A category column whose declared codes are the domain of this dimension.
    pub column: Option<String>,
    /// Ascending integer bin edges: key `i` means `bins[i] <= x < bins[i + 1]`.
    pub bins: Option<Vec<i64>>,
}

/// A measure: a fixed-point value per contribution, clamped to `[min, max]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeasureDecl {
    /// Name of the measure.
    pub name: String,
    /// Decimal digits of the values the guest emits (value × 10^scale), 0..=6.
    #[serde(default)]
    pub scale: u32,
    /// Lower clamp bound.
    pub min: f64,
    /// Upper clamp bound.
    pub max: f64,
}

impl Manifest {
    /// Parses a manifest from TOML and checks what can be checked without the data.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let m: Manifest = toml::from_str(text).map_err(|e| format!("manifest: {e}"))?;
        m.check()?;
        Ok(m)
    }

    /// Checks the manifest alone (names, bounds, ABI version).
    pub fn check(&self) -> Result<(), String> {
        if self.abi != ABI_VERSION {
            return Err(format!(
                "manifest: ABI version {} is not supported (this host implements {ABI_VERSION})",
                self.abi
            ));
        }
        if self.datasets.is_empty() {
            return Err("manifest: no dataset is declared".into());
        }
        if self.aggregates.is_empty() {
            return Err("manifest: no aggregate is declared".into());
        }
        unique(self.datasets.iter().map(|d| d.name.as_str()), "dataset")?;
        unique(self.aggregates.iter().map(|a| a.name.as_str()), "aggregate")?;
        for d in &self.datasets {
            unique(d.columns.iter().map(String::as_str), "column")?;
        }
        for a in &self.aggregates {
            let at = |m: String| format!("aggregate `{}`: {m}", a.name);
            unique(
                a.dimensions
                    .iter()
                    .map(|d| d.name.as_str())
                    .chain(a.measures.iter().map(|m| m.name.as_str())),
                "dimension or measure",
            )
            .map_err(at)?;
            if a.max_cells_per_person == 0 || a.max_rows_per_person_cell == 0 {
                return Err(at("per-person bounds must be at least 1".into()));
            }
            if let Some(e) = a.epsilon
                && !(e.is_finite() && e > 0.0 && e <= 100.0)
            {
                return Err(at(format!("epsilon {e} must be in (0, 100]")));
            }
            for d in &a.dimensions {
                match (&d.column, &d.bins) {
                    (Some(_), None) => {}
                    (None, Some(b)) => {
                        if b.len() < 2 || b.windows(2).any(|w| w[0] >= w[1]) {
                            return Err(at(format!(
                                "dimension `{}`: bins need at least two strictly ascending edges",
                                d.name
                            )));
                        }
                    }
                    _ => {
                        return Err(at(format!(
                            "dimension `{}`: give either `column` or `bins`",
                            d.name
                        )));
                    }
                }
            }
            for m in &a.measures {
                if m.scale > crate::columnar::MAX_DECIMAL_SCALE {
                    return Err(at(format!("measure `{}`: scale above 6", m.name)));
                }
                let f = 10f64.powi(m.scale as i32);
                let ok = |x: f64| x.is_finite() && (x * f).abs() < 1e15;
                if !(ok(m.min) && ok(m.max) && m.min <= m.max) {
                    return Err(at(format!(
                        "measure `{}`: needs finite bounds min <= max below 10^15",
                        m.name
                    )));
                }
            }
        }
        Ok(())
    }
}

fn unique<'a>(names: impl Iterator<Item = &'a str>, what: &str) -> Result<(), String> {
    let mut seen = HashSet::new();
    for n in names {
        if n.is_empty() {
            return Err(format!("manifest: a {what} has an empty name"));
        }
        if !seen.insert(n) {
            return Err(format!("manifest: {what} `{n}` is declared twice"));
        }
    }
    Ok(())
}

/// Platform limits that apply to every run.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Lowest k any aggregate may use (default 10).
    pub k_floor: u64,
    /// Largest number of cells (product of dimension sizes) of one aggregate.
    pub max_groups: u64,
    /// Largest number of (person, cell) pairs the host keeps per aggregate.
    pub max_person_cells: u64,
    /// Largest number of contributions per run.
    pub max_contributions: u64,
    /// Largest number of guest log bytes per run.
    pub max_log_bytes: u64,
    /// Largest module size in bytes.
    pub max_module_bytes: usize,
    /// Largest linear memory of one instance, in bytes.
    pub max_memory_bytes: usize,
    /// Largest table size, in elements.
    pub max_table_elements: usize,
    /// Wall-clock time limit of a run.
    pub timeout: std::time::Duration,
    /// Largest batch the host hands out, in rows.
    pub max_batch_rows: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            k_floor: 10,
            max_groups: 100_000,
            max_person_cells: 50_000_000,
            max_contributions: 1_000_000_000,
            max_log_bytes: 64 * 1024,
            max_module_bytes: 16 * 1024 * 1024,
            max_memory_bytes: 256 * 1024 * 1024,
            max_table_elements: 100_000,
            timeout: std::time::Duration::from_secs(600),
            max_batch_rows: 65_536,
        }
    }
}

/// A column the guest may read, resolved against its dataset.
#[derive(Debug, Clone)]
pub(crate) struct PlanColumn {
    pub name: String,
    pub index: usize,
    pub storage: Storage,
    pub kind: i32,
}

/// A dataset resolved against the run's inputs.
#[derive(Clone)]
pub(crate) struct PlanDataset {
    pub name: String,
    pub input: DatasetInput,
    pub columns: Vec<PlanColumn>,
    pub privacy_unit: usize,
}

/// A dimension with its labels.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PlanDimension {
    pub name: String,
    pub labels: Vec<String>,
}

/// A measure with its bounds in fixed point.
#[derive(Debug, Clone)]
pub(crate) struct PlanMeasure {
    pub name: String,
    pub scale: u32,
    pub lo: i64,
    pub hi: i64,
}

/// An aggregate ready to receive contributions.
#[derive(Debug, Clone)]
pub(crate) struct PlanAggregate {
    pub name: String,
    pub dims: Vec<PlanDimension>,
    pub measures: Vec<PlanMeasure>,
    pub cells: u64,
    pub k: u64,
    pub epsilon: Option<f64>,
    pub max_cells_per_person: u32,
    pub max_rows_per_person_cell: u32,
}

/// A manifest bound to the inputs of a run: everything the host needs, checked.
#[derive(Clone)]
pub(crate) struct Plan {
    pub datasets: Vec<PlanDataset>,
    pub aggregates: Vec<PlanAggregate>,
}

/// Column kind codes returned by `dataop.column_kind` (see `ABI.md`).
pub(crate) fn kind_code(ty: &ColumnType) -> i32 {
    match ty {
        ColumnType::Integer => 1,
        ColumnType::Decimal { .. } => 2,
        ColumnType::Date => 3,
        ColumnType::Category { .. } => 4,
        ColumnType::Text => 0,
    }
}

/// Why a manifest cannot run on the given inputs.
pub(crate) enum PlanError {
    /// Refused before the run (column rules, missing datasets, …).
    Refused(String),
    /// An aggregate has more cells than the platform allows.
    TooManyGroups(String),
}

/// Binds `m` to `inputs`: every declared dataset must be given, every declared column must
/// exist, be allowed, and be neither an identifier, nor the privacy unit, nor text; every
/// dataset needs exactly one privacy-unit column.
pub(crate) fn plan(
    m: &Manifest,
    inputs: &[DatasetInput],
    limits: &Limits,
) -> Result<Plan, PlanError> {
    m.check().map_err(PlanError::Refused)?;
    let refuse = |s: String| PlanError::Refused(s);
    let mut datasets = Vec::new();
    for d in &m.datasets {
        let input = inputs.iter().find(|i| i.name == d.name).ok_or_else(|| {
            refuse(format!(
                "dataset `{}` is declared but was not given",
                d.name
            ))
        })?;
        let specs = input.source.columns();
        let pus: Vec<usize> = specs
            .iter()
            .enumerate()
            .filter(|(_, c)| c.role == ColumnRole::PrivacyUnit)
            .map(|(i, _)| i)
            .collect();
        if pus.len() != 1 {
            return Err(refuse(format!(
                "dataset `{}` must have exactly one privacy_unit column, it has {}",
                d.name,
                pus.len()
            )));
        }
        let mut columns = Vec::new();
        for name in &d.columns {
            let at = |m: &str| refuse(format!("column `{name}` of dataset `{}`: {m}", d.name));
            let index = specs
                .iter()
                .position(|c| &c.name == name)
                .ok_or_else(|| at("no such column"))?;
            let spec = &specs[index];
            match spec.role {
                ColumnRole::Identifier => return Err(at("identifier columns can never be read")),
                ColumnRole::PrivacyUnit => {
                    return Err(at("the privacy unit is never handed to a job"));
                }
                _ => {}
            }
            if spec.ty == ColumnType::Text {
                return Err(at("text columns are never handed to a job"));
            }
            if !input.allowed_columns.iter().any(|a| a == name) {
                return Err(at("not allowed by the agreement"));
            }
            columns.push(PlanColumn {
                name: name.clone(),
                index,
                storage: spec.storage(),
                kind: kind_code(&spec.ty),
            });
        }
        datasets.push(PlanDataset {
            name: d.name.clone(),
            input: input.clone(),
            columns,
            privacy_unit: pus[0],
        });
    }
    let mut aggregates = Vec::new();
    for a in &m.aggregates {
        let at = |s: String| refuse(format!("aggregate `{}`: {s}", a.name));
        let mut dims = Vec::new();
        let mut cells: u64 = 1;
        for d in &a.dimensions {
            let labels = if let Some(bins) = &d.bins {
                bins.windows(2)
                    .map(|w| format!("[{},{})", w[0], w[1]))
                    .collect::<Vec<_>>()
            } else {
                let column = d.column.as_deref().unwrap_or_default();
                let ds = match &d.dataset {
                    Some(n) => datasets.iter().find(|x| &x.name == n).ok_or_else(|| {
                        at(format!("dimension `{}`: unknown dataset `{n}`", d.name))
                    })?,
                    None if datasets.len() == 1 => &datasets[0],
                    None => return Err(at(format!("dimension `{}`: name its dataset", d.name))),
                };
                let spec = ds
                    .input
                    .source
                    .columns()
                    .iter()
                    .find(|c| c.name == column)
                    .ok_or_else(|| at(format!("dimension `{}`: no column `{column}`", d.name)))?;
                match (&spec.ty, spec.role) {
                    (ColumnType::Category { codes }, role) if !role.is_pseudonymized() => {
                        codes.clone()
                    }
                    _ => {
                        return Err(at(format!(
                            "dimension `{}`: column `{column}` is not a category column",
                            d.name
                        )));
                    }
                }
            };
            cells = cells.saturating_mul(labels.len() as u64);
            dims.push(PlanDimension {
                name: d.name.clone(),
                labels,
            });
        }
        if cells > limits.max_groups {
            return Err(PlanError::TooManyGroups(format!(
                "aggregate `{}` has {cells} cells, more than the limit of {}",
                a.name, limits.max_groups
            )));
        }
        let measures = a
            .measures
            .iter()
            .map(|m| {
                let f = 10f64.powi(m.scale as i32);
                PlanMeasure {
                    name: m.name.clone(),
                    scale: m.scale,
                    lo: (m.min * f).round() as i64,
                    hi: (m.max * f).round() as i64,
                }
            })
            .collect();
        aggregates.push(PlanAggregate {
            name: a.name.clone(),
            dims,
            measures,
            cells,
            k: a.k.unwrap_or(limits.k_floor).max(limits.k_floor),
            epsilon: a.epsilon,
            max_cells_per_person: a.max_cells_per_person,
            max_rows_per_person_cell: a.max_rows_per_person_cell,
        });
    }
    Ok(Plan {
        datasets,
        aggregates,
    })
}
