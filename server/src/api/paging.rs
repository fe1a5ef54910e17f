//! One paging scheme for every list: `?limit=N&cursor=C` in, and
//! `{"items": [...], "next_cursor": C | null}` out. The cursor is opaque to
//! clients (base64url of the sort key of the page's last item, as JSON);
//! storage reads the rows *after* that key in the list's own order (keyset
//! paging), so pages neither skip nor repeat rows when new ones arrive, and
//! a page costs the same deep in a list as at its start.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::ApiError;

/// The query of a list that has no filters of its own.
#[derive(serde::Deserialize, utoipa::IntoParams)]
pub struct PageQuery {
    /// Page size (default 100, at most 1000).
    #[param(minimum = 1)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page; absent for the first.
    #[param(pattern = r"^[A-Za-z0-9_-]*$", max_length = 1024)]
    pub cursor: Option<String>,
}

impl PageQuery {
    pub fn window<K: DeserializeOwned>(&self, limits: Limits) -> Result<Window<K>, ApiError> {
        Window::new(self.limit, self.cursor.as_deref(), limits)
    }
}

/// Limits of one list: the page size without `limit`, and the most allowed.
#[derive(Clone, Copy)]
pub struct Limits {
    pub default: i64,
    pub max: i64,
}

pub const DEFAULT: Limits = Limits {
    default: 100,
    max: 1000,
};

/// A request for one page: the key to continue after (decoded), and the
/// page size. Storage reads `fetch()` rows (one more than the page) so
/// `page` can tell whether there is a next one without counting.
pub struct Window<K> {
    pub after: Option<K>,
    pub limit: i64,
}

impl<K: DeserializeOwned> Window<K> {
    /// `limit` below 1 and a cursor that is not base64url are refused (400,
    /// the schema says so); a well-formed cursor that is not one this list
    /// gave out is a 422. A client that sends them has a bug worth seeing. A
    /// limit above the list's maximum is lowered to it.
    pub fn new(limit: Option<i64>, cursor: Option<&str>, limits: Limits) -> Result<Self, ApiError> {
        let limit = match limit {
            Some(l) if l < 1 => return Err(ApiError::bad_request("`limit` must be at least 1")),
            Some(l) => l.min(limits.max),
            None => limits.default,
        };
        let after = match cursor {
            None => None,
            Some("") => None,
            Some(c) => Some(decode(c)?),
        };
        Ok(Self { after, limit })
    }

    /// How many rows storage should read: the page and one more.
    pub fn fetch(&self) -> i64 {
        self.limit + 1
    }

    /// The page of `rows` (read with `fetch()`), and the cursor of its last
    /// item when more rows follow.
    pub fn page<T, Key: Serialize>(&self, mut rows: Vec<T>, key: impl Fn(&T) -> Key) -> Page<T> {
        let more = rows.len() as i64 > self.limit;
        rows.truncate(self.limit.max(0) as usize);
        let next_cursor = if more {
            rows.last().map(|last| encode(&key(last)))
        } else {
            None
        };
        Page {
            items: rows,
            next_cursor,
        }
    }
}

/// One page of a list. `next_cursor` is absent-as-null on the last page.
#[derive(Serialize, Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// A page whose storage filtered after reading (so it may be short):
    /// `last_scanned` is the key of the last row read, if more follow.
    pub fn continuing<Key: Serialize>(items: Vec<T>, last_scanned: Option<Key>) -> Self {
        Self {
            items,
            next_cursor: last_scanned.map(|k| encode(&k)),
        }
    }
}

fn encode<K: Serialize>(key: &K) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(key).expect("keys serialize"))
}

/// The longest cursor accepted (ours are far shorter).
pub const MAX_CURSOR: usize = 1024;

fn decode<K: DeserializeOwned>(cursor: &str) -> Result<K, ApiError> {
    let alphabet = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if cursor.len() > MAX_CURSOR || !cursor.chars().all(alphabet) {
        return Err(ApiError::bad_request(format!(
            "`cursor` must be at most {MAX_CURSOR} characters of A-Z, a-z, 0-9, '-' and '_'"
        )));
    }
    let foreign = || ApiError::unprocessable("`cursor` is not a cursor this list gave out");
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| foreign())?;
    let key: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| foreign())?;
    // Keys come from stored text, which never holds NUL (PostgreSQL refuses
    // it: a crafted key would be a 500, not a 422).
    if has_nul(&key) {
        return Err(foreign());
    }
    serde_json::from_value(key).map_err(|_| foreign())
}

fn has_nul(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(a) => a.iter().any(has_nul),
        serde_json::Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_carry_the_last_key_and_stop_at_the_end() {
        let w: Window<(i64, String)> = Window::new(Some(2), None, DEFAULT).unwrap();
        assert_eq!(w.fetch(), 3);
        let rows = vec![(5, "a".to_string()), (4, "b".into()), (3, "c".into())];
        let page = w.page(rows, |r| (r.0, r.1.clone()));
        assert_eq!(page.items.len(), 2);
        let cursor = page.next_cursor.expect("a third row follows");
        let next: Window<(i64, String)> = Window::new(Some(2), Some(&cursor), DEFAULT).unwrap();
        assert_eq!(next.after, Some((4, "b".to_string())));
        let last = next.page(vec![(3, "c".to_string())], |r| r.0);
        assert_eq!(last.items.len(), 1);
        assert_eq!(last.next_cursor, None);
    }

    #[test]
    fn bad_limits_and_foreign_cursors_are_refused() {
        assert!(Window::<i64>::new(Some(0), None, DEFAULT).is_err());
        assert_eq!(
            Window::<i64>::new(Some(5000), None, DEFAULT).unwrap().limit,
            1000
        );
        assert_eq!(Window::<i64>::new(None, None, DEFAULT).unwrap().limit, 100);
        let status = |c: &str| {
            Window::<i64>::new(None, Some(c), DEFAULT)
                .err()
                .map(|e| e.status.as_u16())
        };
        assert_eq!(status("%%%"), Some(400));
        assert_eq!(status(&"A".repeat(2000)), Some(400));
        assert_eq!(status("bm90IGpzb24"), Some(422), "base64 of `not json`");
        // A cursor of another list's key shape is refused, not misread.
        assert_eq!(status(&encode(&"tom")), Some(422));
        // NUL hidden in a key never reaches SQL.
        let nul = encode(&("a\0b", "x"));
        assert_eq!(
            Window::<(String, String)>::new(None, Some(&nul), DEFAULT)
                .err()
                .map(|e| e.status.as_u16()),
            Some(422)
        );
    }
}
