//! Merge integrity: every operation a peer's changes carry is judged against
//! the author's role, and forbidden ones are undone one by one.
//!
//! Why operations and not visible values: a forbidden value can arrive as the
//! *losing* side of a conflict, or inside an object that is no longer visible,
//! and a diff of visible values shows neither. So each newly applied change is
//! decoded and each of its ops judged (`judge`), whatever its visibility.
//!
//! Undoing (`compensate`) works at op granularity, in one server change:
//! an inserted element is deleted, a deleted one re-inserted, a forbidden put
//! is overwritten with the legitimate value (the other conflict values, or
//! what the op overwrote), an increment is reversed. Nothing legal is touched.
//!
//! Objects are the one thing Automerge cannot bring back: once a map key or
//! list element holding an object is overwritten or deleted, that object is
//! invisible forever, and every edit that later lands in it (from any device,
//! at any time) would be hidden. So no device may replace or delete a
//! protected container (`PROTECTED`), and whenever the server has to restore
//! an object it puts a copy and records a *forward*: `_forwards[old] = new`
//! in the document. Later edits that land in `old` (or anything inside it)
//! are carried into `new` by a server change (`forward`), by a three-way
//! merge of `old`'s content since it was last carried over. A forbidden
//! replacement whose author may write that field (a technician's app doing
//! `doc.visits = [...]`) is forwarded too: its items are legal edits.
//!
//! Everything lives in the document, so it replicates, survives restarts and
//! is identical on every server instance. No I/O here.

use std::collections::{BTreeSet, HashMap};

use automerge::hydrate;
use automerge::transaction::{Transactable, Transaction};
use automerge::{
    ActorId, Automerge, Change, ChangeHash, Cursor, ObjId, ObjType, Prop, ReadDoc, ScalarValue,
    Value, ROOT,
};
use fieldsync_shared::permissions::{group_of, write_rule, WriteRule};
use fieldsync_shared::roles::Role;
use fieldsync_shared::status::{self, Status};

use crate::storage::NewChange;

/// Top-level containers no device may replace or delete (the server creates
/// them once); edits go *into* them.
pub const PROTECTED: &[&str] = &[
    "visits",
    "parts_used",
    "checklist",
    "notes",
    "attachments",
    "customer",
    "asset",
    "status_history",
    FORWARDS,
];

/// The server's record of restored objects: `{old object id: {to, at}}`.
pub const FORWARDS: &str = "_forwards";

/// One rejected edit (grouped per top-level field and message).
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    pub path: String,
    pub attempted: serde_json::Value,
    pub restored: serde_json::Value,
}

pub type Violations = Vec<Violation>;

/// One operation of a newly applied change, in the document's terms.
#[derive(Debug, Clone)]
struct OpInfo {
    id: ObjId,
    obj: ObjId,
    key: KeyRef,
    action: automerge::legacy::OpType,
    pred: Vec<ObjId>,
    insert: bool,
    /// Root key of the tree the op is in (None: unknown object).
    field: Option<String>,
    /// The item of a root-level list the op is in (None: the list itself,
    /// or not in a list).
    item: Option<ObjId>,
    /// Index of its change among the message's applied changes.
    change: usize,
}

#[derive(Debug, Clone, PartialEq)]
enum KeyRef {
    Map(String),
    /// After this element (None: the list head).
    Seq(Option<ObjId>),
}

/// What a message's ops touched, for the incremental projection.
#[derive(Default, Clone, Debug)]
pub struct Touch {
    /// Root keys any op touched (legal or not).
    pub fields: BTreeSet<String>,
    /// Visit maps created or edited.
    pub visits: BTreeSet<ObjId>,
    /// The visits list itself changed shape (a delete, an element replaced,
    /// a non-map item) or was touched by the server's own repairs: re-read it.
    pub visits_reshaped: bool,
}

impl Touch {
    /// Unknown: the projection reads the document whole.
    pub fn everything() -> Self {
        Touch {
            fields: ["*".to_string(), "visits".to_string()]
                .into_iter()
                .collect(),
            visits: BTreeSet::new(),
            visits_reshaped: true,
        }
    }
}

/// What `judge` found in one message.
#[derive(Default)]
pub struct Judgement {
    /// What the ops touched (legal or not): what projection must look at.
    pub touched: Touch,
    forbidden: Vec<OpInfo>,
    /// Every op of the message, and where each is by id.
    all: Vec<OpInfo>,
    index: HashMap<ObjId, usize>,
    /// Objects that received ops and lie inside a forwarded (restored) tree.
    forward_sources: BTreeSet<String>,
    status_steps: Vec<(String, i64)>,
}

impl Judgement {
    pub fn is_clean(&self) -> bool {
        self.forbidden.is_empty() && self.forward_sources.is_empty()
    }
}

/// Per-document memory: the root key each object lives under. An object's
/// place never changes in Automerge, so this never goes stale.
#[derive(Default)]
pub struct FieldCache {
    place_of: HashMap<ObjId, Place>,
}

/// Where an object lives: under which root key, and in which item of a
/// root-level list (an object's place never changes in Automerge).
#[derive(Clone)]
struct Place {
    field: String,
    item: Option<ObjId>,
}

fn exid(counter: u64, actor: &ActorId) -> ObjId {
    // The actor index is looked up by automerge when it is not the doc's own.
    ObjId::Id(counter, actor.clone(), 0)
}

fn legacy_obj(o: &automerge::legacy::ObjectId) -> ObjId {
    match o {
        automerge::legacy::ObjectId::Root => ROOT,
        automerge::legacy::ObjectId::Id(id) => exid(id.0, &id.1),
    }
}

impl FieldCache {
    fn place(&mut self, doc: &Automerge, obj: &ObjId) -> Option<Place> {
        if *obj == ROOT {
            return None;
        }
        if let Some(p) = self.place_of.get(obj) {
            return Some(p.clone());
        }
        // [(ROOT, key), (list, index), (item, key), …] down to `obj`.
        let path = doc.parents(obj).ok()?.path();
        let field = match path.first() {
            Some((_, Prop::Map(k))) => k.clone(),
            _ => return None,
        };
        let item = match path.get(1) {
            Some((_, Prop::Seq(_))) => Some(
                path.get(2)
                    .map(|(o, _)| o.clone())
                    .unwrap_or_else(|| obj.clone()),
            ),
            _ => None,
        };
        let place = Place { field, item };
        self.place_of.insert(obj.clone(), place.clone());
        Some(place)
    }
}

fn key_ref(k: &automerge::legacy::Key) -> KeyRef {
    use automerge::legacy::{ElementId, Key};
    match k {
        Key::Map(k) => KeyRef::Map(k.to_string()),
        Key::Seq(ElementId::Head) => KeyRef::Seq(None),
        Key::Seq(ElementId::Id(e)) => KeyRef::Seq(Some(exid(e.0, &e.1))),
    }
}

/// Decodes the changes applied since `before` into operations.
fn ops_of(doc: &Automerge, cache: &mut FieldCache, changes: &[Change]) -> Vec<OpInfo> {
    let mut out = Vec::new();
    for (ci, change) in changes.iter().enumerate() {
        let expanded = change.decode();
        for (i, op) in expanded.operations.iter().enumerate() {
            let obj = legacy_obj(&op.obj);
            let key = key_ref(&op.key);
            let (field, item) = match (&obj, &key) {
                (o, KeyRef::Map(k)) if *o == ROOT => (Some(k.clone()), None),
                (o, _) => match cache.place(doc, o) {
                    Some(p) => (Some(p.field), p.item),
                    None => (None, None),
                },
            };
            out.push(OpInfo {
                id: exid(expanded.start_op.get() + i as u64, &expanded.actor_id),
                obj,
                key,
                action: op.action.clone(),
                pred: op.pred.iter().map(|p| exid(p.0, &p.1)).collect(),
                insert: op.insert,
                field,
                item,
                change: ci,
            });
        }
    }
    out
}

/// What `enforce` did.
#[derive(Default)]
pub struct Enforced {
    /// The undo of forbidden ops, and what was undone.
    pub compensation: Option<(NewChange, Vec<Violation>)>,
    /// Edits carried into restored objects (and the bookkeeping change).
    pub forwarded: Vec<NewChange>,
    /// What the message's ops touched (everything, when the server repaired
    /// something: see `Touch::visits_reshaped`).
    pub touched: Touch,
    /// Status values accepted ops wrote, in order, with their change times.
    pub status_steps: Vec<(String, i64)>,
}

/// Whose changes are judged: a role's, or someone who may write nothing at
/// all any more (a technician whose write-only window on a ticket they were
/// reassigned from has closed, `sharing::DocAccess::Locked`): every op of
/// theirs is undone and quarantined, none is lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Author {
    Role(Role),
    Locked,
}

impl From<Role> for Author {
    fn from(role: Role) -> Self {
        Author::Role(role)
    }
}

impl Author {
    fn rule(self, field: &str) -> WriteRule {
        match self {
            Author::Role(role) => write_rule(role, group_of(field)),
            Author::Locked => WriteRule::Denied,
        }
    }

    fn may_reach(self, from: Option<Status>, to: Status) -> bool {
        match self {
            Author::Role(role) => status::may_reach(role, from, to),
            Author::Locked => false,
        }
    }
}

/// Judges the changes a message made `doc` apply and undoes/forwards as
/// needed; the server changes are applied to `doc` and returned for storage.
pub fn enforce(
    doc: &mut Automerge,
    cache: &mut FieldCache,
    applied: &[Change],
    role: Author,
) -> Enforced {
    let mut out = Enforced::default();
    // Admins may write any field of other documents (not tickets).
    if role == Author::Role(Role::Admin) && !fieldsync_shared::ticket::is_ticket(doc) {
        out.touched = Touch::everything();
        return out;
    }
    let judgement = judge(doc, cache, applied, role);
    let mut judgement = judgement;
    out.touched = std::mem::take(&mut judgement.touched);
    out.status_steps = std::mem::take(&mut judgement.status_steps);
    if judgement.is_clean() {
        return out;
    }
    out.compensation = compensate(doc, &judgement, role);
    out.forwarded = forward(doc, &judgement, out.compensation.is_some());
    // Repairs may move anything: the projection reads the document whole.
    out.touched.visits_reshaped = true;
    out.touched.fields.insert("visits".into());
    out
}

/// Judges every operation of `changes` (the changes a peer's message made
/// the document apply) against `role`.
pub fn judge(
    doc: &Automerge,
    cache: &mut FieldCache,
    changes: &[Change],
    role: Author,
) -> Judgement {
    let mut j = Judgement::default();
    let all = ops_of(doc, cache, changes);
    let index: HashMap<ObjId, usize> = all
        .iter()
        .enumerate()
        .map(|(i, o)| (o.id.clone(), i))
        .collect();
    let msg = Message {
        ops: &all,
        index: &index,
    };
    let forwards = read_forwards(doc);
    let mut forbidden_ids: BTreeSet<ObjId> = BTreeSet::new();
    for op in &all {
        let Some(field) = op.field.clone() else {
            continue; // an object the doc does not know: nothing visible
        };
        j.touched.fields.insert(field.clone());
        if field == "visits" && op.obj != ROOT {
            match (&op.item, op.insert, &op.action) {
                (Some(item), _, _) => {
                    j.touched.visits.insert(item.clone());
                }
                // On the list itself: only a new map item keeps its shape.
                (None, true, automerge::legacy::OpType::Make(ObjType::Map)) => {
                    j.touched.visits.insert(op.id.clone());
                }
                _ => j.touched.visits_reshaped = true,
            }
        } else if field == "visits" {
            j.touched.visits_reshaped = true; // the list itself was put or deleted
        }
        let allowed = allowed(
            doc,
            op,
            &field,
            role,
            &changes[op.change],
            &msg,
            &forbidden_ids,
        );
        if !allowed {
            forbidden_ids.insert(op.id.clone());
            j.forbidden.push(op.clone());
        } else if op.obj == ROOT && field == "status" {
            let value = match &op.action {
                automerge::legacy::OpType::Put(ScalarValue::Str(s)) => Some(s.to_string()),
                automerge::legacy::OpType::Make(ObjType::Text) => doc.text(&op.id).ok(),
                _ => None,
            };
            if let Some(v) = value {
                j.status_steps.push((v, changes[op.change].timestamp()));
            }
        }
        if !forwards.is_empty() && op.obj != ROOT {
            if let Some(src) = forwarded_ancestor(doc, &op.obj, &forwards) {
                j.forward_sources.insert(src);
            }
        }
    }
    j.all = all;
    j.index = index;
    j
}

/// The ops of one message, by id (later lookups are O(1)).
struct Message<'a> {
    ops: &'a [OpInfo],
    index: &'a HashMap<ObjId, usize>,
}

impl Message<'_> {
    fn get(&self, id: &ObjId) -> Option<&OpInfo> {
        self.index.get(id).map(|i| &self.ops[*i])
    }
}

/// How far a chain of one message's own ops is followed (a bound on the work
/// a crafted message can cause).
const LOOK_THROUGH: usize = 64;

fn allowed(
    doc: &Automerge,
    op: &OpInfo,
    field: &str,
    role: Author,
    change: &Change,
    msg: &Message<'_>,
    forbidden: &BTreeSet<ObjId>,
) -> bool {
    use automerge::legacy::OpType;
    let at_root = op.obj == ROOT;
    // No device replaces or deletes a protected container, whoever it is;
    // nor writes one "concurrently" (no preds) over one that exists.
    if at_root && PROTECTED.contains(&field) {
        let over_object = op.pred.iter().any(|p| doc.object_type(p).is_ok());
        if over_object || (op.pred.is_empty() && existed_before(doc, change, field, true)) {
            return false;
        }
    }
    match role.rule(field) {
        WriteRule::Allowed => true,
        WriteRule::Denied => false,
        WriteRule::Once => {
            if at_root {
                op.pred.is_empty() && !existed_before(doc, change, field, false)
            } else {
                // Only inside a signoff created by this same change.
                let top = doc.parents(&op.obj).ok().and_then(|p| {
                    let path = p.path();
                    path.get(1)
                        .map(|(o, _)| o.clone())
                        .or_else(|| Some(op.obj.clone()))
                });
                top.is_some_and(|t| created_in(change, &t))
            }
        }
        WriteRule::StatusMachine => {
            if !at_root {
                // Inside a status Text object (JS strings): part of the value
                // written by the op that made it, judged there.
                return doc
                    .parents(&op.obj)
                    .ok()
                    .and_then(|p| p.path().get(1).map(|(o, _)| o.clone()))
                    .or_else(|| Some(op.obj.clone()))
                    .is_some_and(|t| created_in(change, &t) && !forbidden.contains(&t));
            }
            let to = match &op.action {
                OpType::Put(ScalarValue::Str(s)) => s.parse::<Status>().ok(),
                OpType::Make(ObjType::Text) => {
                    doc.text(&op.id).ok().and_then(|s| s.parse::<Status>().ok())
                }
                _ => None, // deleting the status, or not a status
            };
            let Some(to) = to else { return false };
            match status_before(doc, op, change, msg, forbidden) {
                Some(from) => role.may_reach(from, to),
                None => false, // overwrites something it could not have seen
            }
        }
    }
}

/// Whether `obj` was created by an op of `change`.
fn created_in(change: &Change, obj: &ObjId) -> bool {
    match obj {
        ObjId::Id(counter, actor, _) => {
            actor == change.actor_id()
                && *counter >= change.start_op().get()
                && *counter < change.start_op().get() + change.len() as u64
        }
        ObjId::Root => false,
    }
}

/// Whether root `key` had a value (an object, if `object`) in the document
/// the change was made on.
fn existed_before(doc: &Automerge, change: &Change, key: &str, object: bool) -> bool {
    let deps = change.deps();
    if deps.is_empty() {
        return false;
    }
    doc.get_all_at(ROOT, key, deps)
        .map(|vals| {
            vals.iter()
                .any(|(v, _)| !object || matches!(v, Value::Object(_)))
        })
        .unwrap_or(false)
}

/// The status a status op was written over, as its author saw it: the
/// winner (by the concurrency rule) among its preds, each of which must have
/// been visible in the document the change was made on (or be an earlier op
/// of the same message; a rejected one is looked through to what it
/// overwrote). Some(None): the status did not exist. None: a pred the author
/// could not have seen — a forged starting point.
fn status_before(
    doc: &Automerge,
    op: &OpInfo,
    change: &Change,
    msg: &Message<'_>,
    forbidden: &BTreeSet<ObjId>,
) -> Option<Option<Status>> {
    let visible: Vec<(Value<'static>, ObjId)> = if change.deps().is_empty() {
        Vec::new()
    } else {
        doc.get_all_at(ROOT, "status", change.deps())
            .ok()?
            .into_iter()
            .map(|(v, id)| (v.into_owned(), id))
            .collect()
    };
    let mut values: Vec<Status> = Vec::new();
    let mut stack: Vec<(ObjId, usize)> = op.pred.iter().map(|p| (p.clone(), 0)).collect();
    let mut seen = BTreeSet::new();
    while let Some((p, depth)) = stack.pop() {
        if !seen.insert(p.clone()) {
            continue;
        }
        let value = if let Some(own) = msg.get(&p) {
            if forbidden.contains(&p) {
                if depth >= LOOK_THROUGH {
                    return None;
                }
                stack.extend(own.pred.iter().map(|q| (q.clone(), depth + 1)));
                continue;
            }
            op_text(doc, own)
        } else {
            let v = visible.iter().find(|(_, id)| *id == p)?;
            value_text(doc, v)
        };
        if let Some(s) = value.and_then(|s| s.parse().ok()) {
            values.push(s);
        }
    }
    if op.pred.is_empty() {
        return Some(None);
    }
    Some(status::resolve_concurrent(&values))
}

/// The string a put or a Text-making op wrote.
fn op_text(doc: &Automerge, op: &OpInfo) -> Option<String> {
    match &op.action {
        automerge::legacy::OpType::Put(ScalarValue::Str(s)) => Some(s.to_string()),
        automerge::legacy::OpType::Make(ObjType::Text) => doc.text(&op.id).ok(),
        _ => None,
    }
}

/// The value an op of this message wrote, as a document value.
fn op_value(op: &OpInfo) -> Option<(Value<'static>, ObjId)> {
    match &op.action {
        automerge::legacy::OpType::Put(v) => Some((
            Value::Scalar(std::borrow::Cow::Owned(v.clone())),
            op.id.clone(),
        )),
        automerge::legacy::OpType::Make(kind) => Some((Value::Object(*kind), op.id.clone())),
        _ => None,
    }
}

/// The value op `id` put at `obj[prop]` (visible or not): read at the heads of
/// the change that made it, where it is still visible.
fn value_of_op(
    doc: &Automerge,
    obj: &ObjId,
    prop: &Prop,
    id: &ObjId,
) -> Option<(Value<'static>, ObjId)> {
    let hash = doc.hash_for_opid(id)?;
    let values = match prop {
        Prop::Map(k) => doc.get_all_at(obj, k.as_str(), &[hash]).ok()?,
        Prop::Seq(i) => doc.get_all_at(obj, *i, &[hash]).ok()?,
    };
    values
        .into_iter()
        .find(|(_, vid)| vid == id)
        .map(|(v, vid)| (v.into_owned(), vid))
}

fn value_text<R: ReadDoc>(doc: &R, v: &(Value<'_>, ObjId)) -> Option<String> {
    match &v.0 {
        Value::Scalar(s) => s.as_str().map(str::to_string),
        Value::Object(ObjType::Text) => doc.text(&v.1).ok(),
        _ => None,
    }
}

/// Index of a list/text element by its id: where it is, or (deleted) the
/// gap it left.
fn cursor_index<R: ReadDoc>(doc: &R, obj: &ObjId, elem: &ObjId) -> Option<usize> {
    let ObjId::Id(ctr, actor, _) = elem else {
        return None;
    };
    let cursor = Cursor::try_from(format!("{ctr}@{actor}")).ok()?;
    doc.get_cursor_position(obj, &cursor, None).ok()
}

/// `cursor_index`, and whether the element is visible: the value at that
/// index is its own insert, or a later put on it.
fn element_position(doc: &Automerge, obj: &ObjId, elem: &ObjId) -> Option<(usize, bool)> {
    let pos = cursor_index(doc, obj, elem)?;
    if pos >= doc.length(obj) {
        return Some((pos, false));
    }
    let visible = doc
        .get_all(obj, pos)
        .unwrap_or_default()
        .iter()
        .any(|(_, id)| {
            id == elem || put_on(doc, id).is_some_and(|k| k == KeyRef::Seq(Some(elem.clone())))
        });
    Some((pos, visible))
}

/// The key a put (not an insert) wrote to, decoded from its change.
fn put_on(doc: &Automerge, id: &ObjId) -> Option<KeyRef> {
    let ObjId::Id(ctr, _, _) = id else {
        return None;
    };
    let change = doc.get_change_by_hash(&doc.hash_for_opid(id)?)?.decode();
    let op = change
        .operations
        .get(ctr.checked_sub(change.start_op.get())? as usize)?;
    (!op.insert).then(|| key_ref(&op.key))
}

/// What the server writes to undo one forbidden op (planned on the document
/// as the message left it, applied in one transaction).
enum Undo {
    /// Delete the element the op inserted, if still there.
    DeleteElement {
        obj: ObjId,
        elem: ObjId,
    },
    /// Re-insert what the op deleted, where it was.
    Reinsert {
        obj: ObjId,
        elem: ObjId,
        value: Restored,
    },
    Increment {
        obj: ObjId,
        key: KeyRef,
        by: i64,
    },
    /// Make `obj[key]` show `value` (None: no value).
    Restore {
        obj: ObjId,
        key: KeyRef,
        value: Option<Restored>,
        /// Forbidden replacements whose content is legal: forwarded too.
        also_forward: Vec<Replacement>,
    },
}

/// A forbidden replacement whose content is carried into the restored copy,
/// and what its author saw there when replacing (the three-way base: only
/// what they changed relative to it is carried, so `doc.notes = "…full
/// text…"` adds the new words, not the text a second time).
struct Replacement {
    id: ObjId,
    seen: Option<(ObjId, String)>,
}

enum Restored {
    Scalar(ScalarValue),
    /// A copy of this (now invisible) object, forwarded to the copy.
    Copy(ObjId, ObjType),
}

impl Restored {
    fn from_value(v: (Value<'static>, ObjId)) -> Self {
        match v.0 {
            Value::Scalar(s) => Restored::Scalar(s.into_owned()),
            Value::Object(kind) => Restored::Copy(v.1, kind),
        }
    }
}

/// Undoes every forbidden op in one server change (None: nothing to undo).
pub fn compensate(
    doc: &mut Automerge,
    j: &Judgement,
    role: Author,
) -> Option<(NewChange, Vec<Violation>)> {
    if j.forbidden.is_empty() {
        return None;
    }
    let forbidden: BTreeSet<ObjId> = j.forbidden.iter().map(|o| o.id.clone()).collect();
    // Inner edits first, so copies made for outer ones are already clean.
    let mut ordered: Vec<&OpInfo> = j.forbidden.iter().collect();
    ordered.sort_by_key(|o| o.obj == ROOT);
    let mut per_field: Vec<(String, Vec<serde_json::Value>)> = Vec::new();
    let mut planned_keys: BTreeSet<(ObjId, String)> = BTreeSet::new();
    let msg = Message {
        ops: &j.all,
        index: &j.index,
    };
    // Forbidden puts/deletes per written key (not inserts).
    let mut by_key: HashMap<(ObjId, String), Vec<&OpInfo>> = HashMap::new();
    for o in j.forbidden.iter().filter(|o| !o.insert) {
        by_key
            .entry((o.obj.clone(), key_text(&o.key)))
            .or_default()
            .push(o);
    }
    let mut plan = Vec::new();
    for op in ordered {
        let field = op.field.clone().unwrap_or_default();
        match per_field.iter_mut().find(|(f, _)| *f == field) {
            Some((_, ops)) => ops.push(describe(op)),
            None => per_field.push((field, vec![describe(op)])),
        }
        if let Some(u) = plan_undo(doc, op, &forbidden, &msg, &by_key, role, &mut planned_keys) {
            plan.push(u);
        }
    }
    let mut tx = doc.transaction();
    for u in plan {
        if let Err(e) = apply_undo(&mut tx, u) {
            tracing::error!(error = %e, "could not undo a forbidden operation");
        }
    }
    let (hash, _) = tx.commit();
    let hash = hash?;
    let change = doc.get_change_by_hash(&hash)?;
    let violations = per_field
        .into_iter()
        .map(|(path, ops)| {
            // A plain value written at the field reads as that value (what
            // the device tried to set); anything else as the list of ops.
            let plain = ops.len() == 1 && ops[0]["op"] == "put" && ops[0]["key"] == path.as_str();
            let attempted = if plain {
                ops[0]["value"].clone()
            } else {
                serde_json::Value::Array(ops.into_iter().take(20).collect())
            };
            Violation {
                restored: crate::sync::validation::field_json(doc, &path, None),
                path,
                attempted,
            }
        })
        .collect();
    Some((
        NewChange {
            hash,
            bytes: change.raw_bytes().to_vec(),
        },
        violations,
    ))
}

fn describe(op: &OpInfo) -> serde_json::Value {
    use automerge::legacy::OpType;
    let action = match &op.action {
        OpType::Make(t) => format!("make {t:?}").to_lowercase(),
        OpType::Delete => "delete".into(),
        OpType::Increment(n) => format!("increment {n}"),
        OpType::Put(v) => {
            return serde_json::json!({"op": if op.insert {"insert"} else {"put"},
                                      "key": key_text(&op.key),
                                      "value": crate::sync::validation::scalar_json(v)})
        }
        OpType::MarkBegin(_) | OpType::MarkEnd(_) => "mark".into(),
    };
    serde_json::json!({"op": action, "key": key_text(&op.key)})
}

fn key_text(k: &KeyRef) -> String {
    match k {
        KeyRef::Map(k) => k.clone(),
        KeyRef::Seq(Some(e)) => format!("after {e}"),
        KeyRef::Seq(None) => "at start".into(),
    }
}

fn plan_undo(
    doc: &Automerge,
    op: &OpInfo,
    forbidden: &BTreeSet<ObjId>,
    msg: &Message<'_>,
    by_key: &HashMap<(ObjId, String), Vec<&OpInfo>>,
    role: Author,
    planned_keys: &mut BTreeSet<(ObjId, String)>,
) -> Option<Undo> {
    use automerge::legacy::OpType;
    match (&op.key, op.insert, &op.action) {
        (KeyRef::Seq(_), true, _) => match element_position(doc, &op.obj, &op.id) {
            Some((_, true)) => Some(Undo::DeleteElement {
                obj: op.obj.clone(),
                elem: op.id.clone(),
            }),
            _ => None, // already gone
        },
        (KeyRef::Seq(Some(elem)), false, OpType::Delete) => {
            if !matches!(element_position(doc, &op.obj, elem), Some((_, false)))
                || !planned_keys.insert((op.obj.clone(), key_text(&op.key)))
            {
                return None; // visible again, or already planned
            }
            let prop = Prop::Seq(0); // the element's own index is found by cursor
            let value = legit_values(doc, &op.obj, &prop, Some(elem), &op.pred, forbidden, msg)
                .into_iter()
                .max_by(|a, b| a.1.cmp(&b.1))?;
            Some(Undo::Reinsert {
                obj: op.obj.clone(),
                elem: elem.clone(),
                value: Restored::from_value(value),
            })
        }
        (key, false, OpType::Increment(n)) => Some(Undo::Increment {
            obj: op.obj.clone(),
            key: key.clone(),
            by: -n,
        }),
        (_, false, OpType::MarkBegin(_) | OpType::MarkEnd(_)) => None, // formatting only
        (KeyRef::Map(_), true, _) => None,                             // not a valid op
        (key, false, _) => {
            let prop = match key {
                KeyRef::Map(k) => Prop::Map(k.clone()),
                // An element a forbidden op inserted is deleted anyway.
                KeyRef::Seq(Some(elem)) if forbidden.contains(elem) => return None,
                KeyRef::Seq(Some(elem)) => match element_position(doc, &op.obj, elem) {
                    Some((i, true)) => Prop::Seq(i),
                    _ => return None,
                },
                KeyRef::Seq(None) => return None,
            };
            if !planned_keys.insert((op.obj.clone(), key_text(key))) {
                return None; // one restore per key and message
            }
            let here = by_key
                .get(&(op.obj.clone(), key_text(key)))
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            plan_restore(doc, op, key, &prop, forbidden, msg, here, role)
        }
    }
}

/// The value a key must show again after forbidden puts/deletes at it.
#[allow(clippy::too_many_arguments)]
fn plan_restore(
    doc: &Automerge,
    op: &OpInfo,
    key: &KeyRef,
    prop: &Prop,
    forbidden: &BTreeSet<ObjId>,
    msg: &Message<'_>,
    forbidden_here: &[&OpInfo],
    role: Author,
) -> Option<Undo> {
    let visible: Vec<(Value<'static>, ObjId)> = match prop {
        Prop::Map(k) => doc.get_all(&op.obj, k.as_str()).ok()?,
        Prop::Seq(i) => doc.get_all(&op.obj, *i).ok()?,
    }
    .into_iter()
    .map(|(v, id)| (v.into_owned(), id))
    .collect();
    let shows_forbidden = visible.iter().any(|(_, id)| forbidden.contains(id));
    let lost_value = visible.is_empty() && forbidden_here.iter().any(|o| !o.pred.is_empty());
    if !shows_forbidden && !lost_value {
        return None; // already overwritten by something legitimate
    }
    let legit: Vec<(Value<'static>, ObjId)> = visible
        .iter()
        .filter(|(_, id)| !forbidden.contains(id))
        .cloned()
        .collect();
    // The legitimate conflict values if any, else what the forbidden ops
    // overwrote (looking through forbidden preds).
    let candidates = if !legit.is_empty() {
        legit
    } else {
        let elem = match key {
            KeyRef::Seq(Some(e)) => Some(e),
            _ => None,
        };
        let preds: Vec<ObjId> = forbidden_here.iter().flat_map(|o| o.pred.clone()).collect();
        let found = legit_values(doc, &op.obj, prop, elem, &preds, forbidden, msg);
        if found.is_empty() && !preds.is_empty() {
            // What was overwritten cannot be read back: never delete on a
            // guess (that could remove legitimate content).
            tracing::warn!(key = %key_text(key), "could not restore a value; left as is");
            return None;
        }
        found
    };
    let is_status = op.obj == ROOT && *prop == Prop::Map("status".into());
    let chosen = if is_status {
        let statuses: Vec<(Status, (Value<'static>, ObjId))> = candidates
            .into_iter()
            .filter_map(|v| {
                value_text(doc, &v)
                    .and_then(|s| s.parse().ok())
                    .map(|s| (s, v))
            })
            .collect();
        status::resolve_concurrent(&statuses.iter().map(|(s, _)| *s).collect::<Vec<_>>())
            .and_then(|w| statuses.into_iter().find(|(s, _)| *s == w).map(|(_, v)| v))
    } else {
        // Automerge's own rule among what is left: the greatest op id wins.
        candidates.into_iter().max_by(|a, b| a.1.cmp(&b.1))
    };
    // A forbidden replacement by someone who may write this field carries
    // legal content (a technician's app replacing `visits`): forward it too.
    let field = op.field.as_deref().unwrap_or_default();
    let also_forward = if role.rule(field) == WriteRule::Allowed {
        forbidden_here
            .iter()
            .filter(|o| matches!(o.action, automerge::legacy::OpType::Make(_)))
            .map(|o| Replacement {
                id: o.id.clone(),
                seen: seen_before(doc, &o.obj, key, &o.id),
            })
            .collect()
    } else {
        Vec::new()
    };
    Some(Undo::Restore {
        obj: op.obj.clone(),
        key: key.clone(),
        value: chosen.map(Restored::from_value),
        also_forward,
    })
}

/// The legitimate values behind `preds` (ops a forbidden op overwrote):
/// forbidden ones are looked through to what they overwrote (bounded), ops
/// of this message give their own value, older ones are read at the heads of
/// the change that made them (list elements by cursor, never by index).
fn legit_values(
    doc: &Automerge,
    obj: &ObjId,
    prop: &Prop,
    elem: Option<&ObjId>,
    preds: &[ObjId],
    forbidden: &BTreeSet<ObjId>,
    msg: &Message<'_>,
) -> Vec<(Value<'static>, ObjId)> {
    let mut out = Vec::new();
    let mut stack: Vec<(ObjId, usize)> = preds.iter().map(|p| (p.clone(), 0)).collect();
    let mut seen = BTreeSet::new();
    while let Some((p, depth)) = stack.pop() {
        if !seen.insert(p.clone()) || depth > LOOK_THROUGH {
            continue;
        }
        if let Some(own) = msg.get(&p) {
            if forbidden.contains(&p) {
                stack.extend(own.pred.iter().map(|q| (q.clone(), depth + 1)));
            } else if let Some(v) = op_value(own) {
                out.push(v);
            }
            continue;
        }
        let v = match (prop, elem) {
            (_, Some(e)) => value_at_element(doc, obj, e, &p),
            (Prop::Map(_), None) => value_of_op(doc, obj, prop, &p),
            (Prop::Seq(_), None) => None,
        };
        out.extend(v);
    }
    out
}

/// The value a deleted list/text element held (op `pred` wrote it).
fn value_at_element(
    doc: &Automerge,
    obj: &ObjId,
    elem: &ObjId,
    pred: &ObjId,
) -> Option<(Value<'static>, ObjId)> {
    let hash = doc.hash_for_opid(pred)?;
    let ObjId::Id(ctr, actor, _) = elem else {
        return None;
    };
    let cursor = Cursor::try_from(format!("{ctr}@{actor}")).ok()?;
    let index = doc.get_cursor_position(obj, &cursor, Some(&[hash])).ok()?;
    if doc.object_type(obj).ok()? == ObjType::Text {
        let ch = doc.text_at(obj, &[hash]).ok()?.chars().nth(index)?;
        return Some((
            Value::Scalar(std::borrow::Cow::Owned(ScalarValue::Str(
                ch.to_string().into(),
            ))),
            pred.clone(),
        ));
    }
    doc.get_all_at(obj, index, &[hash])
        .ok()?
        .into_iter()
        .find(|(_, id)| id == pred)
        .map(|(v, id)| (v.into_owned(), id))
}

/// Fills `new` with what `old` holds now and records the forward old → new.
fn copy_from(tx: &mut Transaction<'_>, old: &ObjId, new: &ObjId) -> Result<(), String> {
    let content = tx.hydrate(old, None).map_err(|e| e.to_string())?;
    fill(tx, new, &content)?;
    add_forward(tx, old, new, "new")
}

fn apply_undo(tx: &mut Transaction<'_>, u: Undo) -> Result<(), String> {
    let e = |e: automerge::AutomergeError| e.to_string();
    match u {
        Undo::DeleteElement { obj, elem } => {
            if let Some(index) = cursor_index(tx, &obj, &elem) {
                if index < tx.length(&obj) {
                    tx.delete(&obj, index).map_err(e)?;
                }
            }
        }
        Undo::Reinsert { obj, elem, value } => {
            let Some(index) = cursor_index(tx, &obj, &elem) else {
                return Ok(());
            };
            match value {
                Restored::Scalar(s) => {
                    if tx.object_type(&obj).map_err(e)? == ObjType::Text {
                        tx.splice_text(&obj, index, 0, s.as_str().unwrap_or_default())
                            .map_err(e)?;
                    } else {
                        tx.insert(&obj, index, s).map_err(e)?;
                    }
                }
                Restored::Copy(old, kind) => {
                    let new = tx.insert_object(&obj, index, kind).map_err(e)?;
                    copy_from(tx, &old, &new)?;
                }
            }
        }
        Undo::Increment { obj, key, by } => {
            let prop = resolve(tx, &obj, &key);
            if let Some(p) = prop {
                tx.increment(&obj, p, by).map_err(e)?;
            }
        }
        Undo::Restore {
            obj,
            key,
            value,
            also_forward,
        } => {
            let Some(prop) = resolve(tx, &obj, &key) else {
                return Ok(());
            };
            match value {
                None => match prop {
                    Prop::Map(k) => tx.delete(&obj, k.as_str()).map_err(e)?,
                    Prop::Seq(i) => tx.delete(&obj, i).map_err(e)?,
                },
                Some(Restored::Scalar(s)) => put_at(tx, &obj, &prop, s).map_err(e)?,
                Some(Restored::Copy(old, kind)) => {
                    let new = put_object_at(tx, &obj, &prop, kind).map_err(e)?;
                    copy_from(tx, &old, &new)?;
                    for r in also_forward {
                        match r.seen {
                            Some((seen, at)) => {
                                add_forward(tx, &r.id, &new, &at)?;
                                set_base(tx, &r.id, &seen)?;
                            }
                            None => add_forward(tx, &r.id, &new, "")?,
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// Where an undo writes (visibility was checked when it was planned).
fn resolve<R: ReadDoc>(doc: &R, obj: &ObjId, key: &KeyRef) -> Option<Prop> {
    match key {
        KeyRef::Map(k) => Some(Prop::Map(k.clone())),
        KeyRef::Seq(Some(elem)) => cursor_index(doc, obj, elem).map(Prop::Seq),
        KeyRef::Seq(None) => None,
    }
}

/// `_forwards[old] = {to: new, at}`; `at` is "" (nothing carried over yet:
/// the whole content is new) or "new" (a copy made now: the forward pass
/// stamps the heads after this change).
/// The object at `obj[key]` just before the change that made op `id`.
fn seen_before(doc: &Automerge, obj: &ObjId, key: &KeyRef, id: &ObjId) -> Option<(ObjId, String)> {
    let KeyRef::Map(k) = key else { return None };
    let hash = doc.hash_for_opid(id)?;
    let deps = doc.get_change_meta_by_hash(&hash)?.deps.clone();
    match doc.get_at(obj, k.as_str(), &deps).ok()?? {
        (Value::Object(_), old) => Some((old, heads_text(&deps))),
        _ => None,
    }
}

fn heads_text(heads: &[ChangeHash]) -> String {
    heads
        .iter()
        .map(|h| h.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn add_forward(tx: &mut Transaction<'_>, old: &ObjId, new: &ObjId, at: &str) -> Result<(), String> {
    let e = |e: automerge::AutomergeError| e.to_string();
    let map = match tx.get(ROOT, FORWARDS).map_err(e)? {
        Some((Value::Object(ObjType::Map), id)) => id,
        _ => tx.put_object(ROOT, FORWARDS, ObjType::Map).map_err(e)?,
    };
    let entry = tx
        .put_object(&map, old.to_string(), ObjType::Map)
        .map_err(e)?;
    tx.put(&entry, "to", new.to_string()).map_err(e)?;
    tx.put(&entry, "at", at).map_err(e)?;
    Ok(())
}

/// Records that `src`'s first carry-over compares against `base` (at the
/// entry's `at`) instead of `src` itself.
fn set_base(tx: &mut Transaction<'_>, src: &ObjId, base: &ObjId) -> Result<(), String> {
    let e = |e: automerge::AutomergeError| e.to_string();
    if let Some((Value::Object(_), map)) = tx.get(ROOT, FORWARDS).map_err(e)? {
        if let Some((Value::Object(_), entry)) = tx.get(&map, src.to_string()).map_err(e)? {
            tx.put(&entry, "base", base.to_string()).map_err(e)?;
        }
    }
    Ok(())
}

struct Forward {
    src: ObjId,
    to: ObjId,
    at: String,
    base: Option<ObjId>,
}

fn read_forwards(doc: &Automerge) -> HashMap<String, Forward> {
    let mut out = HashMap::new();
    let Ok(Some((Value::Object(ObjType::Map), map))) = doc.get(ROOT, FORWARDS) else {
        return out;
    };
    for key in doc.keys(&map) {
        let Ok(Some((Value::Object(ObjType::Map), entry))) = doc.get(&map, key.as_str()) else {
            continue;
        };
        let s = |k: &str| match doc.get(&entry, k) {
            Ok(Some((Value::Scalar(v), _))) => v.as_str().map(str::to_string),
            _ => None,
        };
        if let (Some(to), Some(at)) = (s("to"), s("at")) {
            if let (Ok(src), Ok(to)) = (doc.import_obj(&key), doc.import_obj(&to)) {
                let base = s("base").and_then(|b| doc.import_obj(&b).ok());
                out.insert(key.clone(), Forward { src, to, at, base });
            }
        }
    }
    out
}

/// The nearest object at or above `obj` that has a forward entry.
fn forwarded_ancestor<R: ReadDoc>(
    doc: &R,
    obj: &ObjId,
    forwards: &HashMap<String, Forward>,
) -> Option<String> {
    if forwards.contains_key(&obj.to_string()) {
        return Some(obj.to_string());
    }
    let parents = doc.parents(obj).ok()?;
    for p in parents {
        let k = p.obj.to_string();
        if forwards.contains_key(&k) {
            return Some(k);
        }
    }
    None
}

/// Carries edits that landed in restored objects into their replacements,
/// in one server change; also stamps new forward entries. None: nothing to do.
pub fn forward(doc: &mut Automerge, j: &Judgement, compensated: bool) -> Vec<NewChange> {
    if j.forward_sources.is_empty() && !compensated {
        return Vec::new();
    }
    let forwards = read_forwards(doc);
    if forwards.is_empty() {
        return Vec::new();
    }
    let mut queue: std::collections::VecDeque<String> = forwards
        .iter()
        .filter(|(src, f)| {
            f.at.is_empty() || f.at == "new" || f.base.is_some() || j.forward_sources.contains(*src)
        })
        .map(|(src, _)| src.clone())
        .collect();
    // What each source held when last carried over in this pass. Copies
    // just made start from their content now (read before the transaction:
    // inside it, reading at the current heads shows its pending edits).
    let mut carried: HashMap<String, hydrate::Value> = forwards
        .iter()
        .filter(|(_, f)| f.at == "new")
        .filter_map(|(src, f)| Some((src.clone(), ReadDoc::hydrate(&*doc, &f.src, None).ok()?)))
        .collect();
    let mut tx = doc.transaction();
    let mut rounds = 0;
    while let Some(src) = queue.pop_front() {
        rounds += 1;
        if rounds > 256 {
            tracing::error!("forwarding did not settle; stopping");
            break;
        }
        let Some(f) = forwards.get(&src) else {
            continue;
        };
        let Ok(theirs) = tx.hydrate(&f.src, None) else {
            continue;
        };
        let base = match carried.get(&src) {
            Some(v) => Some(v.clone()),
            None if f.at.is_empty() => None,
            None => {
                let at: Vec<ChangeHash> = f.at.split(',').filter_map(|h| h.parse().ok()).collect();
                tx.hydrate(f.base.as_ref().unwrap_or(&f.src), Some(&at))
                    .ok()
            }
        };
        if base.as_ref() != Some(&theirs) {
            let target = live_target(&forwards, &f.to);
            if let Err(e) = merge(&mut tx, base.as_ref(), &theirs, &target) {
                tracing::error!(error = %e, "could not carry edits into a restored object");
            }
            // The target may itself lie in a restored tree: carry on upwards.
            if let Some(up) = forwarded_ancestor(&tx, &target, &forwards) {
                if up != src {
                    queue.push_back(up);
                }
            }
        }
        carried.insert(src.clone(), theirs);
    }
    let mut out = Vec::new();
    let (merged, _) = tx.commit();
    out.extend(merged.and_then(|h| stored(doc, h)));
    // Stamp every source carried over with the heads after the merge, so the
    // next pass starts from exactly what was carried (and merged edits that
    // landed inside another source are not carried twice).
    let after: String = doc
        .get_heads()
        .iter()
        .map(|h| h.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let mut tx = doc.transaction();
    for src in carried.keys() {
        let _ = stamp(&mut tx, src, &after);
    }
    let (stamped, _) = tx.commit();
    out.extend(stamped.and_then(|h| stored(doc, h)));
    out
}

fn stored(doc: &Automerge, hash: ChangeHash) -> Option<NewChange> {
    let change = doc.get_change_by_hash(&hash)?;
    Some(NewChange {
        hash,
        bytes: change.raw_bytes().to_vec(),
    })
}

fn stamp(
    tx: &mut Transaction<'_>,
    src: &str,
    heads: &str,
) -> Result<(), automerge::AutomergeError> {
    if let Some((Value::Object(_), map)) = tx.get(ROOT, FORWARDS)? {
        if let Some((Value::Object(_), entry)) = tx.get(&map, src)? {
            tx.put(&entry, "at", heads)?;
            if tx.get(&entry, "base")?.is_some() {
                tx.delete(&entry, "base")?;
            }
        }
    }
    Ok(())
}

/// Follows forwards from `to` while the target itself was replaced since.
fn live_target(forwards: &HashMap<String, Forward>, to: &ObjId) -> ObjId {
    let mut t = to.clone();
    for _ in 0..16 {
        match forwards.get(&t.to_string()) {
            Some(f) => t = f.to.clone(),
            None => break,
        }
    }
    t
}

/// Three-way merge: applies what changed from `base` to `theirs` onto `target`.
fn merge(
    tx: &mut Transaction<'_>,
    base: Option<&hydrate::Value>,
    theirs: &hydrate::Value,
    target: &ObjId,
) -> Result<(), String> {
    let e = |e: automerge::AutomergeError| e.to_string();
    match theirs {
        hydrate::Value::Map(m) => {
            let base_map = match base {
                Some(hydrate::Value::Map(b)) => Some(b),
                _ => None,
            };
            for (k, item) in m.iter() {
                let before = base_map.and_then(|b| b.get(k));
                if before == Some(&item.value) {
                    continue;
                }
                merge_at(tx, target, Prop::Map(k.to_string()), before, &item.value)?;
            }
            if let Some(b) = base_map {
                for (k, _) in b.iter() {
                    if m.get(k).is_none() && tx.get(target, k.as_str()).map_err(e)?.is_some() {
                        tx.delete(target, k.as_str()).map_err(e)?;
                    }
                }
            }
            Ok(())
        }
        hydrate::Value::List(l) => {
            let base_items: Vec<&hydrate::Value> = match base {
                Some(hydrate::Value::List(b)) => b.iter().map(|i| &i.value).collect(),
                _ => Vec::new(),
            };
            let theirs_items: Vec<&hydrate::Value> = l.iter().map(|i| &i.value).collect();
            merge_list(tx, &base_items, &theirs_items, target)
        }
        hydrate::Value::Text(t) => {
            let base_text = match base {
                Some(hydrate::Value::Text(b)) => b.to_string(),
                _ => String::new(),
            };
            merge_text(tx, &base_text, &t.to_string(), target)
        }
        hydrate::Value::Scalar(_) => Ok(()),
    }
}

fn merge_at(
    tx: &mut Transaction<'_>,
    target: &ObjId,
    prop: Prop,
    before: Option<&hydrate::Value>,
    now: &hydrate::Value,
) -> Result<(), String> {
    let e = |e: automerge::AutomergeError| e.to_string();
    let existing = match &prop {
        Prop::Map(k) => tx.get(target, k.as_str()).map_err(e)?,
        Prop::Seq(i) => tx.get(target, *i).map_err(e)?,
    };
    let same_kind = matches!(
        (now, &existing),
        (
            hydrate::Value::Map(_),
            Some((Value::Object(ObjType::Map), _))
        ) | (
            hydrate::Value::List(_),
            Some((Value::Object(ObjType::List), _))
        ) | (
            hydrate::Value::Text(_),
            Some((Value::Object(ObjType::Text), _))
        )
    );
    if same_kind {
        let (_, id) = existing.expect("checked above");
        return merge(tx, before, now, &id);
    }
    put_value(tx, target, prop, now)
}

/// The object type a hydrated value needs (None: a scalar).
fn kind_of(v: &hydrate::Value) -> Option<ObjType> {
    match v {
        hydrate::Value::Scalar(_) => None,
        hydrate::Value::Map(_) => Some(ObjType::Map),
        hydrate::Value::List(_) => Some(ObjType::List),
        hydrate::Value::Text(_) => Some(ObjType::Text),
    }
}

fn put_value(
    tx: &mut Transaction<'_>,
    target: &ObjId,
    prop: Prop,
    v: &hydrate::Value,
) -> Result<(), String> {
    let e = |e: automerge::AutomergeError| e.to_string();
    match (kind_of(v), v) {
        (Some(kind), _) => {
            let new = put_object_at(tx, target, &prop, kind).map_err(e)?;
            fill(tx, &new, v)
        }
        (None, hydrate::Value::Scalar(s)) => put_at(tx, target, &prop, s.clone()).map_err(e),
        (None, _) => Ok(()),
    }
}

fn fill(tx: &mut Transaction<'_>, obj: &ObjId, v: &hydrate::Value) -> Result<(), String> {
    match v {
        hydrate::Value::Text(t) => tx
            .splice_text(obj, 0, 0, &t.to_string())
            .map_err(|e| e.to_string()),
        _ => tx.update_object(obj, v).map_err(|e| e.to_string()),
    }
}

fn item_id(v: &hydrate::Value) -> Option<String> {
    match v {
        hydrate::Value::Map(m) => match m.get("id") {
            Some(hydrate::Value::Scalar(ScalarValue::Str(s))) => Some(s.to_string()),
            Some(hydrate::Value::Text(t)) => Some(t.to_string()),
            _ => None,
        },
        _ => None,
    }
}

/// Lists: items with an `id` are matched by it (visits, parts); others by value.
fn merge_list(
    tx: &mut Transaction<'_>,
    base: &[&hydrate::Value],
    theirs: &[&hydrate::Value],
    target: &ObjId,
) -> Result<(), String> {
    let e = |e: automerge::AutomergeError| e.to_string();
    let target_items: Vec<hydrate::Value> = match tx.hydrate(target, None).map_err(e)? {
        v @ hydrate::Value::List(_) => list_items(v),
        _ => return Ok(()),
    };
    let by_id = theirs
        .iter()
        .chain(base.iter())
        .any(|v| item_id(v).is_some());
    if by_id {
        for item in theirs {
            let Some(id) = item_id(item) else { continue };
            let before = base
                .iter()
                .find(|b| item_id(b).as_deref() == Some(&id))
                .copied();
            if before == Some(*item) {
                continue;
            }
            match target_items
                .iter()
                .position(|t| item_id(t).as_deref() == Some(&id))
            {
                Some(i) => merge_at(tx, target, Prop::Seq(i), before, item)?,
                None => {
                    let end = tx.length(target);
                    insert_value(tx, target, end, item)?;
                }
            }
        }
        for b in base {
            let Some(id) = item_id(b) else { continue };
            if theirs.iter().any(|t| item_id(t).as_deref() == Some(&id)) {
                continue;
            }
            let now: Vec<hydrate::Value> = list_items(tx.hydrate(target, None).map_err(e)?);
            if let Some(i) = now.iter().position(|t| item_id(t).as_deref() == Some(&id)) {
                tx.delete(target, i).map_err(e)?;
            }
        }
        return Ok(());
    }
    // By value: what was added is appended, what was removed is removed once.
    let mut remaining: Vec<&hydrate::Value> = base.to_vec();
    for item in theirs {
        if let Some(i) = remaining.iter().position(|b| *b == *item) {
            remaining.remove(i);
        } else {
            let end = tx.length(target);
            insert_value(tx, target, end, item)?;
        }
    }
    for gone in remaining {
        let now: Vec<hydrate::Value> = list_items(tx.hydrate(target, None).map_err(e)?);
        if let Some(i) = now.iter().position(|t| t == gone) {
            tx.delete(target, i).map_err(e)?;
        }
    }
    Ok(())
}

fn insert_value(
    tx: &mut Transaction<'_>,
    target: &ObjId,
    index: usize,
    v: &hydrate::Value,
) -> Result<(), String> {
    let e = |e: automerge::AutomergeError| e.to_string();
    match (kind_of(v), v) {
        (Some(kind), _) => {
            let new = tx.insert_object(target, index, kind).map_err(e)?;
            fill(tx, &new, v)
        }
        (None, hydrate::Value::Scalar(s)) => tx.insert(target, index, s.clone()).map_err(e),
        (None, _) => Ok(()),
    }
}

fn put_at(
    tx: &mut Transaction<'_>,
    obj: &ObjId,
    prop: &Prop,
    v: ScalarValue,
) -> Result<(), automerge::AutomergeError> {
    match prop {
        Prop::Map(k) => tx.put(obj, k.as_str(), v),
        Prop::Seq(i) => tx.put(obj, *i, v),
    }
}

fn put_object_at(
    tx: &mut Transaction<'_>,
    obj: &ObjId,
    prop: &Prop,
    kind: ObjType,
) -> Result<ObjId, automerge::AutomergeError> {
    match prop {
        Prop::Map(k) => tx.put_object(obj, k.as_str(), kind),
        Prop::Seq(i) => tx.put_object(obj, *i, kind),
    }
}

/// A hydrated list's items (empty for anything else).
fn list_items(v: hydrate::Value) -> Vec<hydrate::Value> {
    match v {
        hydrate::Value::List(l) => l.iter().map(|i| i.value.clone()).collect(),
        _ => Vec::new(),
    }
}

/// Text: the one spliced region between `base` and `theirs`, re-applied in
/// `target` after the same preceding context (or at the same offset).
fn merge_text(
    tx: &mut Transaction<'_>,
    base: &str,
    theirs: &str,
    target: &ObjId,
) -> Result<(), String> {
    let e = |e: automerge::AutomergeError| e.to_string();
    let b: Vec<char> = base.chars().collect();
    let t: Vec<char> = theirs.chars().collect();
    let prefix = b.iter().zip(&t).take_while(|(x, y)| x == y).count();
    let max_suffix = b.len().min(t.len()) - prefix;
    let suffix = b
        .iter()
        .rev()
        .zip(t.iter().rev())
        .take(max_suffix)
        .take_while(|(x, y)| x == y)
        .count();
    let deleted: String = b[prefix..b.len() - suffix].iter().collect();
    let inserted: String = t[prefix..t.len() - suffix].iter().collect();
    if deleted.is_empty() && inserted.is_empty() {
        return Ok(());
    }
    let current: Vec<char> = tx.text(target).map_err(e)?.chars().collect();
    // The same edit can be aligned several ways when the text repeats
    // ("#12##13#" + "#14#"): try each alignment and place it after the same
    // preceding context, preferring the one whose following text matches.
    let mut slide = 0;
    while slide < prefix
        && slide < t.len() - suffix - prefix
        && b[prefix - 1 - slide] == t[t.len() - suffix - 1 - slide]
        && deleted.is_empty()
    {
        slide += 1;
    }
    // (score, context length, shift, pos): what follows matters most, then
    // how much preceding context was found; ties go to the plain diff.
    let mut best: Option<(usize, usize, usize, usize)> = None;
    for k in 0..=slide {
        let p = prefix - k;
        for want in [24usize, 16, 8, 4, 0] {
            let ctx = &b[p.saturating_sub(want)..p];
            let found = if ctx.is_empty() {
                Some(p.min(current.len()))
            } else {
                (ctx.len()..=current.len())
                    .rev()
                    .find(|&end| current[end - ctx.len()..end] == *ctx)
            };
            let Some(pos) = found else { continue };
            let rest = (b.len() - p).min(32);
            let matched = current[pos..]
                .iter()
                .zip(&b[p..])
                .take(32)
                .take_while(|(x, y)| x == y)
                .count();
            // All of what followed in the base follows here too: as good as
            // it gets.
            let score = if matched == rest { usize::MAX } else { matched };
            if best.is_none_or(|(s, c, _, _)| (score, ctx.len()) > (s, c)) {
                best = Some((score, ctx.len(), k, pos));
            }
            break; // the longest context found for this alignment
        }
    }
    let (shift, pos) = match best {
        Some((_, _, k, pos)) => (k, pos),
        None => (0, prefix.min(current.len())),
    };
    let inserted: String = if shift == 0 {
        inserted
    } else {
        t[prefix - shift..t.len() - suffix - shift].iter().collect()
    };
    let del_chars = deleted.chars().count();
    let here: String = current.iter().skip(pos).take(del_chars).collect();
    let del = if !deleted.is_empty() && here == deleted {
        del_chars as isize
    } else {
        0
    };
    tx.splice_text(target, pos, del, &inserted).map_err(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;

    /// `enforce` for what was applied since `before`.
    fn enforce_since(doc: &mut Automerge, before: &[ChangeHash], role: Role) -> Enforced {
        let applied = doc.get_changes(before);
        enforce(doc, &mut FieldCache::default(), &applied, role.into())
    }

    fn ticket() -> Automerge {
        let mut doc = Automerge::new();
        let mut tx = doc.transaction();
        tx.put(ROOT, "ticket_no", "T-1").unwrap();
        tx.put(ROOT, "status", "assigned").unwrap();
        let notes = tx.put_object(ROOT, "notes", ObjType::Text).unwrap();
        tx.splice_text(&notes, 0, 0, "Pump ok. ").unwrap();
        let visits = tx.put_object(ROOT, "visits", ObjType::List).unwrap();
        let v = tx.insert_object(&visits, 0, ObjType::Map).unwrap();
        tx.put(&v, "id", "v1").unwrap();
        tx.commit();
        doc
    }

    /// A device's edit, merged into the server and judged as `role`.
    fn apply(
        server: &mut Automerge,
        role: Role,
        edit: impl FnOnce(&mut Transaction<'_>),
    ) -> Enforced {
        let mut device = server.fork();
        let mut tx = device.transaction();
        edit(&mut tx);
        tx.commit();
        let before = server.get_heads();
        server.merge(&mut device).unwrap();
        enforce_since(server, &before, role)
    }

    fn notes(doc: &Automerge) -> String {
        let (_, id) = doc.get(ROOT, "notes").unwrap().unwrap();
        doc.text(&id).unwrap()
    }

    fn visit_ids(doc: &Automerge) -> Vec<String> {
        fieldsync_shared::ticket::read(doc)
            .unwrap()
            .visits
            .into_iter()
            .map(|v| v.id)
            .collect()
    }

    #[test]
    fn an_app_replacing_the_notes_with_more_text_adds_it_once() {
        let mut server = ticket();
        let e = apply(&mut server, Role::Technician, |tx| {
            let n = tx.put_object(ROOT, "notes", ObjType::Text).unwrap();
            tx.splice_text(&n, 0, 0, "Pump ok. Fuse replaced.").unwrap();
        });
        assert!(e.compensation.is_some(), "replacing a container is undone");
        assert_eq!(notes(&server), "Pump ok. Fuse replaced.");
    }

    #[test]
    fn an_app_replacing_visits_keeps_every_visit_once_and_later_edits_follow() {
        let mut server = ticket();
        // `doc.visits = [...doc.visits, {id: "v2"}]` on a technician's app.
        let mut device = server.fork();
        let mut tx = device.transaction();
        let old = tx
            .hydrate(&tx.get(ROOT, "visits").unwrap().unwrap().1, None)
            .unwrap();
        let list = tx.put_object(ROOT, "visits", ObjType::List).unwrap();
        tx.update_object(&list, &old).unwrap();
        let v = tx.insert_object(&list, 1, ObjType::Map).unwrap();
        tx.put(&v, "id", "v2").unwrap();
        tx.commit();
        // Meanwhile another device edits visit v1 in the original list.
        let mut other = server.fork();
        let mut tx = other.transaction();
        let (_, visits) = tx.get(ROOT, "visits").unwrap().unwrap();
        let (_, v1) = tx.get(&visits, 0).unwrap().unwrap();
        tx.put(&v1, "work_done", "replaced fuse").unwrap();
        tx.commit();

        let before = server.get_heads();
        server.merge(&mut device).unwrap();
        let e = enforce_since(&mut server, &before, Role::Technician);
        assert!(e.compensation.is_some());
        assert_eq!(visit_ids(&server), ["v1", "v2"]);

        // The other device's edit lands in the old list, long after: carried over.
        let before = server.get_heads();
        server.merge(&mut other).unwrap();
        let e = enforce_since(&mut server, &before, Role::Dispatcher);
        assert!(e.compensation.is_none());
        assert!(!e.forwarded.is_empty());
        let t = fieldsync_shared::ticket::read(&server).unwrap();
        assert_eq!(visit_ids(&server), ["v1", "v2"]);
        assert_eq!(t.visits[0].work_done, "replaced fuse");
    }

    #[test]
    fn a_forbidden_delete_of_a_visit_is_undone_and_later_edits_reach_the_copy() {
        let mut server = ticket();
        let mut tech = server.fork();
        let e = apply(&mut server, Role::BackOffice, |tx| {
            let (_, visits) = tx.get(ROOT, "visits").unwrap().unwrap();
            tx.delete(&visits, 0).unwrap();
        });
        assert!(e.compensation.is_some());
        assert_eq!(visit_ids(&server), ["v1"]);
        // The technician, offline all along, edits the visit it still sees.
        let mut tx = tech.transaction();
        let (_, visits) = tx.get(ROOT, "visits").unwrap().unwrap();
        let (_, v1) = tx.get(&visits, 0).unwrap().unwrap();
        tx.put(&v1, "result", "fixed").unwrap();
        tx.commit();
        let before = server.get_heads();
        server.merge(&mut tech).unwrap();
        enforce_since(&mut server, &before, Role::Technician);
        let t = fieldsync_shared::ticket::read(&server).unwrap();
        assert_eq!(t.visits.len(), 1);
        assert_eq!(t.visits[0].result, "fixed");
    }

    #[test]
    fn a_losing_forbidden_status_never_wins_the_settlement() {
        let mut server = ticket();
        // The technician's replica never saw the dispatcher's latest step.
        let mut tech = server.fork();
        let mut tx = server.transaction();
        tx.put(ROOT, "status", "en_route").unwrap();
        tx.commit();
        let mut tx = tech.transaction();
        tx.put(ROOT, "status", "reconciled").unwrap();
        tx.commit();
        let before = server.get_heads();
        server.merge(&mut tech).unwrap();
        let e = enforce_since(&mut server, &before, Role::Technician);
        let (_, violations) = e.compensation.expect("the forbidden value is undone");
        assert_eq!(violations[0].attempted, serde_json::json!("reconciled"));
        assert!(e.status_steps.is_empty(), "no accepted status step");
        let values = server.get_all(ROOT, "status").unwrap();
        assert_eq!(values.len(), 1);
        assert_eq!(values[0].0.to_string(), "\"en_route\"");
    }

    #[test]
    fn two_status_steps_in_one_change_are_judged_each_from_the_one_before() {
        let mut server = ticket(); // assigned
        let e = apply(&mut server, Role::Dispatcher, |tx| {
            tx.put(ROOT, "status", "cancelled").unwrap();
            tx.put(ROOT, "status", "reopened").unwrap();
        });
        assert!(
            e.compensation.is_none(),
            "both steps are the dispatcher's to make"
        );
        let (v, _) = server.get(ROOT, "status").unwrap().unwrap();
        assert_eq!(v.to_string(), "\"reopened\"");
        let steps: Vec<&str> = e.status_steps.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(steps, ["cancelled", "reopened"]);
    }

    #[test]
    fn a_forbidden_put_then_delete_of_a_visit_is_undone() {
        let mut server = ticket();
        let e = apply(&mut server, Role::BackOffice, |tx| {
            let (_, visits) = tx.get(ROOT, "visits").unwrap().unwrap();
            tx.put(&visits, 0, "gone").unwrap();
            tx.delete(&visits, 0).unwrap();
        });
        assert!(e.compensation.is_some());
        assert_eq!(visit_ids(&server), ["v1"]);
    }

    #[test]
    fn a_forbidden_put_on_a_shifted_list_element_restores_that_element() {
        let mut server = ticket();
        let mut tx = server.transaction();
        let list = tx.put_object(ROOT, "checklist", ObjType::List).unwrap();
        tx.insert(&list, 0, "a").unwrap();
        tx.insert(&list, 1, "b").unwrap();
        tx.commit();
        // A technician inserts at the front, then back office overwrites "b".
        apply(&mut server, Role::Technician, |tx| {
            let (_, list) = tx.get(ROOT, "checklist").unwrap().unwrap();
            tx.insert(&list, 0, "z").unwrap();
        });
        let e = apply(&mut server, Role::BackOffice, |tx| {
            let (_, list) = tx.get(ROOT, "checklist").unwrap().unwrap();
            tx.put(&list, 2, "x").unwrap();
        });
        let (_, list) = server.get(ROOT, "checklist").unwrap().unwrap();
        eprintln!("touched {:?}", e.touched);
        eprintln!(
            "items {:?}",
            (0..server.length(&list))
                .map(|i| server.get(&list, i).unwrap().unwrap().0.to_string())
                .collect::<Vec<_>>()
        );
        assert!(e.compensation.is_some());
        let items: Vec<String> = (0..server.length(&list))
            .map(|i| server.get(&list, i).unwrap().unwrap().0.to_string())
            .collect();
        assert_eq!(items, ["\"z\"", "\"a\"", "\"b\""]);
    }
}
