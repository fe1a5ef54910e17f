//! The customer's service rules as plain types and functions, without I/O:
//! the numbers (`policy`), which time counts (`clock`), SLA states (`sla`),
//! who is told when (`escalation`), the survey (`surveys`), complaints
//! (`complaints`) and the KPIs (`kpi`). Tested on constructed timelines.

pub mod clock;
pub mod closed_loop;
pub mod complaints;
pub mod escalation;
pub mod kpi;
pub mod policy;
pub mod sla;
pub mod surveys;
