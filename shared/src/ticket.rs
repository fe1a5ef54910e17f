//! The ticket document: typed creation, reading and schema migration of the
//! Automerge document a ticket lives in (layout in DESIGN.md).
//!
//! Strings are read whether they were written as scalars (Rust) or as
//! collaborative Text (automerge JS 3.x writes every string that way);
//! `notes` is always Text so concurrent typing merges.

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjId, ObjType, ReadDoc, Value, ROOT};

/// Version written to `schema`. Documents without it are version 0.
pub const SCHEMA_VERSION: i64 = 1;

/// What a dispatcher records at intake (seed 000/003).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Intake {
    pub ticket_no: String,
    pub customer_name: String,
    pub customer_phone: String,
    pub customer_address: String,
    pub product: String,
    pub model: String,
    pub serial: String,
    pub fault_description: String,
    /// RFC 3339 time of occurrence.
    pub occurred_at: String,
    /// phone, web, email, walk-in…
    pub reported_via: String,
    /// A, B or C.
    pub priority: String,
}

/// A ticket as read from its document.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ticket {
    pub schema: i64,
    pub intake: Intake,
    pub status: String,
    pub notes: String,
    pub visits: usize,
    pub parts_used: usize,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TicketError {
    #[error("document schema {0} is newer than this software understands ({SCHEMA_VERSION})")]
    TooNew(i64),
    #[error("invalid ticket document: {0}")]
    Automerge(String),
}

impl From<automerge::AutomergeError> for TicketError {
    fn from(e: automerge::AutomergeError) -> Self {
        TicketError::Automerge(e.to_string())
    }
}

/// Writes a new ticket into an empty document.
pub fn create(doc: &mut AutoCommit, intake: &Intake) -> Result<(), TicketError> {
    doc.put(ROOT, "schema", SCHEMA_VERSION)?;
    doc.put(ROOT, "ticket_no", intake.ticket_no.as_str())?;
    doc.put(ROOT, "priority", intake.priority.as_str())?;
    doc.put(ROOT, "status", "new")?;
    let customer = doc.put_object(ROOT, "customer", ObjType::Map)?;
    doc.put(&customer, "name", intake.customer_name.as_str())?;
    doc.put(&customer, "phone", intake.customer_phone.as_str())?;
    doc.put(&customer, "address", intake.customer_address.as_str())?;
    let asset = doc.put_object(ROOT, "asset", ObjType::Map)?;
    doc.put(&asset, "product", intake.product.as_str())?;
    doc.put(&asset, "model", intake.model.as_str())?;
    doc.put(&asset, "serial", intake.serial.as_str())?;
    let fault = doc.put_object(ROOT, "fault", ObjType::Map)?;
    doc.put(&fault, "description", intake.fault_description.as_str())?;
    doc.put(&fault, "occurred_at", intake.occurred_at.as_str())?;
    doc.put(&fault, "reported_via", intake.reported_via.as_str())?;
    add_missing_containers(doc)?;
    doc.commit();
    Ok(())
}

/// Brings an older document up to `SCHEMA_VERSION` (adds what later versions
/// expect). Returns whether anything changed. Idempotent.
pub fn migrate(doc: &mut AutoCommit) -> Result<bool, TicketError> {
    let version = int_at(doc, &ROOT, "schema").unwrap_or(0);
    if version > SCHEMA_VERSION {
        return Err(TicketError::TooNew(version));
    }
    if version == SCHEMA_VERSION {
        return Ok(false);
    }
    add_missing_containers(doc)?;
    doc.put(ROOT, "schema", SCHEMA_VERSION)?;
    doc.commit();
    Ok(true)
}

/// v0 → v1: lists for visits, parts, checklist and attachments, Text notes.
fn add_missing_containers(doc: &mut AutoCommit) -> Result<(), TicketError> {
    for key in ["visits", "parts_used", "checklist", "attachments"] {
        if doc.get(ROOT, key)?.is_none() {
            doc.put_object(ROOT, key, ObjType::List)?;
        }
    }
    match doc.get(ROOT, "notes")? {
        Some((Value::Object(ObjType::Text), _)) => {}
        // Old documents kept notes as a plain string: move it into Text.
        other => {
            let old = other
                .and_then(|(v, _)| v.into_scalar().ok())
                .and_then(|s| s.into_string().ok());
            let notes = doc.put_object(ROOT, "notes", ObjType::Text)?;
            if let Some(old) = old {
                doc.splice_text(&notes, 0, 0, &old)?;
            }
        }
    }
    Ok(())
}

/// Appends to the notes (Text: concurrent appends from devices both survive).
pub fn append_note(doc: &mut AutoCommit, text: &str) -> Result<(), TicketError> {
    let notes = match doc.get(ROOT, "notes")? {
        Some((Value::Object(ObjType::Text), id)) => id,
        _ => doc.put_object(ROOT, "notes", ObjType::Text)?,
    };
    let end = doc.length(&notes);
    doc.splice_text(&notes, end, 0, text)?;
    Ok(())
}

pub fn read(doc: &AutoCommit) -> Result<Ticket, TicketError> {
    let schema = int_at(doc, &ROOT, "schema").unwrap_or(0);
    if schema > SCHEMA_VERSION {
        return Err(TicketError::TooNew(schema));
    }
    let obj = |key: &str| match doc.get(ROOT, key) {
        Ok(Some((Value::Object(_), id))) => Some(id),
        _ => None,
    };
    let (customer, asset, fault) = (obj("customer"), obj("asset"), obj("fault"));
    let field =
        |o: &Option<ObjId>, key: &str| o.as_ref().map(|o| str_at(doc, o, key)).unwrap_or_default();
    let list_len = |key: &str| obj(key).map(|id| doc.length(&id)).unwrap_or(0);
    Ok(Ticket {
        schema,
        intake: Intake {
            ticket_no: str_at(doc, &ROOT, "ticket_no"),
            customer_name: field(&customer, "name"),
            customer_phone: field(&customer, "phone"),
            customer_address: field(&customer, "address"),
            product: field(&asset, "product"),
            model: field(&asset, "model"),
            serial: field(&asset, "serial"),
            fault_description: field(&fault, "description"),
            occurred_at: field(&fault, "occurred_at"),
            reported_via: field(&fault, "reported_via"),
            priority: str_at(doc, &ROOT, "priority"),
        },
        status: str_at(doc, &ROOT, "status"),
        notes: str_at(doc, &ROOT, "notes"),
        visits: list_len("visits"),
        parts_used: list_len("parts_used"),
    })
}

/// SHA-256 names of the blobs the ticket references (attachments and the
/// signature image): what a device may download for this ticket.
pub fn referenced_blobs<R: ReadDoc>(doc: &R) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    if let Ok(Some((Value::Object(ObjType::List), list))) = doc.get(ROOT, "attachments") {
        for i in 0..doc.length(&list) {
            if let Ok(Some((Value::Object(ObjType::Map), item))) = doc.get(&list, i) {
                out.insert(str_at(doc, &item, "sha256"));
            }
        }
    }
    if let Ok(Some((Value::Object(ObjType::Map), signoff))) = doc.get(ROOT, "signoff") {
        out.insert(str_at(doc, &signoff, "signature_sha256"));
    }
    out.remove("");
    out
}

/// A string field, written as a scalar or as Text; empty when absent.
fn str_at<R: ReadDoc>(doc: &R, obj: &ObjId, key: &str) -> String {
    match doc.get(obj, key) {
        Ok(Some((Value::Object(ObjType::Text), id))) => doc.text(&id).unwrap_or_default(),
        Ok(Some((Value::Scalar(s), _))) => s.into_owned().into_string().unwrap_or_default(),
        _ => String::new(),
    }
}

fn int_at(doc: &AutoCommit, obj: &ObjId, key: &str) -> Option<i64> {
    doc.get(obj, key)
        .ok()
        .flatten()
        .and_then(|(v, _)| v.to_i64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intake() -> Intake {
        Intake {
            ticket_no: "T-1001".into(),
            customer_name: "Acme Bakery".into(),
            customer_phone: "+86 10 5555 0100".into(),
            customer_address: "1 Oven Road".into(),
            product: "Dough mixer".into(),
            model: "DM-40".into(),
            serial: "SN-778".into(),
            fault_description: "Motor stops under load".into(),
            occurred_at: "2026-11-22T08:30:00Z".into(),
            reported_via: "phone".into(),
            priority: "A".into(),
        }
    }

    #[test]
    fn create_then_read_round_trips() {
        let mut doc = AutoCommit::new();
        create(&mut doc, &intake()).unwrap();
        let t = read(&doc).unwrap();
        assert_eq!(t.schema, SCHEMA_VERSION);
        assert_eq!(t.intake, intake());
        assert_eq!(
            (t.status.as_str(), t.notes.as_str(), t.visits, t.parts_used),
            ("new", "", 0, 0)
        );
        assert!(
            !migrate(&mut doc).unwrap(),
            "current documents need no migration"
        );
    }

    #[test]
    fn concurrent_notes_from_two_devices_both_survive() {
        let mut a = AutoCommit::new();
        create(&mut a, &intake()).unwrap();
        let mut b = a.fork();
        append_note(&mut a, "Checked wiring. ").unwrap();
        append_note(&mut b, "Customer says it smells burnt. ").unwrap();
        a.merge(&mut b).unwrap();
        b.merge(&mut a).unwrap();
        let (na, nb) = (read(&a).unwrap().notes, read(&b).unwrap().notes);
        assert_eq!(na, nb);
        assert!(
            na.contains("Checked wiring.") && na.contains("smells burnt."),
            "{na}"
        );
    }

    #[test]
    fn version_zero_documents_are_migrated_and_strings_read_as_text_too() {
        // A v0 document: no schema, notes as a plain string, ticket_no as Text
        // (as automerge JS writes strings).
        let mut doc = AutoCommit::new();
        doc.put(ROOT, "notes", "old note").unwrap();
        let no = doc.put_object(ROOT, "ticket_no", ObjType::Text).unwrap();
        doc.splice_text(&no, 0, 0, "T-9").unwrap();
        doc.commit();
        assert_eq!(read(&doc).unwrap().schema, 0);
        assert!(migrate(&mut doc).unwrap());
        let t = read(&doc).unwrap();
        assert_eq!(
            (t.schema, t.notes.as_str(), t.intake.ticket_no.as_str()),
            (SCHEMA_VERSION, "old note", "T-9")
        );
        assert!(matches!(
            doc.get(ROOT, "notes").unwrap(),
            Some((Value::Object(ObjType::Text), _))
        ));
        assert!(!migrate(&mut doc).unwrap(), "idempotent");
    }

    #[test]
    fn lists_the_blobs_a_ticket_references() {
        let mut doc = AutoCommit::new();
        create(&mut doc, &intake()).unwrap();
        let (_, list) = doc.get(ROOT, "attachments").unwrap().unwrap();
        let photo = doc.insert_object(&list, 0, ObjType::Map).unwrap();
        doc.put(&photo, "sha256", "aa".repeat(32)).unwrap();
        let signoff = doc.put_object(ROOT, "signoff", ObjType::Map).unwrap();
        let sig = doc
            .put_object(&signoff, "signature_sha256", ObjType::Text)
            .unwrap();
        doc.splice_text(&sig, 0, 0, &"bb".repeat(32)).unwrap();
        let blobs: Vec<String> = referenced_blobs(&doc).into_iter().collect();
        assert_eq!(blobs, vec!["aa".repeat(32), "bb".repeat(32)]);
    }

    #[test]
    fn newer_documents_are_refused_not_mangled() {
        let mut doc = AutoCommit::new();
        doc.put(ROOT, "schema", SCHEMA_VERSION + 1).unwrap();
        assert_eq!(read(&doc), Err(TicketError::TooNew(SCHEMA_VERSION + 1)));
        assert_eq!(
            migrate(&mut doc),
            Err(TicketError::TooNew(SCHEMA_VERSION + 1))
        );
    }
}
