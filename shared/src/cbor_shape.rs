//! A walk over a CBOR item's headers, before anything is decoded.
//!
//! Decoding into `ciborium::Value` allocates for every item: an 8 MiB frame
//! holding 8 M one-byte integers became ~400 MB of values and a second of
//! CPU. Protocol messages are small maps, so the walk refuses anything with
//! more items or deeper nesting than any real message has, and any length
//! that points past the end of the frame, without allocating.

/// More items than any protocol message has (a join or a sync message has
/// under 20; remote-heads maps a few dozen).
pub const MAX_ITEMS: usize = 4096;
/// Deeper nesting than any protocol message has (at most 4).
pub const MAX_DEPTH: usize = 16;

/// Checks the first CBOR item of `frame`; `Err` says what is wrong.
pub fn check(frame: &[u8]) -> Result<(), String> {
    let mut w = Walk {
        buf: frame,
        pos: 0,
        items: 0,
    };
    w.item(0)
}

struct Walk<'a> {
    buf: &'a [u8],
    pos: usize,
    items: usize,
}

const BREAK: u8 = 0xff;

impl Walk<'_> {
    fn byte(&mut self) -> Result<u8, String> {
        let b = *self.buf.get(self.pos).ok_or("truncated CBOR")?;
        self.pos += 1;
        Ok(b)
    }

    /// `(major type, additional info, argument)`; the argument of an
    /// indefinite length (info 31) is 0.
    fn head(&mut self) -> Result<(u8, u8, u64), String> {
        let b = self.byte()?;
        let (major, info) = (b >> 5, b & 0x1f);
        let arg = match info {
            0..=23 => u64::from(info),
            24..=27 => {
                let n = 1usize << (info - 24);
                let end = self
                    .pos
                    .checked_add(n)
                    .filter(|e| *e <= self.buf.len())
                    .ok_or("truncated CBOR")?;
                let v = self.buf[self.pos..end]
                    .iter()
                    .fold(0u64, |v, b| (v << 8) | u64::from(*b));
                self.pos = end;
                v
            }
            31 => 0,
            _ => return Err(format!("reserved CBOR additional info {info}")),
        };
        Ok((major, info, arg))
    }

    fn skip(&mut self, len: u64) -> Result<(), String> {
        let left = (self.buf.len() - self.pos) as u64;
        if len > left {
            return Err(format!("CBOR length {len} runs past the end of the frame"));
        }
        self.pos += len as usize;
        Ok(())
    }

    fn at_break(&mut self) -> Result<bool, String> {
        match self.buf.get(self.pos) {
            Some(&BREAK) => {
                self.pos += 1;
                Ok(true)
            }
            Some(_) => Ok(false),
            None => Err("truncated CBOR".into()),
        }
    }

    fn item(&mut self, depth: usize) -> Result<(), String> {
        self.items += 1;
        if self.items > MAX_ITEMS {
            return Err(format!("message has more than {MAX_ITEMS} CBOR items"));
        }
        if depth > MAX_DEPTH {
            return Err(format!("message nests deeper than {MAX_DEPTH} levels"));
        }
        let (major, info, arg) = self.head()?;
        let indefinite = info == 31;
        match major {
            0 | 1 if indefinite => Err("indefinite-length integer".into()),
            0 | 1 => Ok(()),
            2 | 3 if indefinite => {
                // Chunks of the same major type, until a break.
                while !self.at_break()? {
                    let (m, i, len) = self.head()?;
                    if m != major || i == 31 {
                        return Err("bad chunk in an indefinite-length string".into());
                    }
                    self.skip(len)?;
                }
                Ok(())
            }
            2 | 3 => self.skip(arg),
            4 | 5 => {
                let per_entry = if major == 5 { 2 } else { 1 };
                if indefinite {
                    while !self.at_break()? {
                        for _ in 0..per_entry {
                            self.item(depth + 1)?;
                        }
                    }
                } else {
                    // Each item takes at least one byte: a count beyond the
                    // frame fails at once instead of after looping.
                    if arg > (self.buf.len() - self.pos) as u64 {
                        return Err(format!("CBOR count {arg} runs past the end of the frame"));
                    }
                    for _ in 0..arg * per_entry {
                        self.item(depth + 1)?;
                    }
                }
                Ok(())
            }
            6 => self.item(depth + 1),
            _ if indefinite => Err("unexpected CBOR break".into()),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ciborium::Value;

    fn cbor(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::into_writer(v, &mut out).unwrap();
        out
    }

    #[test]
    fn ordinary_values_pass() {
        let v = Value::Map(vec![
            (Value::Text("type".into()), Value::Text("sync".into())),
            (Value::Text("data".into()), Value::Bytes(vec![1; 300])),
            (Value::Text("n".into()), Value::Float(1.5)),
            (
                Value::Text("t".into()),
                Value::Tag(42, Box::new(Value::Null)),
            ),
            (
                Value::Text("l".into()),
                Value::Array(vec![Value::Integer((-7).into()), Value::Bool(true)]),
            ),
        ]);
        assert_eq!(check(&cbor(&v)), Ok(()));
        // Indefinite-length forms (cbor-x writes some of these).
        assert_eq!(check(&[0xbf, 0x61, b'a', 0x9f, 0x01, 0xff, 0xff]), Ok(()));
        assert_eq!(check(&[0x5f, 0x41, 0x00, 0x42, 0x01, 0x02, 0xff]), Ok(()));
    }

    #[test]
    fn amplifying_and_lying_frames_are_refused() {
        let many = cbor(&Value::Array(vec![Value::Integer(1.into()); MAX_ITEMS + 1]));
        assert!(check(&many).unwrap_err().contains("more than"));
        let mut deep = vec![0x81; MAX_DEPTH + 2];
        deep.push(0x01);
        assert!(check(&deep).unwrap_err().contains("deeper"));
        // A byte string and an array claiming 2^63 entries in 9 bytes.
        assert!(check(&[0x5b, 0x80, 0, 0, 0, 0, 0, 0, 0])
            .unwrap_err()
            .contains("past the end"));
        assert!(check(&[0x9b, 0x80, 0, 0, 0, 0, 0, 0, 0])
            .unwrap_err()
            .contains("past the end"));
        for bad in [
            &[0x1c][..],
            &[0xff],
            &[0x9f, 0x01],
            &[0x5f, 0x61, b'a', 0xff],
            &[],
        ] {
            assert!(check(bad).is_err(), "{bad:?}");
        }
    }
}
