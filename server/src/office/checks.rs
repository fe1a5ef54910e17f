//! The automatic checks of back-office reconciliation (issue 11 §1): pure
//! functions of a ticket's service-history rows, no I/O. Each check gives
//! `ok`, `warning` or `problem` with a plain message; a `problem` blocks the
//! approval unless the clerk overrides it with a note.
//!
//! | check | problem | warning |
//! |---|---|---|
//! | `parts_catalogue` | part number not in the catalogue; quantity < 1 or > `MAX_QTY_PER_LINE` | part inactive in the catalogue |
//! | `parts_serials` | catalogue says `serial_required`, line has none | the same serial twice for one part number |
//! | `van_stock` | — | a van part that moved no stock; a van level below zero; an unknown `source` |
//! | `labour` | no visit; a visit without check-in or check-out, or with check-out before check-in; a visit longer than `MAX_VISIT_MINUTES` | a visit longer than `LONG_VISIT_MINUTES` |
//! | `overlapping_visits` | two visits of one technician overlap (on this ticket or another) | — |
//! | `signoff` | none; its heads unknown; signed visits/parts modified after signing | no signer name; no signature image |
//! | `survey` | — | a score outside the scale (no survey yet is `ok`: it is collected later and does not block billing) |
//! | `attachments` | a referenced file (photo, signature) is not in blob storage | — |

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::projection::{MovementRow, PartRow, SignoffRow, TicketRow, VisitRow};

/// More than this many of one part on one line is not plausible for a
/// service job (the van-stock rule, `records::MAX_PART_QTY`, is far wider).
pub const MAX_QTY_PER_LINE: i64 = 100;
/// A visit longer than this is worth a second look.
pub const LONG_VISIT_MINUTES: i64 = 10 * 60;
/// A visit longer than this is a forgotten check-out, not labour.
pub const MAX_VISIT_MINUTES: i64 = 24 * 60;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Ok,
    Warning,
    Problem,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Check {
    pub name: &'static str,
    pub level: Level,
    pub message: String,
}

impl Check {
    /// `problem` if there are problems, else `warning` if warnings, else ok.
    fn from(name: &'static str, ok: String, problems: Vec<String>, warnings: Vec<String>) -> Self {
        let (level, message) = if !problems.is_empty() {
            let mut all = problems;
            all.extend(warnings);
            (Level::Problem, all.join("; "))
        } else if !warnings.is_empty() {
            (Level::Warning, warnings.join("; "))
        } else {
            (Level::Ok, ok)
        };
        Check {
            name,
            level,
            message,
        }
    }
}

/// What the catalogue says about a part number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CataloguePart {
    pub name: String,
    pub unit_cost_cents: i64,
    pub active: bool,
    pub serial_required: bool,
}

/// A file the ticket references, and whether blob storage has it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct BlobFact {
    pub sha256: String,
    /// `attachment` or `signature`.
    pub kind: &'static str,
    pub present: bool,
}

/// Everything the checks read about one ticket.
pub struct Facts<'a> {
    pub ticket: &'a TicketRow,
    pub visits: &'a [VisitRow],
    pub parts: &'a [PartRow],
    pub catalogue: &'a HashMap<String, CataloguePart>,
    /// The van-stock movements this ticket made (`projection`: id `doc/position`).
    pub movements: &'a [MovementRow],
    /// Current van levels of the technicians and parts on this ticket,
    /// by (technician id, part number).
    pub van_levels: &'a HashMap<(String, String), i64>,
    /// Visits of the same technicians on other tickets (for overlaps).
    pub other_visits: &'a [VisitRow],
    pub signoff: Option<&'a SignoffRow>,
    pub blobs: &'a [BlobFact],
}

/// Every check, in a fixed order.
pub fn run_all(f: &Facts<'_>) -> Vec<Check> {
    vec![
        parts_catalogue(f.parts, f.catalogue),
        parts_serials(f.parts, f.catalogue),
        van_stock(f.ticket, f.parts, f.catalogue, f.movements, f.van_levels),
        labour_check(f.visits),
        overlapping_visits(f.visits, f.other_visits),
        signoff(f.signoff),
        survey(f.ticket),
        attachments(f.blobs),
    ]
}

/// The worst level of `checks` (ok when there are none).
pub fn worst(checks: &[Check]) -> Level {
    checks.iter().map(|c| c.level).max().unwrap_or(Level::Ok)
}

fn line(p: &PartRow) -> String {
    let id = if p.part_entry_id.is_empty() {
        format!("#{}", p.position + 1)
    } else {
        format!("`{}`", p.part_entry_id)
    };
    format!("part line {id} ({} × {})", p.qty, p.part_no)
}

pub fn parts_catalogue(parts: &[PartRow], catalogue: &HashMap<String, CataloguePart>) -> Check {
    let (mut problems, mut warnings) = (Vec::new(), Vec::new());
    for p in parts {
        match catalogue.get(&p.part_no) {
            None => problems.push(format!(
                "{}: `{}` is not in the parts catalogue",
                line(p),
                p.part_no
            )),
            Some(c) if !c.active => warnings.push(format!(
                "{}: `{}` is inactive in the catalogue",
                line(p),
                p.part_no
            )),
            Some(_) => {}
        }
        if p.qty < 1 {
            problems.push(format!("{}: quantity {} is not positive", line(p), p.qty));
        } else if p.qty > MAX_QTY_PER_LINE {
            problems.push(format!(
                "{}: quantity {} is implausible (more than {MAX_QTY_PER_LINE})",
                line(p),
                p.qty
            ));
        }
    }
    let ok = match parts.len() {
        0 => "no parts used".to_string(),
        n => format!("{n} part line(s), all in the catalogue with plausible quantities"),
    };
    Check::from("parts_catalogue", ok, problems, warnings)
}

pub fn parts_serials(parts: &[PartRow], catalogue: &HashMap<String, CataloguePart>) -> Check {
    let (mut problems, mut warnings) = (Vec::new(), Vec::new());
    let mut seen: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for p in parts {
        let serial = p.serial.trim();
        let required = catalogue.get(&p.part_no).is_some_and(|c| c.serial_required);
        if required && serial.is_empty() {
            problems.push(format!(
                "{}: the catalogue requires a serial number and none was recorded",
                line(p)
            ));
        }
        if !serial.is_empty() {
            *seen.entry((p.part_no.as_str(), serial)).or_default() += 1;
        }
    }
    for ((part_no, serial), n) in seen {
        if n > 1 {
            warnings.push(format!(
                "serial `{serial}` of `{part_no}` is recorded on {n} lines"
            ));
        }
    }
    Check::from(
        "parts_serials",
        "serial numbers recorded where the catalogue requires them".into(),
        problems,
        warnings,
    )
}

pub fn van_stock(
    ticket: &TicketRow,
    parts: &[PartRow],
    catalogue: &HashMap<String, CataloguePart>,
    movements: &[MovementRow],
    van_levels: &HashMap<(String, String), i64>,
) -> Check {
    let mut warnings = Vec::new();
    let mut low: BTreeMap<(String, String), i64> = BTreeMap::new();
    for p in parts {
        match p.source.as_str() {
            "van" => {
                let id = format!("{}/{}", ticket.doc_id, p.position);
                let moved = movements
                    .iter()
                    .any(|m| m.id == id && m.qty_delta == -p.qty && m.part_no == p.part_no);
                if !moved {
                    // Unknown parts and bad quantities are `parts_catalogue`'s
                    // problems; here only what that check does not explain.
                    let explained = !catalogue.contains_key(&p.part_no)
                        || !crate::records::is_plausible_part_qty(p.qty);
                    if !explained {
                        warnings.push(format!(
                            "{}: from the van, but no van-stock movement was recorded (no technician known?)",
                            line(p)
                        ));
                    }
                } else if let Some(level) =
                    van_levels.get(&(p.technician_id.clone(), p.part_no.clone()))
                {
                    if *level < 0 {
                        low.insert((p.technician_id.clone(), p.part_no.clone()), *level);
                    }
                }
            }
            "warehouse" => {}
            other => warnings.push(format!(
                "{}: unknown source `{other}` (expected van or warehouse)",
                line(p)
            )),
        }
    }
    for ((tech, part_no), level) in low {
        warnings.push(format!(
            "van stock of `{part_no}` for technician {tech} is now {level}: more was fitted than the van held"
        ));
    }
    Check::from(
        "van_stock",
        "van parts match the van-stock movements".into(),
        Vec::new(),
        warnings,
    )
}

/// Labour of one visit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct VisitLabour {
    pub visit_id: String,
    pub technician_id: String,
    pub arrived_at: String,
    pub departed_at: String,
    /// Whole minutes between check-in and check-out (rounded to the nearest
    /// minute); None when either is missing or unreadable, or check-out is
    /// not after check-in.
    pub minutes: Option<i64>,
    pub hours: Option<String>,
}

/// A ticket's labour: per visit and in total (only visits with a valid
/// check-in and check-out count).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Labour {
    pub visits: Vec<VisitLabour>,
    pub total_minutes: i64,
    pub total_hours: String,
}

fn time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The visit's interval, when it has a valid one.
fn interval(v: &VisitRow) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let (a, d) = (time(&v.arrived_at)?, time(&v.departed_at)?);
    (d > a).then_some((a, d))
}

fn minutes_of(v: &VisitRow) -> Option<i64> {
    interval(v).map(|(a, d)| ((d - a).num_seconds() + 30) / 60)
}

/// Minutes as hours with two decimals, rounded half up (95 → "1.58").
pub fn hours(minutes: i64) -> String {
    let hundredths = (2 * minutes * 100 + 60) / 120;
    format!("{}.{:02}", hundredths / 100, hundredths % 100)
}

pub fn labour(visits: &[VisitRow]) -> Labour {
    let visits: Vec<VisitLabour> = visits
        .iter()
        .map(|v| {
            let minutes = minutes_of(v);
            VisitLabour {
                visit_id: v.visit_id.clone(),
                technician_id: v.technician_id.clone(),
                arrived_at: v.arrived_at.clone(),
                departed_at: v.departed_at.clone(),
                minutes,
                hours: minutes.map(hours),
            }
        })
        .collect();
    let total_minutes = visits.iter().filter_map(|v| v.minutes).sum();
    Labour {
        visits,
        total_minutes,
        total_hours: hours(total_minutes),
    }
}

fn visit_name(v: &VisitRow) -> String {
    if v.visit_id.is_empty() {
        format!("visit #{}", v.position + 1)
    } else {
        format!("visit `{}`", v.visit_id)
    }
}

pub fn labour_check(visits: &[VisitRow]) -> Check {
    let (mut problems, mut warnings) = (Vec::new(), Vec::new());
    if visits.is_empty() {
        problems.push("no visit was recorded: there is no labour to bill".to_string());
    }
    for v in visits {
        let name = visit_name(v);
        match (time(&v.arrived_at), time(&v.departed_at)) {
            (None, _) if v.arrived_at.trim().is_empty() => {
                problems.push(format!("{name} has no check-in time"))
            }
            (None, _) => {
                problems.push(format!("{name}: check-in `{}` is not a time", v.arrived_at))
            }
            (_, None) if v.departed_at.trim().is_empty() => {
                problems.push(format!("{name} has no check-out (departure) time"))
            }
            (_, None) => problems.push(format!(
                "{name}: check-out `{}` is not a time",
                v.departed_at
            )),
            (Some(a), Some(d)) if d <= a => problems.push(format!(
                "{name}: check-out {} is not after check-in {}",
                v.departed_at, v.arrived_at
            )),
            (Some(_), Some(_)) => {
                let m = minutes_of(v).unwrap_or(0);
                if m > MAX_VISIT_MINUTES {
                    problems.push(format!(
                        "{name} lasts {} h, more than {} h: a forgotten check-out?",
                        hours(m),
                        MAX_VISIT_MINUTES / 60
                    ));
                } else if m > LONG_VISIT_MINUTES {
                    warnings.push(format!(
                        "{name} lasts {} h, more than {} h",
                        hours(m),
                        LONG_VISIT_MINUTES / 60
                    ));
                }
            }
        }
    }
    let l = labour(visits);
    let ok = format!("{} visit(s), {} h of labour", visits.len(), l.total_hours);
    Check::from("labour", ok, problems, warnings)
}

pub fn overlapping_visits(visits: &[VisitRow], others: &[VisitRow]) -> Check {
    let mut problems = Vec::new();
    let overlaps = |x: &VisitRow, y: &VisitRow| match (interval(x), interval(y)) {
        (Some((a1, d1)), Some((a2, d2))) => {
            !x.technician_id.is_empty() && x.technician_id == y.technician_id && a1 < d2 && a2 < d1
        }
        _ => false,
    };
    for (i, x) in visits.iter().enumerate() {
        for y in &visits[i + 1..] {
            if overlaps(x, y) {
                problems.push(format!(
                    "{} and {} of technician {} overlap ({}–{} and {}–{})",
                    visit_name(x),
                    visit_name(y),
                    x.technician_id,
                    x.arrived_at,
                    x.departed_at,
                    y.arrived_at,
                    y.departed_at
                ));
            }
        }
        for y in others.iter().filter(|y| y.doc_id != x.doc_id) {
            if overlaps(x, y) {
                problems.push(format!(
                    "{} of technician {} ({}–{}) overlaps their {} on ticket {} ({}–{})",
                    visit_name(x),
                    x.technician_id,
                    x.arrived_at,
                    x.departed_at,
                    visit_name(y),
                    y.doc_id,
                    y.arrived_at,
                    y.departed_at
                ));
            }
        }
    }
    Check::from(
        "overlapping_visits",
        "no technician's visits overlap".into(),
        problems,
        Vec::new(),
    )
}

pub fn signoff(s: Option<&SignoffRow>) -> Check {
    let Some(s) = s else {
        return Check::from(
            "signoff",
            String::new(),
            vec!["the customer has not signed off".into()],
            Vec::new(),
        );
    };
    let (mut problems, mut warnings) = (Vec::new(), Vec::new());
    if !s.heads_valid {
        problems.push(
            "the signoff's document heads are not changes of this ticket: what was signed is unknown"
                .to_string(),
        );
    }
    if s.modified_after_signoff {
        problems.push("visits or parts were modified after the customer signed".to_string());
    }
    if s.signer_name.trim().is_empty() {
        warnings.push("the signoff has no signer name".to_string());
    }
    if s.signature_sha256.trim().is_empty() {
        warnings.push("the signoff has no signature image".to_string());
    }
    Check::from(
        "signoff",
        format!(
            "signed by {} at {}; the signed work is unchanged",
            s.signer_name, s.signed_at
        ),
        problems,
        warnings,
    )
}

pub fn survey(t: &TicketRow) -> Check {
    let Some(scale) = t.survey_scale else {
        return Check::from(
            "survey",
            "no survey answered yet".into(),
            Vec::new(),
            Vec::new(),
        );
    };
    let mut warnings = Vec::new();
    if scale != 5 && scale != 7 {
        warnings.push(format!("survey scale {scale} is neither 5 nor 7"));
    }
    let dims = [
        ("resolution efficiency", t.survey_efficiency),
        ("service attitude", t.survey_attitude),
        ("solution reasonableness", t.survey_reasonableness),
    ];
    let mut answered = Vec::new();
    for (name, v) in dims {
        match v {
            Some(v) if !(1..=scale).contains(&v) => {
                warnings.push(format!("{name} score {v} is outside 1–{scale}"))
            }
            Some(v) => answered.push(format!("{name} {v}/{scale}")),
            None => warnings.push(format!("{name} was not answered")),
        }
    }
    Check::from(
        "survey",
        format!("answered: {}", answered.join(", ")),
        Vec::new(),
        warnings,
    )
}

pub fn attachments(blobs: &[BlobFact]) -> Check {
    let problems: Vec<String> = blobs
        .iter()
        .filter(|b| !b.present)
        .map(|b| format!("{} {} is not in blob storage", b.kind, b.sha256))
        .collect();
    let ok = match blobs.len() {
        0 => "no attachments referenced".to_string(),
        n => format!("{n} referenced file(s), all in blob storage"),
    };
    Check::from("attachments", ok, problems, Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "doc-1";

    fn ticket() -> TicketRow {
        TicketRow {
            doc_id: DOC.into(),
            ticket_no: "T-1".into(),
            status: "signed_off".into(),
            priority: "A".into(),
            customer_id: String::new(),
            customer_name: "Acme".into(),
            customer_phone: String::new(),
            customer_address: String::new(),
            site: String::new(),
            asset_id: String::new(),
            product: "Mixer".into(),
            model: String::new(),
            serial: String::new(),
            fault_description: "grinds".into(),
            occurred_at: String::new(),
            reported_via: String::new(),
            technician_id: "tom".into(),
            appointment_start: String::new(),
            appointment_end: String::new(),
            created_at: String::new(),
            completed_at: String::new(),
            result: String::new(),
            visit_count: 1,
            survey_scale: None,
            survey_efficiency: None,
            survey_attitude: None,
            survey_reasonableness: None,
            feedback_comment: String::new(),
        }
    }

    fn visit(doc: &str, pos: i64, id: &str, tech: &str, a: &str, d: &str) -> VisitRow {
        VisitRow {
            doc_id: doc.into(),
            position: pos,
            visit_id: id.into(),
            technician_id: tech.into(),
            arrived_at: a.into(),
            departed_at: d.into(),
            work_done: String::new(),
            result: String::new(),
            fixed: Some(true),
        }
    }

    fn part(pos: i64, part_no: &str, qty: i64, serial: &str, source: &str) -> PartRow {
        PartRow {
            doc_id: DOC.into(),
            position: pos,
            part_entry_id: format!("p{}", pos + 1),
            part_no: part_no.into(),
            qty,
            serial: serial.into(),
            source: source.into(),
            visit_id: "v1".into(),
            technician_id: "tom".into(),
        }
    }

    fn moved(p: &PartRow) -> MovementRow {
        MovementRow {
            id: format!("{DOC}/{}", p.position),
            technician_id: p.technician_id.clone(),
            part_no: p.part_no.clone(),
            qty_delta: -p.qty,
            reason: String::new(),
            doc_id: Some(DOC.into()),
            at: String::new(),
        }
    }

    fn catalogue() -> HashMap<String, CataloguePart> {
        let mut c = HashMap::new();
        let mut add = |no: &str, cost, active, serial_required| {
            c.insert(
                no.to_string(),
                CataloguePart {
                    name: no.to_lowercase(),
                    unit_cost_cents: cost,
                    active,
                    serial_required,
                },
            );
        };
        add("MTR-40", 32000, true, true);
        add("BLT-1", 450, true, false);
        add("OLD-9", 100, false, false);
        c
    }

    fn signoff_row() -> SignoffRow {
        SignoffRow {
            doc_id: DOC.into(),
            signer_name: "Ann".into(),
            signed_at: "2026-11-24T10:45:00Z".into(),
            signature_sha256: "ab".repeat(32),
            doc_heads: "x".into(),
            heads_valid: true,
            signed_content_sha256: "h".into(),
            current_content_sha256: "h".into(),
            modified_after_signoff: false,
        }
    }

    #[test]
    fn hours_round_half_up_to_two_decimals() {
        assert_eq!(hours(0), "0.00");
        assert_eq!(hours(95), "1.58"); // 1.5833…
        assert_eq!(hours(90), "1.50");
        assert_eq!(hours(1), "0.02"); // 0.01666…
        assert_eq!(hours(125), "2.08"); // 2.0833…
        assert_eq!(hours(61), "1.02"); // 1.01666…
    }

    #[test]
    fn labour_per_visit_and_in_total() {
        let visits = [
            visit(
                DOC,
                0,
                "v1",
                "tom",
                "2026-11-24T09:05:00Z",
                "2026-11-24T10:40:00Z",
            ),
            visit(
                DOC,
                1,
                "v2",
                "tom",
                "2026-11-25T13:00:00+01:00",
                "2026-11-25T12:30:00Z",
            ),
            visit(DOC, 2, "v3", "tom", "2026-11-26T08:00:00Z", ""),
        ];
        let l = labour(&visits);
        let minutes: Vec<Option<i64>> = l.visits.iter().map(|v| v.minutes).collect();
        // v2: 12:00Z → 12:30Z (offsets are honoured); v3 has no check-out.
        assert_eq!(minutes, [Some(95), Some(30), None]);
        assert_eq!((l.total_minutes, l.total_hours.as_str()), (125, "2.08"));
        let c = labour_check(&visits);
        assert_eq!(c.level, Level::Problem);
        assert!(c.message.contains("`v3` has no check-out"), "{}", c.message);
    }

    #[test]
    fn labour_problems_and_warnings() {
        assert_eq!(labour_check(&[]).level, Level::Problem);
        let ok = [visit(
            DOC,
            0,
            "v1",
            "tom",
            "2026-11-24T09:00:00Z",
            "2026-11-24T10:00:00Z",
        )];
        let c = labour_check(&ok);
        assert_eq!(
            (c.level, c.message.as_str()),
            (Level::Ok, "1 visit(s), 1.00 h of labour")
        );
        let backwards = [visit(
            DOC,
            0,
            "v1",
            "tom",
            "2026-11-24T10:00:00Z",
            "2026-11-24T09:00:00Z",
        )];
        assert_eq!(labour_check(&backwards).level, Level::Problem);
        let long = [visit(
            DOC,
            0,
            "v1",
            "tom",
            "2026-11-24T07:00:00Z",
            "2026-11-24T18:00:00Z",
        )];
        let c = labour_check(&long);
        assert_eq!(c.level, Level::Warning, "{}", c.message);
        let forgot = [visit(
            DOC,
            0,
            "v1",
            "tom",
            "2026-11-24T07:00:00Z",
            "2026-11-26T18:00:00Z",
        )];
        assert_eq!(labour_check(&forgot).level, Level::Problem);
        let garbage = [visit(
            DOC,
            0,
            "v1",
            "tom",
            "yesterday",
            "2026-11-26T18:00:00Z",
        )];
        assert!(labour_check(&garbage).message.contains("not a time"));
        assert_eq!(labour(&garbage).total_minutes, 0);
    }

    #[test]
    fn overlapping_visits_of_one_technician_on_this_and_other_tickets() {
        let mine = [
            visit(
                DOC,
                0,
                "v1",
                "tom",
                "2026-11-24T09:00:00Z",
                "2026-11-24T10:00:00Z",
            ),
            visit(
                DOC,
                1,
                "v2",
                "tina",
                "2026-11-24T09:30:00Z",
                "2026-11-24T10:30:00Z",
            ),
        ];
        // Different technicians may overlap; touching ends do not overlap.
        let elsewhere = [visit(
            "doc-2",
            0,
            "x1",
            "tom",
            "2026-11-24T10:00:00Z",
            "2026-11-24T11:00:00Z",
        )];
        assert_eq!(overlapping_visits(&mine, &elsewhere).level, Level::Ok);
        let clash = [visit(
            "doc-2",
            0,
            "x1",
            "tom",
            "2026-11-24T09:59:00Z",
            "2026-11-24T11:00:00Z",
        )];
        let c = overlapping_visits(&mine, &clash);
        assert_eq!(c.level, Level::Problem);
        assert!(c.message.contains("ticket doc-2"), "{}", c.message);
        let twice = [
            visit(
                DOC,
                0,
                "v1",
                "tom",
                "2026-11-24T09:00:00Z",
                "2026-11-24T10:00:00Z",
            ),
            visit(
                DOC,
                1,
                "v2",
                "tom",
                "2026-11-24T09:30:00Z",
                "2026-11-24T09:45:00Z",
            ),
        ];
        let c = overlapping_visits(&twice, &[]);
        assert!(c.message.contains("`v1` and visit `v2`"), "{}", c.message);
    }

    #[test]
    fn parts_against_the_catalogue() {
        let cat = catalogue();
        let good = [
            part(0, "MTR-40", 1, "M-1", "van"),
            part(1, "BLT-1", 2, "", "warehouse"),
        ];
        assert_eq!(parts_catalogue(&good, &cat).level, Level::Ok);
        assert_eq!(parts_serials(&good, &cat).level, Level::Ok);
        let bad = [
            part(0, "NOPE", 1, "", "van"),
            part(1, "BLT-1", 0, "", "van"),
            part(2, "BLT-1", 101, "", "van"),
            part(3, "OLD-9", 1, "", "van"),
        ];
        let c = parts_catalogue(&bad, &cat);
        assert_eq!(c.level, Level::Problem);
        for needle in [
            "`NOPE` is not in the parts catalogue",
            "quantity 0 is not positive",
            "quantity 101 is implausible",
            "`OLD-9` is inactive",
        ] {
            assert!(c.message.contains(needle), "{needle}: {}", c.message);
        }
        let inactive_only = [part(0, "OLD-9", 1, "", "van")];
        assert_eq!(parts_catalogue(&inactive_only, &cat).level, Level::Warning);
    }

    #[test]
    fn serials_where_the_catalogue_requires_them() {
        let cat = catalogue();
        let missing = [part(0, "MTR-40", 1, " ", "van")];
        let c = parts_serials(&missing, &cat);
        assert_eq!(c.level, Level::Problem);
        assert!(c.message.contains("requires a serial"), "{}", c.message);
        let twice = [
            part(0, "MTR-40", 1, "M-1", "van"),
            part(1, "MTR-40", 1, "M-1", "van"),
        ];
        assert_eq!(parts_serials(&twice, &cat).level, Level::Warning);
    }

    #[test]
    fn van_parts_against_the_stock_movements() {
        let cat = catalogue();
        let t = ticket();
        let parts = [
            part(0, "MTR-40", 1, "M-1", "van"),
            part(1, "BLT-1", 2, "", "van"),
        ];
        let moves: Vec<MovementRow> = parts.iter().map(moved).collect();
        let mut levels = HashMap::new();
        levels.insert(("tom".to_string(), "MTR-40".to_string()), 1);
        assert_eq!(
            van_stock(&t, &parts, &cat, &moves, &levels).level,
            Level::Ok
        );
        // One line did not move stock; the van went below zero for another.
        levels.insert(("tom".to_string(), "MTR-40".to_string()), -1);
        let c = van_stock(&t, &parts, &cat, &moves[..1], &levels);
        assert_eq!(c.level, Level::Warning);
        assert!(c.message.contains("no van-stock movement"), "{}", c.message);
        assert!(c.message.contains("is now -1"), "{}", c.message);
        // An unknown part not moving stock is parts_catalogue's problem, not repeated here.
        let unknown = [part(0, "NOPE", 1, "", "van")];
        assert_eq!(van_stock(&t, &unknown, &cat, &[], &levels).level, Level::Ok);
        let odd = [part(0, "BLT-1", 1, "", "truck")];
        assert!(van_stock(&t, &odd, &cat, &[], &levels)
            .message
            .contains("unknown source"));
    }

    #[test]
    fn signoff_present_and_valid() {
        assert_eq!(signoff(None).level, Level::Problem);
        let s = signoff_row();
        assert_eq!(signoff(Some(&s)).level, Level::Ok);
        let modified = SignoffRow {
            modified_after_signoff: true,
            ..signoff_row()
        };
        assert!(signoff(Some(&modified)).message.contains("modified after"));
        let unknown_heads = SignoffRow {
            heads_valid: false,
            ..signoff_row()
        };
        assert_eq!(signoff(Some(&unknown_heads)).level, Level::Problem);
        let unsigned = SignoffRow {
            signature_sha256: String::new(),
            ..signoff_row()
        };
        assert_eq!(signoff(Some(&unsigned)).level, Level::Warning);
    }

    #[test]
    fn survey_state() {
        let t = ticket();
        assert_eq!(
            (survey(&t).level, survey(&t).message.as_str()),
            (Level::Ok, "no survey answered yet")
        );
        let answered = TicketRow {
            survey_scale: Some(5),
            survey_efficiency: Some(5),
            survey_attitude: Some(4),
            survey_reasonableness: Some(4),
            ..ticket()
        };
        assert_eq!(survey(&answered).level, Level::Ok);
        let odd = TicketRow {
            survey_reasonableness: Some(9),
            ..answered
        };
        assert_eq!(survey(&odd).level, Level::Warning);
    }

    #[test]
    fn attachments_present_in_blob_storage() {
        assert_eq!(attachments(&[]).level, Level::Ok);
        let present = BlobFact {
            sha256: "aa".repeat(32),
            kind: "attachment",
            present: true,
        };
        let missing = BlobFact {
            sha256: "bb".repeat(32),
            kind: "signature",
            present: false,
        };
        assert_eq!(attachments(std::slice::from_ref(&present)).level, Level::Ok);
        let c = attachments(&[present, missing]);
        assert_eq!(c.level, Level::Problem);
        assert!(c.message.starts_with("signature bbbb"), "{}", c.message);
    }

    #[test]
    fn run_all_gives_every_check_once_and_the_worst_level() {
        let (t, cat) = (ticket(), catalogue());
        let visits = [visit(
            DOC,
            0,
            "v1",
            "tom",
            "2026-11-24T09:05:00Z",
            "2026-11-24T10:40:00Z",
        )];
        let parts = [part(0, "MTR-40", 1, "M-1", "van")];
        let moves: Vec<MovementRow> = parts.iter().map(moved).collect();
        let s = signoff_row();
        let levels = HashMap::new();
        let facts = Facts {
            ticket: &t,
            visits: &visits,
            parts: &parts,
            catalogue: &cat,
            movements: &moves,
            van_levels: &levels,
            other_visits: &[],
            signoff: Some(&s),
            blobs: &[],
        };
        let checks = run_all(&facts);
        let names: Vec<&str> = checks.iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "parts_catalogue",
                "parts_serials",
                "van_stock",
                "labour",
                "overlapping_visits",
                "signoff",
                "survey",
                "attachments"
            ]
        );
        assert_eq!(worst(&checks), Level::Ok, "{checks:#?}");
        let facts = Facts {
            signoff: None,
            ..facts
        };
        assert_eq!(worst(&run_all(&facts)), Level::Problem);
    }
}
