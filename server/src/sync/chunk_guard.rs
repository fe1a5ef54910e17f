//! What a sync message would cost to apply, measured before Automerge sees it.
//!
//! Automerge's formats amplify: a DEFLATE-compressed change or document column
//! inflates without limit, and run-length-encoded op columns let ~100 bytes
//! describe millions of operations (4 M list inserts in a 115-byte change took
//! 200 MB and 8 s of CPU to apply). Both are measured here by walking the
//! chunk headers and column runs — inflating only into a counter, never
//! decoding an op — and a message over the limits is refused whole.
//!
//! Chunk layouts (automerge 0.12, `storage/`): every chunk is
//! `magic(4) checksum(4) type(1) uleb(len) body`. Change body: deps, actor,
//! seq, start op, time, message, other actors, op-column metadata, op data.
//! Document body: actors, heads, change-column metadata, op-column metadata,
//! change data, op data, head indices. Column metadata is `uleb(count)` then
//! `(uleb spec, uleb len)` pairs; spec bit 3 marks a DEFLATE-compressed column.

use std::io::Read;

/// Bounds on one sync message.
#[derive(Clone, Copy, Debug)]
pub struct ChunkLimits {
    /// Total bytes of all chunks once inflated.
    pub max_inflated_bytes: usize,
    /// Rows (operations, changes, predecessors…) in any one column, summed
    /// over the message's chunks.
    pub max_rows: u64,
}

/// What the message costs: the rate limiter charges the connection for it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cost {
    pub inflated_bytes: usize,
    pub rows: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GuardError {
    #[error("sync message inflates beyond {limit} bytes")]
    TooManyBytes { limit: usize },
    #[error("sync message holds more than {limit} operations or column rows")]
    TooManyRows { limit: u64 },
    #[error("chunk {index}: {reason}")]
    Malformed { index: usize, reason: String },
}

const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
pub const CHUNK_DOCUMENT: u8 = 0;
pub const CHUNK_CHANGE: u8 = 1;
pub const CHUNK_COMPRESSED_CHANGE: u8 = 2;
const DEFLATE_BIT: u32 = 0b1000;

/// Measures every chunk of every entry of a sync message against `limits`.
pub fn inspect<'a>(
    entries: impl IntoIterator<Item = &'a [u8]>,
    limits: ChunkLimits,
) -> Result<Cost, GuardError> {
    let mut budget = Budget {
        limits,
        cost: Cost::default(),
    };
    for (index, entry) in entries.into_iter().enumerate() {
        let malformed = |reason: String| GuardError::Malformed { index, reason };
        let mut rest = entry;
        while !rest.is_empty() {
            let (Chunk { kind, body, .. }, next) = split_chunk(rest).map_err(malformed)?;
            rest = next;
            budget.add_bytes(body.len())?;
            match kind {
                CHUNK_CHANGE => change(&mut budget, body),
                CHUNK_DOCUMENT => document(&mut budget, body),
                CHUNK_COMPRESSED_CHANGE => budget
                    .inflate(body)
                    .and_then(|body| change(&mut budget, &body)),
                other => Err(Bad::Format(format!(
                    "chunk type {other} is not accepted over sync (changes and documents only)"
                ))),
            }
            .map_err(|e| match e {
                Bad::Limit(e) => e,
                Bad::Format(reason) => malformed(reason),
            })?;
        }
    }
    Ok(budget.cost)
}

enum Bad {
    Limit(GuardError),
    Format(String),
}

impl From<GuardError> for Bad {
    fn from(e: GuardError) -> Self {
        Bad::Limit(e)
    }
}

impl From<&str> for Bad {
    fn from(e: &str) -> Self {
        Bad::Format(e.to_string())
    }
}

struct Budget {
    limits: ChunkLimits,
    cost: Cost,
}

impl Budget {
    fn add_bytes(&mut self, n: usize) -> Result<(), GuardError> {
        self.cost.inflated_bytes = self.cost.inflated_bytes.saturating_add(n);
        if self.cost.inflated_bytes > self.limits.max_inflated_bytes {
            return Err(GuardError::TooManyBytes {
                limit: self.limits.max_inflated_bytes,
            });
        }
        Ok(())
    }

    fn add_rows(&mut self, n: u64) -> Result<(), GuardError> {
        self.cost.rows = self.cost.rows.saturating_add(n);
        if self.cost.rows > self.limits.max_rows {
            return Err(GuardError::TooManyRows {
                limit: self.limits.max_rows,
            });
        }
        Ok(())
    }

    /// Inflates a DEFLATE stream, stopping as soon as the message's byte
    /// budget is spent: the output never grows past what is left of it.
    fn inflate(&mut self, compressed: &[u8]) -> Result<Vec<u8>, Bad> {
        let left = self
            .limits
            .max_inflated_bytes
            .saturating_sub(self.cost.inflated_bytes);
        let mut out = Vec::new();
        flate2::bufread::DeflateDecoder::new(compressed)
            .take(left as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| Bad::Format(format!("bad DEFLATE data: {e}")))?;
        self.add_bytes(out.len())?;
        Ok(out)
    }
}

/// Most change hashes in a sync message's `heads`, `need` or one `have`.
pub const MAX_HASHES: u64 = 4096;
/// Most `have` summaries (Automerge sends one).
pub const MAX_HAVES: u64 = 16;
/// Most change entries in one sync message.
pub const MAX_CHANGE_ENTRIES: u64 = 200_000;
/// Most bloom-filter probes per hash (Automerge uses 7).
const MAX_PROBES: u64 = 64;

/// Walks the envelope of an encoded sync message before it is decoded:
/// decoding allocates per list entry (a 2-byte `have` became ~64 bytes and
/// was kept in the peer's sync state), and a `have` bloom filter with
/// billions of probes, or none of its bits, makes Automerge loop for seconds,
/// allocate gigabytes or panic when it answers. Layout: version byte, heads,
/// need, haves (`last_sync` hashes, bloom bytes), changes (length-prefixed
/// entries), optional flags.
pub fn check_sync_message(data: &[u8]) -> Result<(), String> {
    let mut r = Reader(data.get(1..).ok_or("empty sync message")?);
    let hashes = |r: &mut Reader, what: &str| -> Result<(), String> {
        let n = r.uleb()?;
        if n > MAX_HASHES {
            return Err(format!(
                "sync message lists {n} {what} hashes (at most {MAX_HASHES})"
            ));
        }
        r.take(n * 32)?;
        Ok(())
    };
    hashes(&mut r, "head")?;
    hashes(&mut r, "needed")?;
    let haves = r.uleb()?;
    if haves > MAX_HAVES {
        return Err(format!(
            "sync message has {haves} `have` entries (at most {MAX_HAVES})"
        ));
    }
    for _ in 0..haves {
        hashes(&mut r, "last-sync")?;
        let mut bloom = Reader(r.bytes()?);
        if !bloom.0.is_empty() {
            let entries = bloom.uleb()?;
            let bits_per_entry = bloom.uleb()?;
            let probes = bloom.uleb()?;
            if entries > 0 && (bits_per_entry == 0 || probes == 0 || probes > MAX_PROBES) {
                return Err(format!(
                    "bad bloom filter: {bits_per_entry} bits per entry, {probes} probes"
                ));
            }
        }
    }
    let changes = r.uleb()?;
    if changes > MAX_CHANGE_ENTRIES {
        return Err(format!(
            "sync message carries {changes} change entries (at most {MAX_CHANGE_ENTRIES})"
        ));
    }
    for _ in 0..changes {
        if r.bytes()?.is_empty() {
            return Err("empty change entry".into());
        }
    }
    Ok(())
}

/// Why a sync message was refused before Automerge saw it.
#[derive(Debug)]
pub enum Refusal {
    /// Not a well-formed (or acceptable) sync message.
    Malformed(String),
    /// Over a per-message bound: the sender should split it.
    TooBig(String),
}

/// The one admission of an encoded sync message for `doc` (WebSocket and
/// batch): its envelope is walked, it is decoded, `need` deduplicated, and
/// its chunks measured. Limit violations are counted here.
pub fn admit(
    doc: fieldsync_shared::DocumentId,
    data: &[u8],
    limits: ChunkLimits,
) -> Result<(automerge::sync::Message, Cost), Refusal> {
    let invalid = |e: &dyn std::fmt::Display| {
        Refusal::Malformed(format!("invalid Automerge sync message for {doc}: {e}"))
    };
    if let Err(e) = check_sync_message(data) {
        crate::metrics::METRICS.limit_violations.inc();
        return Err(invalid(&e));
    }
    let mut msg = automerge::sync::Message::decode(data).map_err(|e| invalid(&e))?;
    dedup_need(&mut msg);
    match inspect(msg.changes.iter(), limits) {
        Ok(cost) => Ok((msg, cost)),
        Err(e @ GuardError::Malformed { .. }) => Err(Refusal::Malformed(format!(
            "rejected Automerge data for {doc}: {e}"
        ))),
        Err(e) => {
            crate::metrics::METRICS.limit_violations.inc();
            Err(Refusal::TooBig(format!("{doc}: {e}; split the change")))
        }
    }
}

/// Automerge answers every hash in `need`, duplicates included (as bogus
/// changes); a peer gains nothing from asking twice.
fn dedup_need(msg: &mut automerge::sync::Message) {
    msg.need.sort();
    msg.need.dedup();
}

/// One chunk of an entry (a sync message may pack several into one).
pub struct Chunk<'a> {
    pub kind: u8,
    /// The whole chunk, header included.
    pub bytes: &'a [u8],
    pub body: &'a [u8],
}

/// `(chunk, rest)`: the first chunk in `bytes`.
pub fn split_chunk(bytes: &[u8]) -> Result<(Chunk<'_>, &[u8]), String> {
    if bytes.len() < 9 || bytes[..4] != MAGIC {
        return Err("not an Automerge chunk (bad magic bytes)".into());
    }
    let mut r = Reader(&bytes[9..]);
    let len = r.uleb().map_err(str::to_string)?;
    let body = r
        .take(len)
        .map_err(|_| "chunk is longer than the data".to_string())?;
    let rest = r.0;
    let chunk = Chunk {
        kind: bytes[8],
        bytes: &bytes[..bytes.len() - rest.len()],
        body,
    };
    Ok((chunk, rest))
}

fn change(budget: &mut Budget, body: &[u8]) -> Result<(), Bad> {
    let mut r = Reader(body);
    r.hashes()?; // deps
    r.bytes()?; // actor
    r.uleb()?; // seq
    r.uleb()?; // start op
    r.skip_leb()?; // time (signed)
    r.bytes()?; // message
    r.list_of_bytes()?; // other actors
    let ops = r.columns()?;
    if ops.iter().any(|(spec, _)| spec & DEFLATE_BIT != 0) {
        return Err("change columns cannot be compressed".into());
    }
    columns(budget, &ops, &mut r)
}

fn document(budget: &mut Budget, body: &[u8]) -> Result<(), Bad> {
    let mut r = Reader(body);
    r.list_of_bytes()?; // actors
    r.hashes()?; // heads
    let changes = r.columns()?;
    let ops = r.columns()?;
    columns(budget, &changes, &mut r)?;
    columns(budget, &ops, &mut r)
}

/// Reads the data of `meta`'s columns from `r`, counting each column's rows.
fn columns(budget: &mut Budget, meta: &[(u32, u64)], r: &mut Reader) -> Result<(), Bad> {
    let mut most = 0u64;
    for &(spec, len) in meta {
        let data = r
            .take(len)
            .map_err(|_| Bad::from("column is longer than the data"))?;
        let inflated;
        let data = if spec & DEFLATE_BIT != 0 {
            inflated = budget.inflate(data)?;
            &inflated[..]
        } else {
            data
        };
        let rows = rows(spec & 0b111, data, budget.limits.max_rows)?;
        most = most.max(rows);
    }
    Ok(budget.add_rows(most)?)
}

/// Rows in one column; a group column counts the rows of the columns it
/// heads (the sum of its values) as well.
fn rows(col_type: u32, data: &[u8], limit: u64) -> Result<u64, Bad> {
    const GROUP: u32 = 0;
    const DELTA: u32 = 3;
    const BOOLEAN: u32 = 4;
    const STRING: u32 = 5;
    const RAW_VALUE: u32 = 7;
    let over = || Bad::Limit(GuardError::TooManyRows { limit });
    let mut r = Reader(data);
    let mut rows = 0u64;
    let mut nested = 0u64;
    let mut count = |n: u64, value: u64| -> Result<(), Bad> {
        rows = rows.saturating_add(n);
        nested = nested.saturating_add(n.saturating_mul(value));
        if rows > limit || nested > limit {
            return Err(over());
        }
        Ok(())
    };
    match col_type {
        RAW_VALUE => return Ok(0),
        BOOLEAN => {
            while !r.0.is_empty() {
                count(r.uleb()?, 0)?;
            }
        }
        _ => {
            // Run-length encoding: n > 0 repeats one value n times, n < 0
            // is followed by -n literal values, 0 by a count of nulls.
            let value = |r: &mut Reader| -> Result<u64, Bad> {
                Ok(match col_type {
                    STRING => {
                        r.bytes()?;
                        0
                    }
                    DELTA => {
                        r.skip_leb()?;
                        0
                    }
                    GROUP => r.uleb()?,
                    _ => {
                        r.uleb()?;
                        0
                    }
                })
            };
            while !r.0.is_empty() {
                let n = r.sleb()?;
                if n > 0 {
                    let v = value(&mut r)?;
                    count(n as u64, v)?;
                } else if n < 0 {
                    for _ in 0..n.unsigned_abs() {
                        let v = value(&mut r)?;
                        count(1, v)?;
                    }
                } else {
                    count(r.uleb()?, 0)?;
                }
            }
        }
    }
    Ok(rows.max(nested))
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: u64) -> Result<&'a [u8], &'static str> {
        let n = usize::try_from(n).map_err(|_| "length overflows")?;
        if n > self.0.len() {
            return Err("truncated");
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn uleb(&mut self) -> Result<u64, &'static str> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let (&b, rest) = self.0.split_first().ok_or("truncated number")?;
            self.0 = rest;
            if shift == 63 && b > 1 {
                return Err("number overflows");
            }
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("number overflows")
    }

    /// Skips a LEB128 number of either sign.
    fn skip_leb(&mut self) -> Result<(), &'static str> {
        let end = self
            .0
            .iter()
            .take(10)
            .position(|b| b & 0x80 == 0)
            .ok_or("bad number")?;
        self.0 = &self.0[end + 1..];
        Ok(())
    }

    fn sleb(&mut self) -> Result<i64, &'static str> {
        let mut value = 0i64;
        let mut shift = 0;
        loop {
            let (&b, rest) = self.0.split_first().ok_or("truncated number")?;
            self.0 = rest;
            if shift >= 64 {
                return Err("number overflows");
            }
            value |= i64::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                if shift < 64 && b & 0x40 != 0 {
                    value |= -1 << shift;
                }
                return Ok(value);
            }
        }
    }

    fn bytes(&mut self) -> Result<&'a [u8], &'static str> {
        let n = self.uleb()?;
        self.take(n)
    }

    fn hashes(&mut self) -> Result<(), &'static str> {
        let n = self.uleb()?;
        self.take(n.checked_mul(32).ok_or("length overflows")?)?;
        Ok(())
    }

    fn list_of_bytes(&mut self) -> Result<(), &'static str> {
        for _ in 0..self.uleb()? {
            self.bytes()?;
        }
        Ok(())
    }

    fn columns(&mut self) -> Result<Vec<(u32, u64)>, &'static str> {
        let n = self.uleb()?;
        let mut out = Vec::new();
        for _ in 0..n {
            let spec = u32::try_from(self.uleb()?).map_err(|_| "column spec overflows")?;
            out.push((spec, self.uleb()?));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;
    use automerge::{AutoCommit, ObjType, ReadDoc, ROOT};

    const LIMITS: ChunkLimits = ChunkLimits {
        max_inflated_bytes: 1 << 20,
        max_rows: 100_000,
    };

    fn ticket_like(visits: usize) -> AutoCommit {
        let mut d = AutoCommit::new();
        d.put(ROOT, "status", "open").unwrap();
        let list = d.put_object(ROOT, "visits", ObjType::List).unwrap();
        for i in 0..visits {
            let v = d.insert_object(&list, i, ObjType::Map).unwrap();
            d.put(&v, "id", format!("visit-{i}")).unwrap();
            let t = d.put_object(&v, "work_done", ObjType::Text).unwrap();
            d.splice_text(&t, 0, 0, &"replaced the pump seal; ".repeat(4))
                .unwrap();
            d.commit();
        }
        d
    }

    /// Rows counted for a change are at least its operations.
    #[test]
    fn real_changes_documents_and_compressed_forms_pass_and_count_their_ops() {
        let mut d = ticket_like(30);
        let ops: u64 = d.get_changes(&[]).iter().map(|c| c.len() as u64).sum();
        let raws: Vec<Vec<u8>> = d
            .get_changes(&[])
            .iter()
            .map(|c| c.raw_bytes().to_vec())
            .collect();
        let cost = inspect(raws.iter().map(|c| c.as_slice()), LIMITS).unwrap();
        assert!(cost.rows >= ops, "{cost:?} < {ops} ops");

        // Compressed changes (Automerge compresses chunks over 256 bytes).
        let compressed: Vec<Vec<u8>> = d
            .get_changes(&[])
            .into_iter()
            .map(|c| c.clone().bytes().to_vec())
            .collect();
        assert!(
            compressed.iter().zip(&raws).any(|(c, r)| c.len() < r.len()),
            "some change is compressed"
        );
        let cost = inspect(compressed.iter().map(|c| c.as_slice()), LIMITS).unwrap();
        assert!(cost.rows >= ops);

        // A whole saved document (what a V2 sync message carries), with
        // DEFLATE-compressed columns.
        let saved = d.save();
        let cost = inspect([saved.as_slice()], LIMITS).unwrap();
        assert!(cost.rows >= ops, "{cost:?} < {ops} ops");
        assert!(
            cost.inflated_bytes > saved.len(),
            "columns were inflated: {cost:?}"
        );
        let mut loaded = AutoCommit::load(&saved).unwrap();
        assert_eq!(loaded.get_heads(), d.get_heads());
        // Several chunks in one entry.
        let joined: Vec<u8> = raws.concat();
        assert_eq!(
            inspect([joined.as_slice()], LIMITS).unwrap().rows,
            inspect(raws.iter().map(|c| c.as_slice()), LIMITS)
                .unwrap()
                .rows
        );
    }

    #[test]
    fn run_length_op_bomb_is_refused_before_it_is_decoded() {
        // 115 bytes that Automerge would turn into 4 M operations.
        let mut d = AutoCommit::new();
        let l = d.put_object(ROOT, "l", ObjType::List).unwrap();
        for i in 0..200_000 {
            d.insert(&l, i, true).unwrap();
        }
        d.commit();
        let change = d.get_last_local_change().unwrap().raw_bytes().to_vec();
        assert!(change.len() < 200, "{} bytes", change.len());
        assert_eq!(
            inspect([change.as_slice()], LIMITS),
            Err(GuardError::TooManyRows {
                limit: LIMITS.max_rows
            })
        );
        let saved = d.save();
        assert_eq!(
            inspect([saved.as_slice()], LIMITS),
            Err(GuardError::TooManyRows {
                limit: LIMITS.max_rows
            })
        );
    }

    #[test]
    fn deflate_bomb_is_refused_without_inflating_it() {
        // A change whose message is 4 MiB of zeros: a few KiB compressed.
        let mut d = AutoCommit::new();
        d.put(ROOT, "x", 1).unwrap();
        let big = "\0".repeat(4 << 20);
        d.commit_with(automerge::transaction::CommitOptions::default().with_message(big));
        let bomb = d.get_last_local_change().unwrap().clone().bytes().to_vec();
        assert!(bomb.len() < 64 << 10, "{} bytes", bomb.len());
        assert_eq!(
            inspect([bomb.as_slice()], LIMITS),
            Err(GuardError::TooManyBytes {
                limit: LIMITS.max_inflated_bytes
            })
        );
        let roomy = ChunkLimits {
            max_inflated_bytes: 8 << 20,
            ..LIMITS
        };
        assert!(inspect([bomb.as_slice()], roomy).is_ok());
    }

    #[test]
    fn sync_message_envelopes_are_bounded() {
        use automerge::sync::{self, SyncDoc};
        let mut d = ticket_like(3);
        let mut state = sync::State::new();
        let real = d.sync().generate_sync_message(&mut state).unwrap().encode();
        assert_eq!(check_sync_message(&real), Ok(()));
        let with = |have: Vec<u8>, n_have: u8, need: &[u8]| {
            // version, 0 heads, need, haves, 0 changes
            let mut m = vec![0x42, 0];
            m.extend(need);
            m.push(n_have);
            for _ in 0..n_have {
                m.push(0); // no last_sync hashes
                m.push(have.len() as u8);
                m.extend(&have);
            }
            m.push(0);
            m
        };
        assert_eq!(check_sync_message(&with(vec![], 1, &[0])), Ok(()));
        assert_eq!(
            check_sync_message(&with(vec![1, 10, 7, 0xff, 0xff], 1, &[0])),
            Ok(())
        );
        // 100 M probes; 0 bits per entry (a division by zero in Automerge).
        assert!(check_sync_message(&with(vec![1, 8, 0x80, 0xc2, 0xd7, 0x2f, 1], 1, &[0])).is_err());
        assert!(check_sync_message(&with(vec![1, 0, 7], 1, &[0])).is_err());
        assert!(check_sync_message(&with(vec![], 17, &[0]))
            .unwrap_err()
            .contains("`have`"));
        // A count beyond the limits, and an empty change entry.
        assert!(check_sync_message(&[0x42, 0x81, 0x40])
            .unwrap_err()
            .contains("head"));
        assert!(check_sync_message(&[0x42, 0, 0, 0, 1, 0])
            .unwrap_err()
            .contains("empty"));
        assert!(check_sync_message(&[]).is_err());
    }

    #[test]
    fn garbage_and_bundles_are_refused_and_nothing_panics() {
        let mut d = ticket_like(3);
        let saved = d.save();
        let change = d
            .clone()
            .get_last_local_change()
            .unwrap()
            .raw_bytes()
            .to_vec();
        for src in [&saved, &change] {
            for cut in 0..src.len() {
                let _ = inspect([&src[..cut]], LIMITS);
            }
            for i in 8..src.len() {
                let mut m = src.clone();
                m[i] ^= 0x5a;
                let _ = inspect([m.as_slice()], LIMITS);
            }
        }
        let mut bundle = change.clone();
        bundle[8] = 3;
        assert!(matches!(
            inspect([bundle.as_slice()], LIMITS),
            Err(GuardError::Malformed { .. })
        ));
        assert!(matches!(
            inspect([&b"nonsense"[..]], LIMITS),
            Err(GuardError::Malformed { .. })
        ));
        assert_eq!(
            d.get(ROOT, "status").unwrap().unwrap().0.to_string(),
            "\"open\""
        );
    }
}
