//! The ticket document: typed creation, reading and schema migration of the
//! Automerge document a ticket lives in (layout in DESIGN.md).
//!
//! Strings are read whether they were written as scalars (Rust) or as
//! collaborative Text (automerge JS 3.x writes every string that way);
//! `notes` is always Text so concurrent typing merges.

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ChangeHash, ObjId, ObjType, ReadDoc, Value, ROOT};
use serde::Serialize;

use crate::status::Status;

/// Version written to `schema`. Documents without it are version 0.
pub const SCHEMA_VERSION: i64 = 1;

/// What a dispatcher records at intake (seed 000/003).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Intake {
    pub ticket_no: String,
    /// Customer archive record this ticket belongs to (empty: none).
    pub customer_id: String,
    pub customer_name: String,
    pub customer_phone: String,
    pub customer_address: String,
    /// Where the work is done when it is not the customer's address.
    pub site: String,
    /// Asset record of the customer's product (empty: none).
    pub asset_id: String,
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

/// One visit: check-in/out and what was done (technicians write these offline).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Visit {
    pub id: String,
    pub technician_id: String,
    pub arrived_at: String,
    pub departed_at: String,
    pub work_done: String,
    pub result: String,
    /// Fixed on this visit (first-time-fix KPI); None until checked out.
    pub fixed: Option<bool>,
}

/// One part used, against the parts catalogue.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartUsed {
    pub id: String,
    pub part_no: String,
    pub qty: i64,
    pub serial: String,
    /// `van` (the technician's van stock) or `warehouse`.
    pub source: String,
    /// The visit it was fitted on (optional).
    pub visit_id: String,
    /// Whose van it came from; when empty, the visit's or the assignee's.
    pub technician_id: String,
}

/// The customer's confirmation, bound to the document heads at signing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Signoff {
    pub signer_name: String,
    pub signed_at: String,
    /// Attachment holding the signature image.
    pub signature_sha256: String,
    /// Hex change hashes: the document state the customer saw and signed.
    pub doc_heads: Vec<String>,
}

/// One status change, appended by the server (never by devices) when it
/// accepts a change of `status`: who, in which role, when.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatusEvent {
    pub from: String,
    pub to: String,
    pub by: String,
    pub role: String,
    /// When the server accepted it (RFC 3339, server clock).
    pub at: String,
    /// When the device made it (its clock; empty if unknown).
    pub device_at: String,
}

/// Customer feedback (seed 001): three dimensions on a 5- or 7-point scale.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Survey {
    pub scale: i64,
    pub efficiency: Option<i64>,
    pub attitude: Option<i64>,
    pub reasonableness: Option<i64>,
    pub comment: String,
}

/// A ticket as read from its document.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ticket {
    pub schema: i64,
    pub intake: Intake,
    pub status: String,
    pub technician_id: String,
    pub assigned_at: String,
    pub appointment_start: String,
    pub appointment_end: String,
    pub notes: String,
    pub visits: Vec<Visit>,
    pub parts_used: Vec<PartUsed>,
    pub signoff: Option<Signoff>,
    pub status_history: Vec<StatusEvent>,
    pub survey: Option<Survey>,
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

/// Whether a document is a ticket (bench and test documents are not).
pub fn is_ticket<R: ReadDoc>(doc: &R) -> bool {
    doc.get(ROOT, "ticket_no").ok().flatten().is_some()
}

/// Writes a new ticket into an empty document.
pub fn create<T: Transactable>(doc: &mut T, intake: &Intake) -> Result<(), TicketError> {
    doc.put(ROOT, "schema", SCHEMA_VERSION)?;
    doc.put(ROOT, "ticket_no", intake.ticket_no.as_str())?;
    doc.put(ROOT, "priority", intake.priority.as_str())?;
    doc.put(ROOT, "status", "new")?;
    doc.put(ROOT, "site", intake.site.as_str())?;
    let customer = doc.put_object(ROOT, "customer", ObjType::Map)?;
    doc.put(&customer, "id", intake.customer_id.as_str())?;
    doc.put(&customer, "name", intake.customer_name.as_str())?;
    doc.put(&customer, "phone", intake.customer_phone.as_str())?;
    doc.put(&customer, "address", intake.customer_address.as_str())?;
    let asset = doc.put_object(ROOT, "asset", ObjType::Map)?;
    doc.put(&asset, "id", intake.asset_id.as_str())?;
    doc.put(&asset, "product", intake.product.as_str())?;
    doc.put(&asset, "model", intake.model.as_str())?;
    doc.put(&asset, "serial", intake.serial.as_str())?;
    let fault = doc.put_object(ROOT, "fault", ObjType::Map)?;
    doc.put(&fault, "description", intake.fault_description.as_str())?;
    doc.put(&fault, "occurred_at", intake.occurred_at.as_str())?;
    doc.put(&fault, "reported_via", intake.reported_via.as_str())?;
    add_missing_containers(doc)?;
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
fn add_missing_containers<T: Transactable>(doc: &mut T) -> Result<(), TicketError> {
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
pub fn append_note<T: Transactable>(doc: &mut T, text: &str) -> Result<(), TicketError> {
    let notes = match doc.get(ROOT, "notes")? {
        Some((Value::Object(ObjType::Text), id)) => id,
        _ => doc.put_object(ROOT, "notes", ObjType::Text)?,
    };
    let end = doc.length(&notes);
    doc.splice_text(&notes, end, 0, text)?;
    Ok(())
}

pub fn set_status<T: Transactable>(doc: &mut T, status: Status) -> Result<(), TicketError> {
    doc.put(ROOT, "status", status.as_str())?;
    Ok(())
}

pub fn set_assignment<T: Transactable>(
    doc: &mut T,
    technician_id: &str,
    assigned_by: &str,
    at: &str,
) -> Result<(), TicketError> {
    let a = doc.put_object(ROOT, "assignment", ObjType::Map)?;
    doc.put(&a, "technician_id", technician_id)?;
    doc.put(&a, "assigned_by", assigned_by)?;
    doc.put(&a, "assigned_at", at)?;
    Ok(())
}

pub fn set_appointment<T: Transactable>(
    doc: &mut T,
    start: &str,
    end: &str,
) -> Result<(), TicketError> {
    let a = doc.put_object(ROOT, "appointment", ObjType::Map)?;
    doc.put(&a, "start", start)?;
    doc.put(&a, "end", end)?;
    Ok(())
}

/// Check-in: a new visit with its arrival time. Returns nothing; the id is the caller's.
pub fn check_in<T: Transactable>(
    doc: &mut T,
    visit_id: &str,
    technician_id: &str,
    arrived_at: &str,
) -> Result<(), TicketError> {
    let list = list_obj(doc, "visits")?;
    let v = doc.insert_object(&list, doc.length(&list), ObjType::Map)?;
    doc.put(&v, "id", visit_id)?;
    doc.put(&v, "technician_id", technician_id)?;
    doc.put(&v, "arrived_at", arrived_at)?;
    Ok(())
}

/// Check-out: departure time, work done, result, fixed on this visit.
pub fn check_out<T: Transactable>(
    doc: &mut T,
    visit_id: &str,
    departed_at: &str,
    work_done: &str,
    result: &str,
    fixed: bool,
) -> Result<(), TicketError> {
    let v = find_item(doc, "visits", visit_id)?
        .ok_or_else(|| TicketError::Automerge(format!("no visit `{visit_id}`")))?;
    doc.put(&v, "departed_at", departed_at)?;
    doc.put(&v, "work_done", work_done)?;
    doc.put(&v, "result", result)?;
    doc.put(&v, "fixed", fixed)?;
    Ok(())
}

pub fn add_part<T: Transactable>(doc: &mut T, part: &PartUsed) -> Result<(), TicketError> {
    let list = list_obj(doc, "parts_used")?;
    let p = doc.insert_object(&list, doc.length(&list), ObjType::Map)?;
    doc.put(&p, "id", part.id.as_str())?;
    doc.put(&p, "part_no", part.part_no.as_str())?;
    doc.put(&p, "qty", part.qty)?;
    doc.put(&p, "serial", part.serial.as_str())?;
    doc.put(&p, "source", part.source.as_str())?;
    doc.put(&p, "visit_id", part.visit_id.as_str())?;
    doc.put(&p, "technician_id", part.technician_id.as_str())?;
    Ok(())
}

/// Records the signoff. `heads` are the document heads the customer saw
/// (read them just before this call).
pub fn sign<T: Transactable>(
    doc: &mut T,
    signer_name: &str,
    signed_at: &str,
    signature_sha256: &str,
    heads: &[ChangeHash],
) -> Result<(), TicketError> {
    let s = doc.put_object(ROOT, "signoff", ObjType::Map)?;
    doc.put(&s, "signer_name", signer_name)?;
    doc.put(&s, "signed_at", signed_at)?;
    doc.put(&s, "signature_sha256", signature_sha256)?;
    let list = doc.put_object(&s, "doc_heads", ObjType::List)?;
    for (i, h) in heads.iter().enumerate() {
        doc.insert(&list, i, h.to_string())?;
    }
    Ok(())
}

pub fn set_survey<T: Transactable>(doc: &mut T, survey: &Survey) -> Result<(), TicketError> {
    let s = doc.put_object(ROOT, "survey", ObjType::Map)?;
    doc.put(&s, "scale", survey.scale)?;
    for (k, v) in [
        ("efficiency", survey.efficiency),
        ("attitude", survey.attitude),
        ("reasonableness", survey.reasonableness),
    ] {
        if let Some(v) = v {
            doc.put(&s, k, v)?;
        }
    }
    doc.put(&s, "comment", survey.comment.as_str())?;
    Ok(())
}

/// Server only: where the recorded survey came from (`link`: the
/// customer's survey page) and when it was answered.
pub fn mark_survey_source<T: Transactable>(
    doc: &mut T,
    via: &str,
    answered_at: &str,
) -> Result<(), TicketError> {
    let Some((automerge::Value::Object(ObjType::Map), s)) = doc.get(ROOT, "survey")? else {
        return Err(TicketError::Automerge("no survey to mark".into()));
    };
    doc.put(&s, "via", via)?;
    doc.put(&s, "answered_at", answered_at)?;
    Ok(())
}

/// Server only: appends to `status_history`.
pub fn append_status_event<T: Transactable>(
    doc: &mut T,
    e: &StatusEvent,
) -> Result<(), TicketError> {
    let list = list_obj(doc, "status_history")?;
    let item = doc.insert_object(&list, doc.length(&list), ObjType::Map)?;
    for (k, v) in [
        ("from", &e.from),
        ("to", &e.to),
        ("by", &e.by),
        ("role", &e.role),
        ("at", &e.at),
        ("device_at", &e.device_at),
    ] {
        doc.put(&item, k, v.as_str())?;
    }
    Ok(())
}

fn list_obj<T: Transactable>(doc: &mut T, key: &str) -> Result<ObjId, TicketError> {
    Ok(match doc.get(ROOT, key)? {
        Some((Value::Object(ObjType::List), id)) => id,
        _ => doc.put_object(ROOT, key, ObjType::List)?,
    })
}

fn find_item<R: ReadDoc>(doc: &R, list: &str, id: &str) -> Result<Option<ObjId>, TicketError> {
    let Some((Value::Object(ObjType::List), list)) = doc.get(ROOT, list)? else {
        return Ok(None);
    };
    for i in 0..doc.length(&list) {
        if let Some((Value::Object(ObjType::Map), item)) = doc.get(&list, i)? {
            if str_at(&View::now(doc), &item, "id") == id {
                return Ok(Some(item));
            }
        }
    }
    Ok(None)
}

pub fn read<R: ReadDoc>(doc: &R) -> Result<Ticket, TicketError> {
    read_with(doc, true)
}

/// Everything but the long lists (visits, parts used) and the notes: what
/// changes rarely and costs the same on a long ticket as on a new one.
pub fn read_header<R: ReadDoc>(doc: &R) -> Result<Ticket, TicketError> {
    read_with(doc, false)
}

fn read_with<R: ReadDoc>(doc: &R, lists: bool) -> Result<Ticket, TicketError> {
    let v = View::now(doc);
    let schema = v.int(&ROOT, "schema").unwrap_or(0);
    if schema > SCHEMA_VERSION {
        return Err(TicketError::TooNew(schema));
    }
    let (customer, asset, fault) = (
        v.map(&ROOT, "customer"),
        v.map(&ROOT, "asset"),
        v.map(&ROOT, "fault"),
    );
    let (assignment, appointment) = (v.map(&ROOT, "assignment"), v.map(&ROOT, "appointment"));
    let field =
        |o: &Option<ObjId>, key: &str| o.as_ref().map(|o| str_at(&v, o, key)).unwrap_or_default();
    let (visits, parts_used) = if lists { work(&v) } else { Default::default() };
    Ok(Ticket {
        schema,
        intake: Intake {
            ticket_no: str_at(&v, &ROOT, "ticket_no"),
            customer_id: field(&customer, "id"),
            customer_name: field(&customer, "name"),
            customer_phone: field(&customer, "phone"),
            customer_address: field(&customer, "address"),
            site: str_at(&v, &ROOT, "site"),
            asset_id: field(&asset, "id"),
            product: field(&asset, "product"),
            model: field(&asset, "model"),
            serial: field(&asset, "serial"),
            fault_description: field(&fault, "description"),
            occurred_at: field(&fault, "occurred_at"),
            reported_via: field(&fault, "reported_via"),
            priority: str_at(&v, &ROOT, "priority"),
        },
        status: str_at(&v, &ROOT, "status"),
        technician_id: field(&assignment, "technician_id"),
        assigned_at: field(&assignment, "assigned_at"),
        appointment_start: field(&appointment, "start"),
        appointment_end: field(&appointment, "end"),
        notes: if lists {
            str_at(&v, &ROOT, "notes")
        } else {
            String::new()
        },
        visits,
        parts_used,
        signoff: v.map(&ROOT, "signoff").map(|s| Signoff {
            signer_name: str_at(&v, &s, "signer_name"),
            signed_at: str_at(&v, &s, "signed_at"),
            signature_sha256: str_at(&v, &s, "signature_sha256"),
            doc_heads: v
                .list(&s, "doc_heads")
                .map(|l| (0..v.len(&l)).map(|i| v.str_item(&l, i)).collect())
                .unwrap_or_default(),
        }),
        status_history: v
            .items(&ROOT, "status_history")
            .into_iter()
            .map(|e| StatusEvent {
                from: str_at(&v, &e, "from"),
                to: str_at(&v, &e, "to"),
                by: str_at(&v, &e, "by"),
                role: str_at(&v, &e, "role"),
                at: str_at(&v, &e, "at"),
                device_at: str_at(&v, &e, "device_at"),
            })
            .collect(),
        survey: v.map(&ROOT, "survey").map(|s| Survey {
            scale: v.int(&s, "scale").unwrap_or(5),
            efficiency: v.int(&s, "efficiency"),
            attitude: v.int(&s, "attitude"),
            reasonableness: v.int(&s, "reasonableness"),
            comment: str_at(&v, &s, "comment"),
        }),
    })
}

/// The current status and the last status the server recorded in
/// `status_history` (without reading the whole ticket).
pub fn status_and_last_recorded<R: ReadDoc>(doc: &R) -> (String, String) {
    let v = View::now(doc);
    let last = v
        .items(&ROOT, "status_history")
        .last()
        .map(|e| str_at(&v, e, "to"))
        .unwrap_or_default();
    (str_at(&v, &ROOT, "status"), last)
}

/// Visits and parts as they are in `v` (now, or at some heads).
fn work<R: ReadDoc>(v: &View<'_, R>) -> (Vec<Visit>, Vec<PartUsed>) {
    let visits = v
        .items(&ROOT, "visits")
        .into_iter()
        .map(|o| visit_in(v, &o))
        .collect();
    let parts = v
        .items(&ROOT, "parts_used")
        .into_iter()
        .map(|o| PartUsed {
            id: str_at(v, &o, "id"),
            part_no: str_at(v, &o, "part_no"),
            qty: v.int(&o, "qty").unwrap_or(0),
            serial: str_at(v, &o, "serial"),
            source: str_at(v, &o, "source"),
            visit_id: str_at(v, &o, "visit_id"),
            technician_id: str_at(v, &o, "technician_id"),
        })
        .collect();
    (visits, parts)
}

fn visit_in<R: ReadDoc>(v: &View<'_, R>, o: &ObjId) -> Visit {
    Visit {
        id: str_at(v, o, "id"),
        technician_id: str_at(v, o, "technician_id"),
        arrived_at: str_at(v, o, "arrived_at"),
        departed_at: str_at(v, o, "departed_at"),
        work_done: str_at(v, o, "work_done"),
        result: str_at(v, o, "result"),
        fixed: v.bool(o, "fixed"),
    }
}

/// One visit, read from its map (incremental projection).
pub fn read_visit<R: ReadDoc>(doc: &R, visit: &ObjId) -> Visit {
    visit_in(&View::now(doc), visit)
}

/// The `visits` list object and its length, if there is one.
pub fn visits_list<R: ReadDoc>(doc: &R) -> Option<(ObjId, usize)> {
    match doc.get(ROOT, "visits").ok().flatten() {
        Some((Value::Object(ObjType::List), id)) => {
            let len = doc.length(&id);
            Some((id, len))
        }
        _ => None,
    }
}

/// SHA-256 (hex) of what a signoff covers: the visits and parts as of
/// `heads`, in a canonical JSON form. None when a head is not in the document.
pub fn signed_content_sha256<R: ReadDoc>(doc: &R, heads: &[ChangeHash]) -> Option<String> {
    if heads.is_empty() || heads.iter().any(|h| doc.get_change_by_hash(h).is_none()) {
        return None;
    }
    Some(content_hash(&View {
        doc,
        heads: Some(heads),
    }))
}

/// The same hash over the current state (compare to detect later edits).
pub fn current_content_sha256<R: ReadDoc>(doc: &R) -> String {
    content_hash(&View::now(doc))
}

fn content_hash<R: ReadDoc>(v: &View<'_, R>) -> String {
    use sha2::{Digest, Sha256};
    let (visits, parts_used) = work(v);
    let json = serde_json::json!({ "visits": visits, "parts_used": parts_used });
    let digest = Sha256::digest(json.to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses the heads a signoff carries — hex (`Automerge.getHeads`) or
/// bs58 (automerge-repo's `handle.heads()`); None if any is malformed.
pub fn parse_heads(heads: &[String]) -> Option<Vec<ChangeHash>> {
    heads
        .iter()
        .map(|h| {
            h.parse::<ChangeHash>().ok().or_else(|| {
                let bytes = bs58::decode(h).into_vec().ok()?;
                ChangeHash::try_from(bytes.as_slice()).ok()
            })
        })
        .collect()
}

/// SHA-256 names of the blobs the ticket references (attachments and the
/// signature image): what a device may download for this ticket.
pub fn referenced_blobs<R: ReadDoc>(doc: &R) -> std::collections::BTreeSet<String> {
    blobs_in(&View::now(doc))
}

/// The same as of `heads` (no heads: the empty document references nothing).
pub fn referenced_blobs_at<R: ReadDoc>(
    doc: &R,
    heads: &[ChangeHash],
) -> std::collections::BTreeSet<String> {
    if heads.is_empty() {
        return Default::default();
    }
    blobs_in(&View {
        doc,
        heads: Some(heads),
    })
}

fn blobs_in<R: ReadDoc>(v: &View<'_, R>) -> std::collections::BTreeSet<String> {
    let mut out: std::collections::BTreeSet<String> = v
        .items(&ROOT, "attachments")
        .into_iter()
        .map(|item| str_at(v, &item, "sha256"))
        .collect();
    if let Some(signoff) = v.map(&ROOT, "signoff") {
        out.insert(str_at(v, &signoff, "signature_sha256"));
    }
    out.remove("");
    out
}

/// Reads a document now or at given heads, leniently: a missing or
/// mistyped field reads as empty, never as an error (devices write what
/// they write; the projection must still be computable).
struct View<'a, R> {
    doc: &'a R,
    heads: Option<&'a [ChangeHash]>,
}

impl<'a, R: ReadDoc> View<'a, R> {
    fn now(doc: &'a R) -> Self {
        Self { doc, heads: None }
    }
    fn get<P: Into<automerge::Prop>>(&self, obj: &ObjId, prop: P) -> Option<(Value<'_>, ObjId)> {
        match self.heads {
            Some(h) => self.doc.get_at(obj, prop, h),
            None => self.doc.get(obj, prop),
        }
        .ok()
        .flatten()
    }
    fn len(&self, obj: &ObjId) -> usize {
        match self.heads {
            Some(h) => self.doc.length_at(obj, h),
            None => self.doc.length(obj),
        }
    }
    fn text(&self, obj: &ObjId) -> String {
        match self.heads {
            Some(h) => self.doc.text_at(obj, h),
            None => self.doc.text(obj),
        }
        .unwrap_or_default()
    }
    fn object(&self, obj: &ObjId, key: &str, kind: ObjType) -> Option<ObjId> {
        match self.get(obj, key) {
            Some((Value::Object(k), id)) if k == kind => Some(id),
            _ => None,
        }
    }
    fn map(&self, obj: &ObjId, key: &str) -> Option<ObjId> {
        self.object(obj, key, ObjType::Map)
    }
    fn list(&self, obj: &ObjId, key: &str) -> Option<ObjId> {
        self.object(obj, key, ObjType::List)
    }
    /// The map items of a list field.
    fn items(&self, obj: &ObjId, key: &str) -> Vec<ObjId> {
        let Some(list) = self.list(obj, key) else {
            return Vec::new();
        };
        (0..self.len(&list))
            .filter_map(|i| match self.get(&list, i) {
                Some((Value::Object(ObjType::Map), id)) => Some(id),
                _ => None,
            })
            .collect()
    }
    /// NUL characters are dropped: what is read here goes into text columns
    /// (PostgreSQL refuses NUL), and one NUL in a field must not make every
    /// commit of the ticket fail.
    fn scalar_to_string(&self, got: Option<(Value<'_>, ObjId)>) -> String {
        let s = match got {
            Some((Value::Object(ObjType::Text), id)) => self.text(&id),
            Some((Value::Scalar(s), _)) => s.into_owned().into_string().unwrap_or_default(),
            _ => String::new(),
        };
        if s.contains('\0') {
            s.replace('\0', "")
        } else {
            s
        }
    }
    fn str_item(&self, list: &ObjId, i: usize) -> String {
        self.scalar_to_string(self.get(list, i))
    }
    fn int(&self, obj: &ObjId, key: &str) -> Option<i64> {
        match self.get(obj, key)? {
            (Value::Scalar(s), _) => s.as_i64(),
            _ => None,
        }
    }
    fn bool(&self, obj: &ObjId, key: &str) -> Option<bool> {
        match self.get(obj, key)? {
            (Value::Scalar(s), _) => s.as_bool(),
            _ => None,
        }
    }
}

/// A string field, written as a scalar or as Text; empty when absent.
fn str_at<R: ReadDoc>(v: &View<'_, R>, obj: &ObjId, key: &str) -> String {
    v.scalar_to_string(v.get(obj, key))
}

fn int_at(doc: &AutoCommit, obj: &ObjId, key: &str) -> Option<i64> {
    View::now(doc).int(obj, key)
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
            ..Default::default()
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
            (
                t.status.as_str(),
                t.notes.as_str(),
                t.visits.len(),
                t.parts_used.len()
            ),
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

    fn part(id: &str) -> PartUsed {
        PartUsed {
            id: id.into(),
            part_no: "MTR-40".into(),
            qty: 1,
            serial: "M-1".into(),
            source: "van".into(),
            visit_id: "v1".into(),
            technician_id: String::new(),
        }
    }

    #[test]
    fn visits_parts_and_signoff_round_trip() {
        let mut doc = AutoCommit::new();
        create(&mut doc, &intake()).unwrap();
        check_in(&mut doc, "v1", "tech-1", "2026-11-23T09:00:00Z").unwrap();
        add_part(&mut doc, &part("p1")).unwrap();
        check_out(
            &mut doc,
            "v1",
            "2026-11-23T10:30:00Z",
            "Replaced motor",
            "works",
            true,
        )
        .unwrap();
        let heads = doc.get_heads();
        sign(
            &mut doc,
            "Li Wei",
            "2026-11-23T10:31:00Z",
            &"cc".repeat(32),
            &heads,
        )
        .unwrap();
        set_survey(
            &mut doc,
            &Survey {
                scale: 5,
                efficiency: Some(5),
                attitude: Some(4),
                reasonableness: None,
                comment: "ok".into(),
            },
        )
        .unwrap();
        let t = read(&doc).unwrap();
        assert_eq!(
            t.visits,
            vec![Visit {
                id: "v1".into(),
                technician_id: "tech-1".into(),
                arrived_at: "2026-11-23T09:00:00Z".into(),
                departed_at: "2026-11-23T10:30:00Z".into(),
                work_done: "Replaced motor".into(),
                result: "works".into(),
                fixed: Some(true),
            }]
        );
        assert_eq!(t.parts_used, vec![part("p1")]);
        let s = t.signoff.unwrap();
        assert_eq!(parse_heads(&s.doc_heads).unwrap(), heads);
        let bs58: Vec<String> = heads
            .iter()
            .map(|h| bs58::encode(h.0).into_string())
            .collect();
        assert_eq!(
            parse_heads(&bs58).unwrap(),
            heads,
            "automerge-repo's encoding"
        );
        assert_eq!(parse_heads(&["not a hash".to_string()]), None);
        assert_eq!(t.survey.unwrap().attitude, Some(4));
    }

    #[test]
    fn signed_content_hash_is_bound_to_the_heads_and_detects_later_edits() {
        let mut doc = AutoCommit::new();
        create(&mut doc, &intake()).unwrap();
        check_in(&mut doc, "v1", "tech-1", "2026-11-23T09:00:00Z").unwrap();
        add_part(&mut doc, &part("p1")).unwrap();
        let heads = doc.get_heads();
        let signed = signed_content_sha256(&doc, &heads).unwrap();
        assert_eq!(signed, current_content_sha256(&doc));
        // Notes are not signed content: editing them changes nothing.
        append_note(&mut doc, "thanks").unwrap();
        assert_eq!(signed, current_content_sha256(&doc));
        assert_eq!(
            signed_content_sha256(&doc, &heads).unwrap(),
            signed,
            "stable at the heads"
        );
        // A later edit to a part is visible as a different current hash.
        add_part(&mut doc, &part("p2")).unwrap();
        assert_ne!(signed, current_content_sha256(&doc));
        assert_eq!(signed_content_sha256(&doc, &heads).unwrap(), signed);
        // Heads the document does not have cannot be signed content.
        let unknown = ChangeHash([7; 32]);
        assert_eq!(signed_content_sha256(&doc, &[unknown]), None);
        assert_eq!(signed_content_sha256(&doc, &[]), None);
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
