//! Rendering a report: JSON, and CSV as one table.

use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
    Svg,
}

impl Format {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "json" => Some(Self::Json),
            "csv" => Some(Self::Csv),
            "svg" => Some(Self::Svg),
            _ => None,
        }
    }
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::Csv => "text/csv; charset=utf-8",
            Self::Svg => "image/svg+xml",
        }
    }
}

pub fn render(r: &Report, format: Format) -> Result<String, String> {
    match format {
        Format::Json => serde_json::to_string_pretty(r)
            .map(|s| s + "\n")
            .map_err(|e| e.to_string()),
        Format::Csv => Ok(render_csv(r)),
        Format::Svg => render_svg(r),
    }
}

/// The CSV's columns: one table for every section.
pub const CSV_COLUMNS: &[&str] = &[
    "section",
    "scope",
    "period",
    "key",
    "name",
    "numerator",
    "denominator",
    "value",
    "unit",
    "target",
    "target_kind",
    "met",
    "detail",
];

pub(crate) fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

pub(crate) fn unit_str(u: Unit) -> &'static str {
    match u {
        Unit::Percent => "percent",
        Unit::Minutes => "minutes",
        Unit::Cents => "cents",
    }
}

/// CSV (RFC 4180, a header row): the overview (`overview`, value only), the
/// KPIs (`kpi`, scope `company` or `technician:<username>`), the trend
/// (`trend`, one row per period and KPI) and the problems (`top_fault`,
/// `repeat_asset`, `repeat_model`: count in `value`, tickets in `detail`;
/// `breached`: the ticket in `key`, its states in `detail`).
pub fn render_csv(r: &Report) -> String {
    let mut out = CSV_COLUMNS.join(",");
    out.push_str("\r\n");
    let mut row = |cells: [String; 13]| {
        let line: Vec<String> = cells.iter().map(|c| csv_field(c)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    };
    let label = r.period.label.clone();
    let o = &r.overview;
    for (key, v) in [
        ("jobs_opened", o.jobs_opened),
        ("jobs_completed", o.jobs_completed),
        ("jobs_cancelled", o.jobs_cancelled),
        ("visits", o.visits),
        ("labour_minutes", o.labour_minutes),
        ("labour_cost_cents", o.labour_cost_cents),
        ("parts_cost_cents", o.parts_cost_cents),
        ("surveys", o.surveys),
        ("callbacks_due", o.callbacks_due),
        ("complaints_received", o.complaints_received),
        ("tickets_breached", o.tickets_breached),
    ] {
        row([
            "overview".into(),
            "company".into(),
            label.clone(),
            key.into(),
            String::new(),
            String::new(),
            String::new(),
            v.to_string(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        ]);
    }
    let scopes = std::iter::once(("company".to_string(), &r.kpis)).chain(
        r.technicians
            .iter()
            .map(|t| (format!("technician:{}", t.username), &t.kpis)),
    );
    for (scope, lines) in scopes {
        for k in lines {
            row([
                "kpi".into(),
                scope.clone(),
                label.clone(),
                k.kpi.into(),
                k.name.into(),
                k.numerator.to_string(),
                k.denominator.to_string(),
                opt(k.value),
                unit_str(k.unit).into(),
                opt(k.target),
                k.target_kind.into(),
                opt(k.met),
                k.display.clone(),
            ]);
        }
    }
    for t in &r.trends {
        for p in &t.points {
            row([
                "trend".into(),
                "company".into(),
                p.period.clone(),
                t.kpi.into(),
                t.name.into(),
                p.numerator.to_string(),
                p.denominator.to_string(),
                opt(p.value),
                unit_str(t.unit).into(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ]);
        }
    }
    let pr = &r.problems;
    for (section, list) in [
        ("top_fault", &pr.top_faults),
        ("repeat_asset", &pr.repeat_assets),
        ("repeat_model", &pr.repeat_models),
    ] {
        for c in list {
            row([
                section.into(),
                "company".into(),
                label.clone(),
                c.key.clone(),
                String::new(),
                String::new(),
                String::new(),
                c.count.to_string(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                c.tickets.join(" "),
            ]);
        }
    }
    for b in &pr.breached {
        row([
            "breached".into(),
            "company".into(),
            label.clone(),
            b.ticket_no.clone(),
            b.priority.clone(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            format!(
                "respond={} resolve={} technician={}",
                b.respond, b.resolve, b.technician
            ),
        ]);
    }
    out
}
