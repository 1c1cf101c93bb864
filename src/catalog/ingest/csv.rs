//! The CSV pipeline's reading side: chunks ending at a row boundary outside quotes, and the RFC 4180 splitter that reads fields in place.

use super::*;

/// A piece of the file that ends at a row boundary, on its way from the reader through a
/// worker to the writer, and back to the reader empty.
pub(super) struct Chunk {
    /// Order in the file.
    pub(super) seq: u64,
    /// The bytes; only `..end` are the file's, the rest is room to read into.
    pub(super) data: Vec<u8>,
    /// Where the rows to parse start (after the header, in the first chunk).
    pub(super) start: usize,
    /// End of the file's bytes in `data`.
    pub(super) end: usize,
    /// The line `data[start]` is on.
    pub(super) first_line: u64,
    /// Data rows found (blank lines are not rows).
    pub(super) rows: u64,
    /// The rows encoded as stored, when `complete`.
    pub(super) columns: Vec<ColumnChunk>,
    /// Whether `columns` holds every row, pseudonyms included: no error was seen in this
    /// chunk nor, when it was started, in any other.
    pub(super) complete: bool,
    /// The first [`MAX_LISTED_ERRORS`] errors of this chunk.
    pub(super) errors: Vec<RowError>,
    /// All errors of this chunk.
    pub(super) error_count: u64,
}

impl Chunk {
    pub(super) fn new(size: usize, width: usize) -> Self {
        Self {
            seq: 0,
            data: vec![0; size.max(1)],
            start: 0,
            end: 0,
            first_line: 1,
            rows: 0,
            columns: vec![ColumnChunk::default(); width],
            complete: false,
            errors: Vec::new(),
            error_count: 0,
        }
    }

    /// Empties the chunk for reuse, keeping its memory unless a long row made it grow.
    pub(super) fn recycle(&mut self, size: usize) {
        if self.data.len() > 2 * size {
            self.data = vec![0; size.max(1)];
        }
        self.start = 0;
        self.end = 0;
        self.rows = 0;
        self.columns.iter_mut().for_each(ColumnChunk::clear);
        self.complete = false;
        self.errors.clear();
        self.error_count = 0;
    }
}

/// Where the reader's scan is with respect to quotes (the states of the `csv` crate's
/// parser that matter for where a row ends).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Quoting {
    /// Not in a quoted field: a newline ends the row.
    Outside,
    /// In a quoted field: newlines are part of the value.
    Quoted,
    /// Just after a quote in a quoted field, not knowing yet whether it is doubled.
    AfterQuote,
}

/// Reads the upload into chunks that end at row boundaries; meanwhile hashes the bytes,
/// counts them against the size limit and counts lines against the line-length limit.
pub(super) struct Reader<R> {
    pub(super) input: R,
    pub(super) hasher: Sha256,
    /// Bytes read.
    pub(super) bytes: u64,
    pub(super) limit: u64,
    pub(super) chunk_bytes: usize,
    /// Newlines read.
    pub(super) lines: u64,
    /// Offset in the file where the current line starts.
    pub(super) line_start: u64,
    pub(super) quoting: Quoting,
    pub(super) eof: bool,
    /// The last row boundary in the chunk being filled: the index of its newline and the
    /// number of newlines up to and including it.
    pub(super) cut: Option<(usize, u64)>,
    /// Offset in the file of the chunk being filled.
    pub(super) chunk_offset: u64,
}

impl<R: Read> Reader<R> {
    pub(super) fn new(input: R, limit: u64, chunk_bytes: usize) -> Self {
        Self {
            input,
            hasher: Sha256::new(),
            bytes: 0,
            limit,
            chunk_bytes,
            lines: 0,
            line_start: 0,
            quoting: Quoting::Outside,
            eof: false,
            cut: None,
            chunk_offset: 0,
        }
    }

    /// Reads into `chunk` (which may already hold bytes carried over) until it holds at least
    /// the chunk size and a row boundary, or the file ends. Returns whether it holds anything.
    pub(super) fn fill(&mut self, chunk: &mut Chunk) -> Result<bool, IngestError> {
        while !self.eof && (chunk.end < self.chunk_bytes || self.cut.is_none()) {
            if self.cut.is_none() && chunk.end > MAX_ROW_BYTES {
                let mut newlines = 0;
                skip_blank(&chunk.data[..chunk.end], chunk.start, &mut newlines);
                return Err(IngestError::LineTooLong {
                    line: chunk.first_line + newlines,
                });
            }
            if chunk.end == chunk.data.len() {
                chunk.data.resize(2 * chunk.data.len(), 0);
            }
            let room = (chunk.data.len() - chunk.end).min(READ_BYTES);
            let from = chunk.end;
            let n = loop {
                match self.input.read(&mut chunk.data[from..from + room]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(IngestError::Io(e)),
                }
            };
            if n == 0 {
                self.eof = true;
                break;
            }
            self.bytes += n as u64;
            if self.bytes > self.limit {
                return Err(IngestError::TooLarge { limit: self.limit });
            }
            chunk.end += n;
            self.hasher.update(&chunk.data[from..chunk.end]);
            self.scan(&chunk.data[..chunk.end], from)?;
        }
        if self.eof && chunk.end > 0 {
            // The rest of the file is the last chunk, whether or not it ends with a newline.
            self.cut = Some((chunk.end - 1, self.lines));
        }
        Ok(chunk.end > 0)
    }

    /// Scans `data[from..]`, just read: counts newlines (refusing a too-long line), follows
    /// the quoting and notes the last newline outside quotes.
    pub(super) fn scan(&mut self, data: &[u8], from: usize) -> Result<(), IngestError> {
        let mut skip = from;
        if self.quoting == Quoting::AfterQuote {
            self.quoting = if data[from] == b'"' {
                skip = from + 1;
                Quoting::Quoted
            } else {
                Quoting::Outside
            };
        }
        for i in memchr::memchr2_iter(b'\n', b'"', &data[from..]) {
            let i = from + i;
            if i < skip {
                continue;
            }
            if data[i] == b'\n' {
                let at = self.chunk_offset + i as u64;
                if at - self.line_start > MAX_LINE_BYTES as u64 {
                    return Err(IngestError::LineTooLong {
                        line: self.lines + 1,
                    });
                }
                self.lines += 1;
                self.line_start = at + 1;
                if self.quoting == Quoting::Outside {
                    self.cut = Some((i, self.lines));
                }
            } else if self.quoting == Quoting::Outside {
                // As in the `csv` crate, a quote opens a quoted field only at its start;
                // elsewhere it is an ordinary character.
                if i == 0 || matches!(data[i - 1], b',' | b'\n' | b'\r') {
                    self.quoting = Quoting::Quoted;
                }
            } else {
                match data.get(i + 1) {
                    // A doubled quote stands for one quote; the field goes on.
                    Some(b'"') => skip = i + 2,
                    Some(_) => self.quoting = Quoting::Outside,
                    None => self.quoting = Quoting::AfterQuote,
                }
            }
        }
        if self.bytes - self.line_start > MAX_LINE_BYTES as u64 {
            return Err(IngestError::LineTooLong {
                line: self.lines + 1,
            });
        }
        Ok(())
    }

    /// Ends `full` at its last row boundary and moves the bytes after it to the empty `next`.
    pub(super) fn carry(&mut self, full: &mut Chunk, next: &mut Chunk) {
        let (cut, lines) = self.cut.take().expect("a filled chunk has a row boundary");
        let tail = full.end - cut - 1;
        next.recycle(self.chunk_bytes);
        if next.data.len() < tail {
            next.data.resize(tail, 0);
        }
        next.data[..tail].copy_from_slice(&full.data[cut + 1..full.end]);
        next.end = tail;
        next.first_line = lines + 1;
        full.end = cut + 1;
        self.chunk_offset += full.end as u64;
    }
}

/// Skips blank lines (any run of `\r` and `\n`, as the `csv` crate does) from `pos`,
/// counting the newlines; returns where the next record starts.
pub(super) fn skip_blank(data: &[u8], mut pos: usize, newlines: &mut u64) -> usize {
    while let Some(&b) = data.get(pos) {
        match b {
            b'\n' => *newlines += 1,
            b'\r' => {}
            _ => break,
        }
        pos += 1;
    }
    pos
}

/// The bytes [`Splitter::split`] stops at: a comma, a line end or a quote.
static SPECIAL: [bool; 256] = {
    let mut special = [false; 256];
    special[b',' as usize] = true;
    special[b'\n' as usize] = true;
    special[b'\r' as usize] = true;
    special[b'"' as usize] = true;
    special
};

/// Bytes looked at together by [`special_mask`].
pub(super) const BLOCK: usize = 16;

/// A bit for each byte of `data[at..at + 16]` (fewer at the end) that is [`SPECIAL`], lowest
/// bit first: sixteen bytes compared at once where the CPU can.
#[inline]
pub(super) fn special_mask(data: &[u8], at: usize) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if let Some(block) = data.get(at..at + BLOCK) {
        use std::arch::x86_64::*;
        // SAFETY: `block` holds 16 readable bytes (the load is unaligned), and SSE2, all these
        // instructions need, is part of every x86_64 CPU.
        return unsafe {
            let v = _mm_loadu_si128(block.as_ptr().cast());
            let hit = |b: u8| _mm_cmpeq_epi8(v, _mm_set1_epi8(b as i8));
            let any = _mm_or_si128(
                _mm_or_si128(hit(b','), hit(b'\n')),
                _mm_or_si128(hit(b'\r'), hit(b'"')),
            );
            _mm_movemask_epi8(any) as u32
        };
    }
    let end = data.len().min(at + BLOCK);
    data[at..end]
        .iter()
        .enumerate()
        .filter(|(_, b)| SPECIAL[usize::from(**b)])
        .fold(0, |mask, (k, _)| mask | 1 << k)
}

/// Where one field's value lies: in the chunk, or in the splitter's scratch buffer when
/// quotes had to be removed.
#[derive(Clone, Copy)]
pub(super) struct Span {
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) unquoted: bool,
}

/// Splits records into fields as the `csv` crate reads them (RFC 4180: comma separated,
/// `"` quoted with `""` for a quote, records ended by `\n`, `\r\n` or `\r`), without
/// copying values that have no quotes.
#[derive(Default)]
pub(super) struct Splitter {
    pub(super) fields: Vec<Span>,
    pub(super) scratch: Vec<u8>,
}

impl Splitter {
    /// The value of field `i` of the record last split from `data`.
    #[inline]
    pub(super) fn field<'a>(&'a self, data: &'a [u8], i: usize) -> &'a [u8] {
        let span = self.fields[i];
        if span.unquoted {
            &self.scratch[span.start..span.end]
        } else {
            &data[span.start..span.end]
        }
    }

    /// Splits the record that starts at `pos` (not blank); returns where the next one may
    /// start and counts the newlines consumed.
    pub(super) fn split(&mut self, data: &[u8], pos: usize, newlines: &mut u64) -> usize {
        self.fields.clear();
        self.scratch.clear();
        let mut start = pos;
        let mut block = pos;
        while block < data.len() {
            let mut mask = special_mask(data, block);
            while mask != 0 {
                let i = block + mask.trailing_zeros() as usize;
                mask &= mask - 1;
                let next = match data[i] {
                    b',' => {
                        self.fields.push(Span {
                            start,
                            end: i,
                            unquoted: false,
                        });
                        start = i + 1;
                        continue;
                    }
                    b'\n' => {
                        *newlines += 1;
                        i + 1
                    }
                    b'\r' if data.get(i + 1) == Some(&b'\n') => {
                        *newlines += 1;
                        i + 2
                    }
                    b'\r' => i + 1,
                    _ => {
                        self.fields.clear();
                        return self.split_quoted(data, pos, newlines);
                    }
                };
                self.fields.push(Span {
                    start,
                    end: i,
                    unquoted: false,
                });
                return next;
            }
            block += BLOCK;
        }
        self.fields.push(Span {
            start,
            end: data.len(),
            unquoted: false,
        });
        data.len()
    }

    /// [`Splitter::split`] for a record with a quote: byte by byte, values into the scratch
    /// buffer.
    pub(super) fn split_quoted(&mut self, data: &[u8], mut i: usize, newlines: &mut u64) -> usize {
        let len = data.len();
        loop {
            let start = self.scratch.len();
            if data.get(i) == Some(&b'"') {
                i += 1;
                loop {
                    let rest = &data[i..];
                    let q = memchr::memchr(b'"', rest).unwrap_or(rest.len());
                    *newlines += memchr::memchr_iter(b'\n', &rest[..q]).count() as u64;
                    self.scratch.extend_from_slice(&rest[..q]);
                    i += q + 1;
                    if data.get(i) == Some(&b'"') {
                        self.scratch.push(b'"');
                        i += 1;
                    } else {
                        break;
                    }
                }
                i = i.min(len);
            }
            // Unquoted, or the rest after a closing quote: up to a comma or the record's end;
            // quotes here are ordinary characters.
            while let Some(&b) = data.get(i) {
                if matches!(b, b',' | b'\n' | b'\r') {
                    break;
                }
                self.scratch.push(b);
                i += 1;
            }
            self.fields.push(Span {
                start,
                end: self.scratch.len(),
                unquoted: true,
            });
            match data.get(i) {
                None => return len,
                Some(b',') => i += 1,
                Some(b'\n') => {
                    *newlines += 1;
                    return i + 1;
                }
                Some(_) if data.get(i + 1) == Some(&b'\n') => {
                    *newlines += 1;
                    return i + 2;
                }
                Some(_) => return i + 1,
            }
        }
    }
}
