//! Assembling a report from loaded facts: KPI lines against targets, per
//! technician, the problems, the overview and the trend.

use super::*;

/// One KPI's figure with its target.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct KpiLine {
    pub kpi: &'static str,
    pub name: &'static str,
    pub unit: Unit,
    pub numerator: i64,
    pub denominator: i64,
    /// In the unit (percent, minutes or cents), two decimals; null: n/a.
    pub value: Option<f64>,
    pub target: Option<f64>,
    /// `min` (at least) or `max` (at most).
    pub target_kind: &'static str,
    /// null when there is no value or no target.
    pub met: Option<bool>,
    /// "17 / 20 = 85.00 %", "n/a (0 / 0)".
    pub display: String,
}

pub(crate) fn format_value(unit: Unit, v: f64) -> String {
    match unit {
        Unit::Percent => format!("{v:.2} %"),
        Unit::Minutes => format!("{v:.2} min"),
        Unit::Cents => format!("{:.2}", v / 100.0),
    }
}

pub fn kpi_line(kpi: Kpi, f: Figure, policy: &Policy) -> KpiLine {
    let value = kpi.value(&f);
    let target = kpi.target(&policy.kpi);
    let unit = kpi.unit();
    let display = match value {
        Some(v) => format!(
            "{} / {} = {}",
            f.numerator,
            f.denominator,
            format_value(unit, v)
        ),
        None => format!("n/a ({} / {})", f.numerator, f.denominator),
    };
    KpiLine {
        kpi: kpi.key(),
        name: kpi.name(),
        unit,
        numerator: f.numerator,
        denominator: f.denominator,
        value,
        target,
        target_kind: if kpi.higher_is_better() { "min" } else { "max" },
        met: value.zip(target).map(|(v, t)| kpi.meets(v, t)),
        display,
    }
}

/// The KPIs of one scope over `period`.
pub fn kpi_lines(
    f: kpi::Facts<'_>,
    period: &Period,
    as_of: DateTime<Utc>,
    policy: &Policy,
) -> Vec<KpiLine> {
    Kpi::ALL
        .into_iter()
        .map(|k| {
            let fig = kpi::compute(k, f, period, as_of, &policy.closed_loop, &policy.kpi);
            kpi_line(k, fig, policy)
        })
        .collect()
}

/// A scope's facts, owned.
#[derive(Default)]
pub(crate) struct Scope {
    pub(crate) jobs: Vec<JobFacts>,
    pub(crate) callbacks: Vec<CallbackFacts>,
    pub(crate) complaints: Vec<ComplaintFacts>,
}

impl Scope {
    pub(crate) fn facts(&self) -> kpi::Facts<'_> {
        kpi::Facts {
            jobs: &self.jobs,
            callbacks: &self.callbacks,
            complaints: &self.complaints,
        }
    }
}

/// Per technician id (only those with something in the facts).
pub(crate) fn by_technician(l: &Loaded) -> BTreeMap<String, Scope> {
    let mut out: BTreeMap<String, Scope> = BTreeMap::new();
    for j in &l.jobs {
        if !j.facts.technician_id.is_empty() {
            out.entry(j.facts.technician_id.clone())
                .or_default()
                .jobs
                .push(j.facts.clone());
        }
    }
    for cb in &l.callbacks {
        if !cb.technician_id.is_empty() {
            out.entry(cb.technician_id.clone())
                .or_default()
                .callbacks
                .push(cb.clone());
        }
    }
    for cp in &l.complaints {
        if !cp.technician_id.is_empty() {
            out.entry(cp.technician_id.clone())
                .or_default()
                .complaints
                .push(cp.clone());
        }
    }
    out
}

#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PeriodInfo {
    pub kind: PeriodKind,
    pub label: String,
    /// UTC instants, `[start, end)`.
    pub start: String,
    pub end: String,
    pub utc_offset_minutes: i32,
    /// The period is over: its figures no longer move with time alone.
    #[serde(rename = "final")]
    pub is_final: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Overview {
    pub jobs_opened: i64,
    pub jobs_completed: i64,
    /// Opened in the period and cancelled.
    pub jobs_cancelled: i64,
    /// Visits of the jobs completed in the period.
    pub visits: i64,
    pub labour_minutes: i64,
    pub labour_cost_cents: i64,
    pub parts_cost_cents: i64,
    pub surveys: i64,
    pub callbacks_due: i64,
    pub complaints_received: i64,
    /// Opened in the period with a target met late or breached.
    pub tickets_breached: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TechnicianKpis {
    pub technician_id: String,
    pub username: String,
    pub kpis: Vec<KpiLine>,
}

#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Count {
    pub key: String,
    pub count: i64,
    /// The first 20 ticket numbers (`count` has them all).
    pub tickets: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct BreachedTicket {
    pub ticket_no: String,
    pub doc_id: String,
    pub priority: String,
    pub technician: String,
    pub respond: String,
    pub resolve: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Problems {
    /// Fault descriptions of the jobs opened in the period (lower-cased,
    /// spaces collapsed), most frequent first; at most 10.
    pub top_faults: Vec<Count>,
    /// Assets with two or more jobs opened in the period.
    pub repeat_assets: Vec<Count>,
    /// Product models (`product / model`) with two or more jobs opened.
    pub repeat_models: Vec<Count>,
    /// Jobs opened in the period with a target met late or breached (the
    /// first 200 by ticket number) …
    pub breached: Vec<BreachedTicket>,
    /// … and how many there are.
    pub breached_total: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TrendPoint {
    pub period: String,
    pub numerator: i64,
    pub denominator: i64,
    pub value: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Trend {
    pub kpi: &'static str,
    pub name: &'static str,
    pub unit: Unit,
    /// Oldest first; the last is the report's own period.
    pub points: Vec<TrendPoint>,
}

#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Report {
    pub period: PeriodInfo,
    pub overview: Overview,
    /// The company's KPIs against the targets.
    pub kpis: Vec<KpiLine>,
    /// Teams are not modelled: the company and each technician (the job's
    /// assignee), by username.
    pub technicians: Vec<TechnicianKpis>,
    pub problems: Problems,
    pub trends: Vec<Trend>,
}

pub(crate) fn normalise(s: &str) -> String {
    let s = s
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    if s.is_empty() {
        "(no description)".into()
    } else {
        s.chars().take(80).collect()
    }
}

/// Ticket numbers listed per problem (its `count` is the whole number), and
/// breached tickets listed (`breached_total` counts them all): a year's
/// report stays readable and bounded.
pub(crate) const MAX_LISTED: usize = 20;
pub(crate) const MAX_BREACHED_LISTED: usize = 200;

pub(crate) fn counts(
    items: impl Iterator<Item = (String, String)>,
    min: i64,
    top: usize,
) -> Vec<Count> {
    let mut map: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (key, ticket) in items {
        map.entry(key).or_default().insert(ticket);
    }
    let mut out: Vec<Count> = map
        .into_iter()
        .map(|(key, tickets)| Count {
            key,
            count: tickets.len() as i64,
            tickets: tickets.into_iter().take(MAX_LISTED).collect(),
        })
        .filter(|c| c.count >= min)
        .collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
    out.truncate(top);
    out
}

pub(crate) fn problems(l: &Loaded, p: &Period, names: &dyn Fn(&str) -> String) -> Problems {
    let opened: Vec<&LoadedJob> = l
        .jobs
        .iter()
        .filter(|j| !j.facts.cancelled && p.contains(j.facts.created_at))
        .collect();
    let top_faults = counts(
        opened
            .iter()
            .map(|j| (normalise(&j.fault), j.facts.ticket_no.clone())),
        1,
        10,
    );
    let repeat_assets = counts(
        opened.iter().filter(|j| !j.asset.is_empty()).map(|j| {
            let name = format!("{} {} ({})", j.product, j.model, j.serial);
            (
                format!("{} {}", j.asset, name.trim()),
                j.facts.ticket_no.clone(),
            )
        }),
        2,
        50,
    );
    let repeat_models = counts(
        opened
            .iter()
            .filter(|j| !(j.product.is_empty() && j.model.is_empty()))
            .map(|j| {
                (
                    format!("{} / {}", j.product, j.model),
                    j.facts.ticket_no.clone(),
                )
            }),
        2,
        50,
    );
    let late = |s: &str| matches!(s, "met_late" | "breached");
    let mut breached: Vec<BreachedTicket> = opened
        .iter()
        .filter(|j| late(&j.respond_state) || late(&j.resolve_state))
        .map(|j| BreachedTicket {
            ticket_no: j.facts.ticket_no.clone(),
            doc_id: j.facts.doc_id.clone(),
            priority: j.facts.priority.clone(),
            technician: names(&j.facts.technician_id),
            respond: j.respond_state.clone(),
            resolve: j.resolve_state.clone(),
        })
        .collect();
    breached.sort_by(|a, b| (&a.ticket_no, &a.doc_id).cmp(&(&b.ticket_no, &b.doc_id)));
    let breached_total = breached.len() as i64;
    breached.truncate(MAX_BREACHED_LISTED);
    Problems {
        top_faults,
        repeat_assets,
        repeat_models,
        breached,
        breached_total,
    }
}

pub(crate) fn overview(l: &Loaded, p: &Period, policy: &Policy, tickets_breached: i64) -> Overview {
    let mut o = Overview {
        tickets_breached,
        ..Overview::default()
    };
    for j in &l.jobs {
        let f = &j.facts;
        if p.contains(f.created_at) {
            if f.cancelled {
                o.jobs_cancelled += 1;
            } else {
                o.jobs_opened += 1;
            }
        }
        if !f.cancelled && p.has(f.completed_at) {
            o.jobs_completed += 1;
            o.visits += f.visits.len() as i64;
            o.labour_minutes += f.labour_minutes;
            o.labour_cost_cents +=
                kpi::labour_cost_cents(f.labour_minutes, policy.kpi.labour_cents_per_hour);
            o.parts_cost_cents += f.parts_cost_cents;
            o.surveys += i64::from(f.survey.is_some());
        }
    }
    o.callbacks_due = l.callbacks.iter().filter(|c| p.contains(c.due_at)).count() as i64;
    o.complaints_received = l
        .complaints
        .iter()
        .filter(|c| p.contains(c.received_at))
        .count() as i64;
    o
}

/// Assembles the report of `period` from facts loaded over it and the
/// `TREND_PERIODS` before it. Pure.
pub fn assemble(
    loaded: &Loaded,
    period: &ReportPeriod,
    policy: &Policy,
    now: DateTime<Utc>,
    progress: &mut dyn FnMut(super::BuildStep<'_>),
) -> Result<Report, String> {
    let offset = utc_offset_minutes(policy);
    let utc = period
        .utc(offset)
        .ok_or("the period is out of range for the company's offset")?;
    let as_of = now.min(utc.end);
    let names = |id: &str| -> String {
        if id.is_empty() {
            return String::new();
        }
        loaded
            .usernames
            .get(id)
            .cloned()
            .unwrap_or_else(|| id.to_string())
    };
    let company = Scope {
        jobs: loaded.jobs.iter().map(|j| j.facts.clone()).collect(),
        callbacks: loaded.callbacks.clone(),
        complaints: loaded.complaints.clone(),
    };
    let kpis = kpi_lines(company.facts(), &utc, as_of, policy);
    let mut technicians: Vec<TechnicianKpis> = by_technician(loaded)
        .into_iter()
        .map(|(id, scope)| TechnicianKpis {
            username: names(&id),
            kpis: kpi_lines(scope.facts(), &utc, as_of, policy),
            technician_id: id,
        })
        // Technicians with nothing in this period (only in the trend's).
        .filter(|t| t.kpis.iter().any(|k| k.denominator > 0 || k.numerator > 0))
        .collect();
    technicians
        .sort_by(|a, b| (&a.username, &a.technician_id).cmp(&(&b.username, &b.technician_id)));
    let problems = problems(loaded, &utc, &names);
    let overview = overview(loaded, &utc, policy, problems.breached_total);

    // The trend: the previous periods, oldest first, then this one.
    let mut periods = vec![period.clone()];
    for _ in 0..TREND_PERIODS {
        let prev = periods
            .last()
            .and_then(ReportPeriod::previous)
            .ok_or("the trend reaches before the calendar")?;
        periods.push(prev);
    }
    periods.reverse();
    let mut columns = Vec::new();
    for (i, rp) in periods.iter().enumerate() {
        let u = rp.utc(offset).ok_or("a trend period is out of range")?;
        columns.push((
            rp.label(),
            kpi_lines(company.facts(), &u, now.min(u.end), policy),
        ));
        progress(super::BuildStep::Note(&format!(
            "  period {} computed ({}/{})",
            rp.label(),
            i + 1,
            periods.len()
        )));
    }
    let trends = Kpi::ALL
        .into_iter()
        .enumerate()
        .map(|(i, k)| Trend {
            kpi: k.key(),
            name: k.name(),
            unit: k.unit(),
            points: columns
                .iter()
                .map(|(label, lines)| TrendPoint {
                    period: label.clone(),
                    numerator: lines[i].numerator,
                    denominator: lines[i].denominator,
                    value: lines[i].value,
                })
                .collect(),
        })
        .collect();
    Ok(Report {
        period: PeriodInfo {
            kind: period.kind,
            label: period.label(),
            start: fmt_time(utc.start),
            end: fmt_time(utc.end),
            utc_offset_minutes: offset,
            is_final: now >= utc.end,
        },
        overview,
        kpis,
        technicians,
        problems,
        trends,
    })
}
