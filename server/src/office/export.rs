//! Export of reconciled jobs for billing/ERP (issue 11 §1), as CSV or JSON
//! lines, for a period of reconciliation times.
//!
//! **One line per billing line**: each job gives one `labour` line per
//! technician who visited (their visits' minutes; a job without visits gives
//! one labour line of 0 minutes for its assignee, so every job appears) and
//! one `part` line per part used (quantity, catalogue unit cost, line cost).
//! Job columns (ticket, customer, asset, reconciled_at) repeat on every
//! line; labour columns are empty on part lines and part columns on labour
//! lines, so summing a column never counts anything twice.
//!
//! **Repeatable**: every export is recorded (period, who, when, which jobs)
//! with its exact content and SHA-256, so `GET /reconciliation/exports/{id}`
//! gives the same bytes again, whatever happened to the catalogue or the
//! tickets since.

use std::collections::{BTreeMap, HashMap};

use diesel::prelude::*;
use serde::Serialize;

use super::checks::{self, CataloguePart};
use super::reconciliation::{self, priced};
use crate::db::schema::{reconciliation_exports as rx, status_events, tickets};
use crate::db::{on_conn, DbConn, DbError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    Jsonl,
}

impl Format {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "csv" => Some(Format::Csv),
            "jsonl" => Some(Format::Jsonl),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
        }
    }
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Jsonl => "application/x-ndjson",
        }
    }
}

/// One billing line. Field order is the CSV column order.
#[derive(Clone, Debug, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Line {
    pub ticket_no: String,
    pub doc_id: String,
    pub reconciled_at: String,
    /// `labour` or `part`.
    pub line: &'static str,
    pub technician: String,
    pub technician_id: String,
    pub customer_id: String,
    pub customer_name: String,
    pub asset_id: String,
    pub product: String,
    pub model: String,
    pub asset_serial: String,
    pub labour_minutes: Option<i64>,
    pub labour_hours: Option<String>,
    pub part_no: Option<String>,
    pub part_name: Option<String>,
    pub qty: Option<i64>,
    pub part_serial: Option<String>,
    pub source: Option<String>,
    pub unit_cost_cents: Option<i64>,
    pub line_cost_cents: Option<i64>,
}

pub const COLUMNS: &[&str] = &[
    "ticket_no",
    "doc_id",
    "reconciled_at",
    "line",
    "technician",
    "technician_id",
    "customer_id",
    "customer_name",
    "asset_id",
    "product",
    "model",
    "asset_serial",
    "labour_minutes",
    "labour_hours",
    "part_no",
    "part_name",
    "qty",
    "part_serial",
    "source",
    "unit_cost_cents",
    "line_cost_cents",
];

/// A job in an export.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Job {
    pub doc_id: String,
    pub ticket_no: String,
    pub reconciled_at: String,
}

/// One CSV field, quoted when it needs to be (RFC 4180). Fields that a
/// spreadsheet would run as a formula (`=`, `+`, `-`, `@` first) get a
/// leading apostrophe: device-written text ends up here.
pub fn csv_field(v: &str) -> String {
    let v = match v.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') if v.parse::<f64>().is_err() => {
            format!("'{v}")
        }
        _ => v.to_string(),
    };
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v
    }
}

pub fn render(format: Format, lines: &[Line]) -> String {
    let mut out = String::new();
    match format {
        Format::Csv => {
            out.push_str(&COLUMNS.join(","));
            out.push_str("\r\n");
            for l in lines {
                let json = serde_json::to_value(l).unwrap_or_default();
                let row: Vec<String> = COLUMNS
                    .iter()
                    .map(|c| match &json[c] {
                        serde_json::Value::Null => String::new(),
                        serde_json::Value::String(s) => csv_field(s),
                        other => other.to_string(),
                    })
                    .collect();
                out.push_str(&row.join(","));
                out.push_str("\r\n");
            }
        }
        Format::Jsonl => {
            for l in lines {
                out.push_str(&serde_json::to_string(l).unwrap_or_default());
                out.push('\n');
            }
        }
    }
    out
}

/// Normalises a period bound: a date `YYYY-MM-DD` is that day's start (or,
/// for the end of a period, the next day's start: `to` includes the whole
/// day), a time is taken as given; both as the history's RFC 3339 text
/// (UTC, milliseconds), so they compare with status-event times as text.
pub fn bound(value: &str, end: bool) -> Option<String> {
    let fmt =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(value) {
        return Some(fmt(t.with_timezone(&chrono::Utc)));
    }
    if value.len() != 10 {
        return None;
    }
    let d = chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d").ok()?;
    let d = if end { d.succ_opt()? } else { d };
    Some(fmt(d.and_hms_opt(0, 0, 0)?.and_utc()))
}

/// Reconciled jobs whose latest reconciliation is in [from, to), oldest first.
pub fn jobs_in(c: &mut DbConn, from: &str, to: &str) -> Result<Vec<Job>, DbError> {
    let events: Vec<(String, String)> = on_conn!(c, |c| status_events::table
        .filter(status_events::to_status.eq("reconciled"))
        .filter(status_events::at.ge(from))
        .select((status_events::doc_id, status_events::at))
        .load(c))?;
    let ids: Vec<&str> = events
        .iter()
        .map(|(d, _)| d.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    // Only tickets still reconciled (an admin may have reopened one); in
    // chunks, under the backends' limits on bound parameters.
    let mut still: HashMap<String, String> = HashMap::new();
    for chunk in ids.chunks(500) {
        let found: Vec<(String, String)> = on_conn!(c, |c| tickets::table
            .filter(tickets::doc_id.eq_any(chunk))
            .filter(tickets::status.eq("reconciled"))
            .select((tickets::doc_id, tickets::ticket_no))
            .load(c))?;
        still.extend(found);
    }
    let rows = events.iter().filter_map(|(doc_id, at)| {
        still
            .get(doc_id)
            .map(|no| (doc_id.clone(), no.clone(), at.clone()))
    });
    // The latest reconciliation of each ticket counts (a ticket reopened by
    // an admin and reconciled again belongs to its last period).
    let mut latest: BTreeMap<String, (String, String)> = BTreeMap::new();
    for (doc_id, no, at) in rows {
        let e = latest.entry(doc_id).or_insert((no, String::new()));
        if at > e.1 {
            e.1 = at;
        }
    }
    let mut jobs: Vec<Job> = latest
        .into_iter()
        .filter(|(_, (_, at))| at.as_str() < to)
        .map(|(doc_id, (ticket_no, reconciled_at))| Job {
            doc_id,
            ticket_no,
            reconciled_at,
        })
        .collect();
    jobs.sort_by(|a, b| {
        (&a.reconciled_at, &a.ticket_no, &a.doc_id).cmp(&(
            &b.reconciled_at,
            &b.ticket_no,
            &b.doc_id,
        ))
    });
    Ok(jobs)
}

/// The billing lines of one job (pure: rows in, lines out).
pub fn job_lines(
    job: &Job,
    facts: &reconciliation::TicketFacts,
    catalogue: &HashMap<String, CataloguePart>,
    usernames: &HashMap<String, String>,
) -> Vec<Line> {
    let t = &facts.ticket;
    let name = |id: &str| usernames.get(id).cloned().unwrap_or_default();
    let base = |line: &'static str, tech: &str| Line {
        ticket_no: job.ticket_no.clone(),
        doc_id: job.doc_id.clone(),
        reconciled_at: job.reconciled_at.clone(),
        line,
        technician: name(tech),
        technician_id: tech.to_string(),
        customer_id: t.customer_id.clone(),
        customer_name: t.customer_name.clone(),
        asset_id: t.asset_id.clone(),
        product: t.product.clone(),
        model: t.model.clone(),
        asset_serial: t.serial.clone(),
        labour_minutes: None,
        labour_hours: None,
        part_no: None,
        part_name: None,
        qty: None,
        part_serial: None,
        source: None,
        unit_cost_cents: None,
        line_cost_cents: None,
    };
    // Labour per technician, in order of their first visit.
    let mut order: Vec<String> = Vec::new();
    let mut minutes: HashMap<String, i64> = HashMap::new();
    for v in checks::labour(&facts.visits).visits {
        let tech = if v.technician_id.is_empty() {
            t.technician_id.clone()
        } else {
            v.technician_id
        };
        if !minutes.contains_key(&tech) {
            order.push(tech.clone());
        }
        *minutes.entry(tech).or_default() += v.minutes.unwrap_or(0);
    }
    if order.is_empty() {
        order.push(t.technician_id.clone());
    }
    let mut lines: Vec<Line> = order
        .iter()
        .map(|tech| {
            let m = minutes.get(tech).copied().unwrap_or(0);
            Line {
                labour_minutes: Some(m),
                labour_hours: Some(checks::hours(m)),
                ..base("labour", tech)
            }
        })
        .collect();
    for p in priced(&facts.parts, catalogue) {
        let tech = if p.technician_id.is_empty() {
            t.technician_id.clone()
        } else {
            p.technician_id.clone()
        };
        lines.push(Line {
            part_no: Some(p.part_no),
            part_name: Some(p.name),
            qty: Some(p.qty),
            part_serial: Some(p.serial),
            source: Some(p.source),
            unit_cost_cents: p.unit_cost_cents,
            line_cost_cents: p.line_cost_cents,
            ..base("part", &tech)
        });
    }
    lines
}

/// An export as recorded.
#[derive(Clone, Debug, Serialize, Queryable, Selectable, Insertable, utoipa::ToSchema)]
#[diesel(table_name = rx)]
pub struct ExportRow {
    pub id: String,
    pub period_from: String,
    pub period_to: String,
    pub format: String,
    pub created_by: String,
    pub created_at: String,
    pub job_count: i64,
    pub line_count: i64,
    /// JSON array of `Job`.
    #[serde(skip)]
    pub jobs: String,
    pub content_sha256: String,
    #[serde(skip)]
    pub content: String,
}

impl ExportRow {
    pub fn jobs(&self) -> Vec<Job> {
        serde_json::from_str(&self.jobs).unwrap_or_default()
    }
    /// Whether the stored content still has its recorded hash.
    pub fn intact(&self) -> bool {
        crate::blobs::sha256_hex(self.content.as_bytes()) == self.content_sha256
    }
}

/// Builds the export of [from, to) and records it (one transaction).
/// `from`/`to` are normalised bounds (`bound`).
pub fn create(
    c: &mut DbConn,
    from: &str,
    to: &str,
    format: Format,
    by_user: &str,
) -> Result<ExportRow, DbError> {
    crate::db::transaction(c, |c| {
        let jobs = jobs_in(c, from, to)?;
        let catalogue = reconciliation::catalogue(c)?;
        let names = reconciliation::usernames(c)?;
        let mut lines = Vec::new();
        for job in &jobs {
            if let Some(f) = reconciliation::load_facts(c, &job.doc_id, None)? {
                lines.extend(job_lines(job, &f, &catalogue, &names));
            }
        }
        let content = render(format, &lines);
        let row = ExportRow {
            id: uuid::Uuid::now_v7().to_string(),
            period_from: from.to_string(),
            period_to: to.to_string(),
            format: format.as_str().to_string(),
            created_by: by_user.to_string(),
            created_at: crate::db::now_rfc3339(),
            job_count: jobs.len() as i64,
            line_count: lines.len() as i64,
            jobs: serde_json::to_string(&jobs).unwrap_or_else(|_| "[]".into()),
            content_sha256: crate::blobs::sha256_hex(content.as_bytes()),
            content,
        };
        on_conn!(c, |c| diesel::insert_into(rx::table)
            .values(&row)
            .execute(c))?;
        Ok(row)
    })
}

pub fn get(c: &mut DbConn, id: &str) -> Result<Option<ExportRow>, DbError> {
    on_conn!(c, |c| rx::table
        .find(id)
        .select(ExportRow::as_select())
        .first(c)
        .optional()
        .map_err(DbError::from))
}

/// An export's columns but its content.
type ExportMeta = (
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    String,
    String,
);

/// Newest first (then by id, descending), without their content; at most
/// `limit` older than `before` = (created_at, id).
pub fn list(
    c: &mut DbConn,
    before: Option<(String, String)>,
    limit: i64,
) -> Result<Vec<ExportRow>, DbError> {
    let rows: Vec<ExportMeta> = on_conn!(c, |c| {
        let mut q = rx::table
            .order((rx::created_at.desc(), rx::id.desc()))
            .limit(limit)
            .select((
                rx::id,
                rx::period_from,
                rx::period_to,
                rx::format,
                rx::created_by,
                rx::created_at,
                rx::job_count,
                rx::line_count,
                rx::jobs,
                rx::content_sha256,
            ))
            .into_boxed();
        if let Some((at, id)) = &before {
            q = q.filter(
                rx::created_at
                    .lt(at.clone())
                    .or(rx::created_at.eq(at.clone()).and(rx::id.lt(id.clone()))),
            );
        }
        q.load(c)
    })?;
    Ok(rows
        .into_iter()
        .map(|r| ExportRow {
            id: r.0,
            period_from: r.1,
            period_to: r.2,
            format: r.3,
            created_by: r.4,
            created_at: r.5,
            job_count: r.6,
            line_count: r.7,
            jobs: r.8,
            content_sha256: r.9,
            content: String::new(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(kind: &'static str) -> Line {
        Line {
            ticket_no: "T-1".into(),
            doc_id: "d1".into(),
            reconciled_at: "2026-11-25T10:00:00.000Z".into(),
            line: kind,
            technician: "tom".into(),
            technician_id: "u1".into(),
            customer_id: "c1".into(),
            customer_name: "Acme, \"the\" bakery".into(),
            asset_id: "a1".into(),
            product: "Mixer".into(),
            model: "DM-40".into(),
            asset_serial: "SN-1".into(),
            labour_minutes: None,
            labour_hours: None,
            part_no: None,
            part_name: None,
            qty: None,
            part_serial: None,
            source: None,
            unit_cost_cents: None,
            line_cost_cents: None,
        }
    }

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(csv_field("-12"), "-12", "numbers stay numbers");
    }

    #[test]
    fn one_header_then_one_row_per_line_in_both_formats() {
        let labour = Line {
            labour_minutes: Some(95),
            labour_hours: Some("1.58".into()),
            ..line("labour")
        };
        let part = Line {
            part_no: Some("MTR-40".into()),
            part_name: Some("Motor".into()),
            qty: Some(1),
            part_serial: Some("M-1".into()),
            source: Some("van".into()),
            unit_cost_cents: Some(32000),
            line_cost_cents: Some(32000),
            ..line("part")
        };
        let csv = render(Format::Csv, &[labour.clone(), part.clone()]);
        let rows: Vec<&str> = csv.split("\r\n").collect();
        assert_eq!(rows.len(), 4, "{csv}"); // header, 2 lines, trailing empty
        assert_eq!(rows[0], COLUMNS.join(","));
        assert_eq!(
            rows[1],
            "T-1,d1,2026-11-25T10:00:00.000Z,labour,tom,u1,c1,\"Acme, \"\"the\"\" bakery\",a1,Mixer,DM-40,SN-1,95,1.58,,,,,,,"
        );
        assert!(
            rows[2].ends_with(",,,MTR-40,Motor,1,M-1,van,32000,32000"),
            "{}",
            rows[2]
        );
        let jsonl = render(Format::Jsonl, &[labour, part]);
        let parsed: Vec<serde_json::Value> = jsonl
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0]["labour_hours"], "1.58");
        assert_eq!(parsed[0]["part_no"], serde_json::Value::Null);
        assert_eq!(parsed[1]["line_cost_cents"], 32000);
        let keys: Vec<&String> = parsed[1].as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), COLUMNS.len());
        assert_eq!(render(Format::Jsonl, &[]), "");
    }

    #[test]
    fn period_bounds() {
        assert_eq!(
            bound("2026-11-01", false).unwrap(),
            "2026-11-01T00:00:00.000Z"
        );
        assert_eq!(
            bound("2026-11-30", true).unwrap(),
            "2026-12-01T00:00:00.000Z"
        );
        assert_eq!(
            bound("2026-11-30T12:00:00+01:00", true).unwrap(),
            "2026-11-30T11:00:00.000Z"
        );
        assert_eq!(bound("2026-02-30", false), None);
        assert_eq!(bound("soon", false), None);
    }
}
