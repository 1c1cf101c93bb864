//! Reading a version: [`VersionReader`] reads ranges of rows of one column.

use super::*;

/// Reads a finished version, one column range at a time.
pub struct VersionReader {
    pub(super) dir: PathBuf,
    pub(super) meta: VersionMeta,
    pub(super) bins: Vec<File>,
    pub(super) offs: Vec<Option<File>>,
}

impl std::fmt::Debug for VersionReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VersionReader")
            .field("dir", &self.dir)
            .field("rows", &self.meta.rows)
            .finish()
    }
}

impl VersionReader {
    /// Opens a finished version: reads `meta.json`, checks the format and that every column file
    /// has the size the row count implies (`InvalidData` otherwise).
    pub fn open(dir: &Path) -> io::Result<Self> {
        let raw = fs::read(dir.join("meta.json"))?;
        let meta: VersionMeta =
            serde_json::from_slice(&raw).map_err(|e| invalid_data(format!("meta.json: {e}")))?;
        if meta.format != FORMAT {
            return Err(invalid_data(format!(
                "unknown version format `{}`",
                meta.format
            )));
        }
        validate_columns(&meta.columns).map_err(|e| invalid_data(e.to_string()))?;
        let mut bins = Vec::with_capacity(meta.columns.len());
        let mut offs = Vec::with_capacity(meta.columns.len());
        for (i, c) in meta.columns.iter().enumerate() {
            let bin = File::open(bin_path(dir, i))?;
            let len = bin.metadata()?.len();
            let storage = c.storage();
            if storage == Storage::Text {
                let off = File::open(off_path(dir, i))?;
                let off_len = off.metadata()?.len();
                if Some(off_len) != meta.rows.checked_add(1).and_then(|r| r.checked_mul(8)) {
                    return Err(invalid_data(format!(
                        "column `{}`: offsets file size",
                        c.name
                    )));
                }
                let mut last = [0u8; 8];
                off.read_exact_at(&mut last, off_len - 8)?;
                if u64::from_le_bytes(last) != len {
                    return Err(invalid_data(format!("column `{}`: text file size", c.name)));
                }
                offs.push(Some(off));
            } else {
                if Some(len) != meta.rows.checked_mul(storage.width() as u64) {
                    return Err(invalid_data(format!("column `{}`: file size", c.name)));
                }
                offs.push(None);
            }
            bins.push(bin);
        }
        Ok(VersionReader {
            dir: dir.to_path_buf(),
            meta,
            bins,
            offs,
        })
    }

    /// The version's metadata.
    pub fn meta(&self) -> &VersionMeta {
        &self.meta
    }

    /// The version's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of rows.
    pub fn rows(&self) -> u64 {
        self.meta.rows
    }

    /// Index of the column named `name`.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.meta.columns.iter().position(|c| c.name == name)
    }

    pub(super) fn check(
        &self,
        col: usize,
        storage: Storage,
        start: u64,
        n: usize,
    ) -> io::Result<()> {
        let spec = self
            .meta
            .columns
            .get(col)
            .ok_or_else(|| invalid(format!("no column {col}")))?;
        if spec.storage() != storage {
            return Err(invalid(format!(
                "column `{}` is stored as {:?}, not {storage:?}",
                spec.name,
                spec.storage()
            )));
        }
        match start.checked_add(n as u64) {
            Some(end) if end <= self.meta.rows => Ok(()),
            _ => Err(invalid(format!(
                "rows {start}+{n} are beyond the {} rows",
                self.meta.rows
            ))),
        }
    }

    pub(super) fn read_fixed<const W: usize>(
        &self,
        col: usize,
        storage: Storage,
        start: u64,
        n: usize,
        mut put: impl FnMut(usize, [u8; W]),
    ) -> io::Result<()> {
        self.check(col, storage, start, n)?;
        const CHUNK: usize = 64 * 1024;
        let mut buf = vec![0u8; CHUNK.min(n * W)];
        let mut done = 0usize;
        while done < n {
            let take = (n - done).min(CHUNK / W);
            let bytes = &mut buf[..take * W];
            self.bins[col].read_exact_at(bytes, (start + done as u64) * W as u64)?;
            for (j, chunk) in bytes.chunks_exact(W).enumerate() {
                put(done + j, chunk.try_into().expect("chunk of W bytes"));
            }
            done += take;
        }
        Ok(())
    }

    /// Reads the stored little-endian bytes of fixed-width column `col` from row `start` into
    /// `dst` (whose length must be a multiple of the column's width).
    pub fn read_raw_bytes(&self, col: usize, start: u64, dst: &mut [u8]) -> io::Result<()> {
        let spec = self
            .meta
            .columns
            .get(col)
            .ok_or_else(|| invalid(format!("no column {col}")))?;
        let w = spec.storage().width();
        if w == 0 || !dst.len().is_multiple_of(w) {
            return Err(invalid(format!("column `{}`: bad raw read", spec.name)));
        }
        self.check(col, spec.storage(), start, dst.len() / w)?;
        self.bins[col].read_exact_at(dst, start * w as u64)
    }

    /// Reads `out.len()` values of an integer or decimal column starting at row `start`.
    pub fn read_i64(&self, col: usize, start: u64, out: &mut [i64]) -> io::Result<()> {
        self.read_fixed::<8>(col, Storage::I64, start, out.len(), |i, b| {
            out[i] = i64::from_le_bytes(b)
        })
    }

    /// Reads `out.len()` values of a date column starting at row `start`.
    pub fn read_i32(&self, col: usize, start: u64, out: &mut [i32]) -> io::Result<()> {
        self.read_fixed::<4>(col, Storage::I32, start, out.len(), |i, b| {
            out[i] = i32::from_le_bytes(b)
        })
    }

    /// Reads `out.len()` codes of a category column starting at row `start`.
    pub fn read_u32(&self, col: usize, start: u64, out: &mut [u32]) -> io::Result<()> {
        self.read_fixed::<4>(col, Storage::U32, start, out.len(), |i, b| {
            out[i] = u32::from_le_bytes(b)
        })
    }

    /// Reads `out.len()` pseudonyms of a pseudonymized column starting at row `start`.
    pub fn read_u64(&self, col: usize, start: u64, out: &mut [u64]) -> io::Result<()> {
        self.read_fixed::<8>(col, Storage::U64, start, out.len(), |i, b| {
            out[i] = u64::from_le_bytes(b)
        })
    }

    /// Reads `n` values of a text column starting at row `start`.
    pub fn read_text(&self, col: usize, start: u64, n: usize) -> io::Result<Vec<String>> {
        self.check(col, Storage::Text, start, n)?;
        let off = self.offs[col].as_ref().expect("text columns have offsets");
        let mut raw = vec![0u8; (n + 1) * 8];
        off.read_exact_at(&mut raw, start * 8)?;
        let offsets: Vec<u64> = raw
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect();
        let (first, last) = (offsets[0], offsets[n]);
        if offsets.windows(2).any(|w| w[0] > w[1]) {
            return Err(invalid_data("text offsets are not increasing"));
        }
        let len = usize::try_from(last - first).map_err(|_| invalid_data("text too long"))?;
        let mut bytes = vec![0u8; len];
        self.bins[col].read_exact_at(&mut bytes, first)?;
        offsets
            .windows(2)
            .map(|w| {
                let s = &bytes[(w[0] - first) as usize..(w[1] - first) as usize];
                String::from_utf8(s.to_vec()).map_err(|_| invalid_data("text is not UTF-8"))
            })
            .collect()
    }

    /// Reads one cell (convenient, slow: for tests and tools, not for scans).
    pub fn cell(&self, col: usize, row: u64) -> io::Result<Cell> {
        let spec = self
            .meta
            .columns
            .get(col)
            .ok_or_else(|| invalid(format!("no column {col}")))?;
        Ok(match spec.storage() {
            Storage::I64 => {
                let mut v = [0i64];
                self.read_i64(col, row, &mut v)?;
                match (v[0], &spec.ty) {
                    (NULL_I64, _) => Cell::Null,
                    (v, ColumnType::Decimal { .. }) => Cell::Decimal(v),
                    (v, _) => Cell::Int(v),
                }
            }
            Storage::I32 => {
                let mut v = [0i32];
                self.read_i32(col, row, &mut v)?;
                if v[0] == NULL_DATE {
                    Cell::Null
                } else {
                    Cell::Date(v[0])
                }
            }
            Storage::U32 => {
                let mut v = [0u32];
                self.read_u32(col, row, &mut v)?;
                if v[0] == NULL_CATEGORY {
                    Cell::Null
                } else {
                    Cell::Category(v[0])
                }
            }
            Storage::U64 => {
                let mut v = [0u64];
                self.read_u64(col, row, &mut v)?;
                if v[0] == NULL_PSEUDONYM {
                    Cell::Null
                } else {
                    Cell::Pseudonym(v[0])
                }
            }
            Storage::Text => {
                let mut v = self.read_text(col, row, 1)?;
                let s = v.pop().unwrap_or_default();
                if s.is_empty() && spec.nullable {
                    Cell::Null
                } else {
                    Cell::Text(s)
                }
            }
        })
    }
}
