//! Loading a range's facts from the service history: set-based queries in
//! chunks, bounded by `MAX_REPORT_TICKETS`.

use super::*;

/// A job with what the problems section needs besides its KPI facts.
#[derive(Clone, Debug)]
pub struct LoadedJob {
    pub facts: JobFacts,
    pub product: String,
    pub model: String,
    /// The asset record, or the serial when the ticket names none.
    pub asset: String,
    pub serial: String,
    pub fault: String,
    pub respond_state: String,
    pub resolve_state: String,
}

/// Everything a report over `range` reads.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    pub jobs: Vec<LoadedJob>,
    pub callbacks: Vec<CallbackFacts>,
    pub complaints: Vec<ComplaintFacts>,
    /// User id → username.
    pub usernames: HashMap<String, String>,
}

pub(crate) type TicketCols = (
    (String, String, String, String, String),
    (String, String, String, String, String),
    (String, String, String, String),
    (Option<i64>, Option<i64>, Option<i64>, Option<i64>),
);

/// Loads the facts of jobs opened or completed in `range`, callbacks due and
/// complaints received in it. `progress` hears a line per step.
/// Each job's SLA states are computed from its status history (and first
/// contact, if the policy counts it) as of the range's end, or now if that
/// is sooner — not read from `ticket_sla`, the watch's latest view — so a
/// report of a past period depends on the history only.
pub fn load(
    c: &mut DbConn,
    range: &Period,
    policy: &Policy,
    now: DateTime<Utc>,
    max_tickets: i64,
    progress: &mut dyn FnMut(super::BuildStep<'_>),
) -> Result<Loaded, ReportError> {
    // Text bounds a day wider than the range: the exact test is on parsed
    // times below, so a row written in another format or offset is not lost.
    let (lo, hi) = (
        bound(range.start - Duration::days(1)),
        bound(range.end + Duration::days(1)),
    );
    let in_range: i64 = on_conn!(c, |c| tickets::table
        .filter(tickets::created_at.lt(&hi))
        .filter(
            tickets::created_at
                .ge(&lo)
                .or(tickets::completed_at.ge(&lo))
        )
        .count()
        .get_result(c))?;
    if in_range > max_tickets {
        return Err(ReportError::TooLarge(in_range));
    }
    let rows: Vec<TicketCols> = on_conn!(c, |c| tickets::table
        .filter(tickets::created_at.lt(&hi))
        .filter(
            tickets::created_at
                .ge(&lo)
                .or(tickets::completed_at.ge(&lo))
        )
        .order(tickets::doc_id)
        .select((
            (
                tickets::doc_id,
                tickets::ticket_no,
                tickets::status,
                tickets::priority,
                tickets::technician_id,
            ),
            (
                tickets::created_at,
                tickets::completed_at,
                tickets::appointment_start,
                tickets::appointment_end,
                tickets::product,
            ),
            (
                tickets::model,
                tickets::asset_id,
                tickets::serial,
                tickets::fault_description,
            ),
            (
                tickets::survey_scale,
                tickets::survey_efficiency,
                tickets::survey_attitude,
                tickets::survey_reasonableness,
            ),
        ))
        .load(c))?;
    progress(super::BuildStep::Note(&format!(
        "{} ticket(s) in range",
        rows.len()
    )));
    progress(super::BuildStep::Loaded {
        done: 0,
        total: rows.len(),
    });
    let ids: Vec<String> = rows.iter().map(|r| r.0 .0.clone()).collect();
    let catalogue = reconciliation::catalogue(c)?;
    let mut visits_of: HashMap<String, Vec<VisitRow>> = HashMap::new();
    let mut parts_of: HashMap<String, i64> = HashMap::new();
    let mut first_contact_of: HashMap<String, DateTime<Utc>> = HashMap::new();
    let mut completed_by: HashMap<String, String> = HashMap::new();
    let as_of = now.min(range.end);
    let mut events_of: HashMap<String, Vec<Step>> = HashMap::new();
    for (i, chunk) in ids.chunks(CHUNK).enumerate() {
        let vs: Vec<VisitRow> = on_conn!(c, |c| visits::table
            .filter(visits::doc_id.eq_any(chunk))
            .order((visits::doc_id, visits::position))
            .select(VisitRow::as_select())
            .load(c))?;
        for v in vs {
            visits_of.entry(v.doc_id.clone()).or_default().push(v);
        }
        let ps: Vec<(String, String, i64)> = on_conn!(c, |c| parts_used::table
            .filter(parts_used::doc_id.eq_any(chunk))
            .select((parts_used::doc_id, parts_used::part_no, parts_used::qty))
            .load(c))?;
        for (doc, part_no, qty) in ps {
            // Implausible quantities (reconciliation flags them) are left
            // out: a negative line must not lower a technician's cost.
            if !crate::records::is_plausible_part_qty(qty) {
                continue;
            }
            let cost = catalogue
                .get(&part_no)
                .and_then(|p| p.unit_cost_cents.checked_mul(qty))
                .unwrap_or(0);
            let sum = parts_of.entry(doc).or_default();
            *sum = sum.saturating_add(cost);
        }
        if policy.sla.respond_on == RespondOn::FirstContact {
            let cs: Vec<(String, String)> = on_conn!(c, |c| ticket_contacts::table
                .filter(ticket_contacts::doc_id.eq_any(chunk))
                .select((ticket_contacts::doc_id, ticket_contacts::at))
                .load(c))?;
            for (doc, at) in cs {
                if let Some(at) = parse_time(&at) {
                    let first = first_contact_of.entry(doc).or_insert(at);
                    *first = (*first).min(at);
                }
            }
        }
        let es: Vec<(String, String, String, String, String, String)> =
            on_conn!(c, |c| status_events::table
                .filter(status_events::doc_id.eq_any(chunk))
                .order((status_events::doc_id, status_events::seq))
                .select((
                    status_events::doc_id,
                    status_events::to_status,
                    status_events::at,
                    status_events::device_at,
                    status_events::by_user,
                    status_events::by_role,
                ))
                .load(c))?;
        for (doc, to, at, device_at, by_user, by_role) in es {
            // The job is the technician's who first completed it (a job
            // reassigned after its completion stays theirs).
            if to == "completed" && by_role == "technician" {
                completed_by.entry(doc.clone()).or_insert(by_user);
            }
            if let Some(at) = parse_time(&at) {
                events_of.entry(doc).or_default().push(Step {
                    to,
                    at,
                    device_at: parse_time(&device_at),
                });
            }
        }
        progress(super::BuildStep::Loaded {
            done: i * CHUNK + chunk.len(),
            total: ids.len(),
        });
    }
    let mut technician_of: HashMap<String, String> = HashMap::new();
    let mut jobs = Vec::with_capacity(rows.len());
    for (
        (doc_id, ticket_no, status, priority, technician_id),
        (created, completed, a_start, a_end, product),
        (model, asset_id, serial, fault),
        (scale, e, a, r),
    ) in rows
    {
        let technician_id = completed_by.remove(&doc_id).unwrap_or(technician_id);
        technician_of.insert(doc_id.clone(), technician_id.clone());
        let Some(created_at) = parse_time(&created) else {
            continue;
        };
        let events = events_of.remove(&doc_id).unwrap_or_default();
        let first_contact = first_contact_of.remove(&doc_id);
        let (respond_state, resolve_state, met) =
            match sla::evaluate_with_contact(&policy.sla, &priority, &events, first_contact, as_of)
            {
                Some(e) => (
                    e.respond.state.as_str().to_string(),
                    e.resolve.state.as_str().to_string(),
                    e.resolve.met_at.map(bound).unwrap_or_default(),
                ),
                None => Default::default(),
            };
        let visit_rows = visits_of.remove(&doc_id).unwrap_or_default();
        let labour = checks::labour(&visit_rows);
        let reopened = events
            .iter()
            .skip_while(|e| e.to != "completed")
            .any(|e| e.to == "reopened");
        let completed_at = parse_time(&met).or_else(|| parse_time(&completed));
        let appointment = parse_time(&a_start).zip(parse_time(&a_end));
        let facts = JobFacts {
            doc_id: doc_id.clone(),
            ticket_no,
            priority,
            technician_id,
            created_at,
            completed_at,
            cancelled: status == "cancelled",
            reopened,
            appointment,
            visits: visit_rows
                .iter()
                .map(|v| VisitFact {
                    arrived_at: parse_time(&v.arrived_at),
                    fixed: v.fixed,
                })
                .collect(),
            // A visit never checked out, or longer than a day (flagged by
            // reconciliation), is left out rather than billed for days.
            labour_minutes: labour
                .visits
                .iter()
                .filter_map(|v| v.minutes)
                .filter(|m| (0..=checks::MAX_VISIT_MINUTES).contains(m))
                .sum(),
            parts_cost_cents: parts_of.remove(&doc_id).unwrap_or(0),
            respond: SlaOutcome::from_state(&respond_state),
            resolve: SlaOutcome::from_state(&resolve_state),
            survey: scale.map(|scale| Scores {
                scale,
                efficiency: e,
                attitude: a,
                reasonableness: r,
            }),
        };
        // Keep only what the range touches (the SQL bounds were wider).
        if !(range.contains(created_at) || range.has(completed_at)) {
            continue;
        }
        jobs.push(LoadedJob {
            facts,
            product,
            model,
            asset: if asset_id.is_empty() {
                serial.clone()
            } else {
                asset_id
            },
            serial,
            fault,
            respond_state,
            resolve_state,
        });
    }

    let cbs: Vec<(String, String, Option<String>)> = on_conn!(c, |c| callbacks::table
        .filter(callbacks::due_at.ge(&lo))
        .filter(callbacks::due_at.lt(&hi))
        .order(callbacks::id)
        .select((callbacks::doc_id, callbacks::due_at, callbacks::done_at))
        .load(c))?;
    // A complaint's second contact (`complaint:<id>`) counts for the ticket
    // the complaint is about, if any.
    let of_complaints: Vec<String> = cbs
        .iter()
        .filter_map(|r| r.0.strip_prefix("complaint:").map(str::to_string))
        .collect();
    let mut complaint_ticket: HashMap<String, String> = HashMap::new();
    for chunk in of_complaints.chunks(CHUNK) {
        let found: Vec<(String, String)> = on_conn!(c, |c| complaints::table
            .filter(complaints::id.eq_any(chunk))
            .select((complaints::id, complaints::doc_id))
            .load(c))?;
        complaint_ticket.extend(
            found
                .into_iter()
                .map(|(id, doc)| (format!("complaint:{id}"), doc)),
        );
    }
    let cbs: Vec<(String, String, Option<String>)> = cbs
        .into_iter()
        .map(|(doc, due, done)| {
            let doc = complaint_ticket.get(&doc).cloned().unwrap_or(doc);
            (doc, due, done)
        })
        .collect();
    let cps: Vec<(String, String, Option<String>)> = on_conn!(c, |c| complaints::table
        .filter(complaints::received_at.ge(&lo))
        .filter(complaints::received_at.lt(&hi))
        .order(complaints::id)
        .select((
            complaints::doc_id,
            complaints::received_at,
            complaints::resolved_at
        ))
        .load(c))?;
    // Technicians of callbacks' and complaints' jobs outside the range.
    let missing: Vec<String> = cbs
        .iter()
        .map(|r| &r.0)
        .chain(cps.iter().map(|r| &r.0))
        .filter(|d| !d.is_empty() && !technician_of.contains_key(*d))
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    for chunk in missing.chunks(CHUNK) {
        let found: Vec<(String, String)> = on_conn!(c, |c| tickets::table
            .filter(tickets::doc_id.eq_any(chunk))
            .select((tickets::doc_id, tickets::technician_id))
            .load(c))?;
        technician_of.extend(found);
    }
    let tech = |doc: &str| technician_of.get(doc).cloned().unwrap_or_default();
    let callbacks = cbs
        .iter()
        .filter_map(|(doc, due, done)| {
            let due_at = parse_time(due).filter(|t| range.contains(*t))?;
            Some(CallbackFacts {
                technician_id: tech(doc),
                due_at,
                done_at: done.as_deref().and_then(parse_time),
            })
        })
        .collect();
    let complaints = cps
        .iter()
        .filter_map(|(doc, received, resolved)| {
            let received_at = parse_time(received).filter(|t| range.contains(*t))?;
            Some(ComplaintFacts {
                technician_id: tech(doc),
                received_at,
                resolved_at: resolved.as_deref().and_then(parse_time),
            })
        })
        .collect();
    Ok(Loaded {
        jobs,
        callbacks,
        complaints,
        usernames: reconciliation::usernames(c)?,
    })
}
