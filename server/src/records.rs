//! Reference records the office maintains: the customer archive (customers,
//! their sites and purchased assets — seed 003), the parts catalogue, and
//! manual van-stock movements (restocks, corrections). Records are never
//! deleted: customers are archived (service records are kept ≥ 3 years).

use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use crate::db::schema::{assets, customers, parts, sites, stock_movements};
use crate::db::{now_millis, on_conn, DbConn, DbError};
use crate::projection::MovementRow;
use crate::versioning::{self, Expect, Stale};

#[derive(Clone, Debug, Serialize, Queryable, Selectable, Insertable, utoipa::ToSchema)]
#[diesel(table_name = customers)]
pub struct Customer {
    pub id: String,
    pub name: String,
    pub phone: String,
    pub email: String,
    pub address: String,
    pub notes: String,
    pub archived: bool,
    #[schema(value_type = String, format = DateTime)]
    #[serde(serialize_with = "crate::timestamps::ms_as_rfc3339")]
    pub created_at: i64,
    /// Bumped by every change; the ETag, and what `If-Match` names.
    pub version: i64,
}

#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct NewCustomer {
    #[schema(pattern = r"\S", max_length = 200)]
    pub name: String,
    #[serde(default)]
    #[schema(max_length = 200)]
    pub phone: String,
    #[serde(default)]
    #[schema(max_length = 200)]
    pub email: String,
    #[serde(default)]
    #[schema(max_length = 4000)]
    pub address: String,
    #[serde(default)]
    #[schema(max_length = 4000)]
    pub notes: String,
}

#[derive(Clone, Debug, Serialize, Queryable, Selectable, Insertable, utoipa::ToSchema)]
#[diesel(table_name = sites)]
pub struct Site {
    pub id: String,
    pub customer_id: String,
    pub name: String,
    pub address: String,
    #[schema(value_type = String, format = DateTime)]
    #[serde(serialize_with = "crate::timestamps::ms_as_rfc3339")]
    pub created_at: i64,
    /// Bumped by every change; the ETag, and what `If-Match` names.
    pub version: i64,
}

#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct NewSite {
    #[schema(pattern = r"\S", max_length = 200)]
    pub name: String,
    #[serde(default)]
    #[schema(max_length = 4000)]
    pub address: String,
}

#[derive(Clone, Debug, Serialize, Queryable, Selectable, Insertable, utoipa::ToSchema)]
#[diesel(table_name = assets)]
pub struct Asset {
    pub id: String,
    pub customer_id: String,
    pub site_id: Option<String>,
    pub product: String,
    pub model: String,
    pub serial: String,
    pub purchased_at: String,
    pub warranty_until: String,
    #[schema(value_type = String, format = DateTime)]
    #[serde(serialize_with = "crate::timestamps::ms_as_rfc3339")]
    pub created_at: i64,
    /// Bumped by every change; the ETag, and what `If-Match` names.
    pub version: i64,
}

#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct NewAsset {
    #[schema(pattern = r"\S", max_length = 200)]
    pub product: String,
    #[serde(default)]
    #[schema(max_length = 200)]
    pub model: String,
    #[serde(default)]
    #[schema(max_length = 128)]
    pub serial: String,
    #[schema(max_length = 128)]
    pub site_id: Option<String>,
    #[serde(default)]
    #[schema(pattern = r"^(\d{4}-\d{2}-\d{2})?$")]
    pub purchased_at: String,
    #[serde(default)]
    #[schema(pattern = r"^(\d{4}-\d{2}-\d{2})?$")]
    pub warranty_until: String,
}

#[derive(
    Clone, Debug, Serialize, Deserialize, Queryable, Selectable, Insertable, utoipa::ToSchema,
)]
#[diesel(table_name = parts)]
pub struct Part {
    pub part_no: String,
    pub name: String,
    #[serde(default)]
    pub unit_cost_cents: i64,
    #[serde(default = "yes")]
    pub active: bool,
    #[serde(default)]
    #[schema(value_type = String, format = DateTime)]
    #[serde(serialize_with = "crate::timestamps::ms_as_rfc3339")]
    pub created_at: i64,
    /// Bumped by every change; the ETag, and what `If-Match` names.
    #[serde(default = "one")]
    pub version: i64,
}

fn yes() -> bool {
    true
}

fn one() -> i64 {
    1
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Stale(#[from] Stale),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for RecordError {
    fn from(e: diesel::result::Error) -> Self {
        RecordError::Db(e.into())
    }
}

fn required(name: &str, v: &str) -> Result<(), RecordError> {
    if v.trim().is_empty() {
        return Err(RecordError::Invalid(format!("`{name}` is required")));
    }
    Ok(())
}

fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

pub fn create_customer(conn: &mut DbConn, new: NewCustomer) -> Result<Customer, RecordError> {
    required("name", &new.name)?;
    let c = Customer {
        id: new_id(),
        name: new.name.trim().to_string(),
        phone: new.phone,
        email: new.email,
        address: new.address,
        notes: new.notes,
        archived: false,
        created_at: now_millis(),
        version: 1,
    };
    on_conn!(conn, |x| diesel::insert_into(customers::table)
        .values(&c)
        .execute(x))?;
    Ok(c)
}

/// Customers whose name, phone or email contains `q` (case-insensitive),
/// by name then id, after `after` = (name, id) if given.
pub fn search_customers(
    conn: &mut DbConn,
    q: &str,
    include_archived: bool,
    after: Option<(String, String)>,
    limit: i64,
) -> Result<Vec<Customer>, RecordError> {
    let pattern = crate::db::contains_pattern(&q.to_lowercase());
    Ok(on_conn!(conn, |c| {
        let mut query = customers::table
            .filter(
                crate::db::lower(customers::name)
                    .like(pattern.clone())
                    .escape('\\')
                    .or(crate::db::lower(customers::phone)
                        .like(pattern.clone())
                        .escape('\\'))
                    .or(crate::db::lower(customers::email)
                        .like(pattern.clone())
                        .escape('\\')),
            )
            .into_boxed();
        if !include_archived {
            query = query.filter(customers::archived.eq(false));
        }
        if let Some((name, id)) = &after {
            query = query.filter(
                customers::name.gt(name.clone()).or(customers::name
                    .eq(name.clone())
                    .and(customers::id.gt(id.clone()))),
            );
        }
        query
            .order((customers::name, customers::id))
            .limit(limit)
            .select(Customer::as_select())
            .load(c)
    })?)
}

pub fn get_customer(conn: &mut DbConn, id: &str) -> Result<Customer, RecordError> {
    on_conn!(conn, |c| customers::table
        .find(id)
        .select(Customer::as_select())
        .first(c)
        .optional())?
    .ok_or_else(|| RecordError::NotFound(format!("no customer `{id}`")))
}

pub fn set_customer_archived(
    conn: &mut DbConn,
    id: &str,
    archived: bool,
    expect: Option<&Expect>,
) -> Result<Customer, RecordError> {
    let guard = versioning::guard(expect, get_customer(conn, id)?.version)?;
    let n = on_conn!(conn, |c| {
        let mut q = diesel::update(customers::table.find(id))
            .set((
                customers::archived.eq(archived),
                customers::version.eq(customers::version + 1),
            ))
            .into_boxed();
        if let Some(v) = guard {
            q = q.filter(customers::version.eq(v));
        }
        q.execute(c)
    })?;
    versioning::updated(n, guard)?;
    get_customer(conn, id)
}

/// Replaces a customer's contact fields (name, phone, e-mail, address,
/// notes); the archive flag has its own call.
pub fn update_customer(
    conn: &mut DbConn,
    id: &str,
    new: NewCustomer,
    expect: Option<&Expect>,
) -> Result<Customer, RecordError> {
    required("name", &new.name)?;
    let guard = versioning::guard(expect, get_customer(conn, id)?.version)?;
    let n = on_conn!(conn, |c| {
        let mut q = diesel::update(customers::table.find(id))
            .set((
                customers::name.eq(new.name.trim()),
                customers::phone.eq(&new.phone),
                customers::email.eq(&new.email),
                customers::address.eq(&new.address),
                customers::notes.eq(&new.notes),
                customers::version.eq(customers::version + 1),
            ))
            .into_boxed();
        if let Some(v) = guard {
            q = q.filter(customers::version.eq(v));
        }
        q.execute(c)
    })?;
    versioning::updated(n, guard)?;
    get_customer(conn, id)
}

pub fn get_site(conn: &mut DbConn, id: &str) -> Result<Site, RecordError> {
    on_conn!(conn, |c| sites::table
        .find(id)
        .select(Site::as_select())
        .first(c)
        .optional())?
    .ok_or_else(|| RecordError::NotFound(format!("no site `{id}`")))
}

pub fn update_site(
    conn: &mut DbConn,
    id: &str,
    new: NewSite,
    expect: Option<&Expect>,
) -> Result<Site, RecordError> {
    required("name", &new.name)?;
    let guard = versioning::guard(expect, get_site(conn, id)?.version)?;
    let n = on_conn!(conn, |c| {
        let mut q = diesel::update(sites::table.find(id))
            .set((
                sites::name.eq(&new.name),
                sites::address.eq(&new.address),
                sites::version.eq(sites::version + 1),
            ))
            .into_boxed();
        if let Some(v) = guard {
            q = q.filter(sites::version.eq(v));
        }
        q.execute(c)
    })?;
    versioning::updated(n, guard)?;
    get_site(conn, id)
}

pub fn create_site(
    conn: &mut DbConn,
    customer_id: &str,
    new: NewSite,
) -> Result<Site, RecordError> {
    get_customer(conn, customer_id)?;
    required("name", &new.name)?;
    let s = Site {
        id: new_id(),
        customer_id: customer_id.to_string(),
        name: new.name,
        address: new.address,
        created_at: now_millis(),
        version: 1,
    };
    on_conn!(conn, |c| diesel::insert_into(sites::table)
        .values(&s)
        .execute(c))?;
    Ok(s)
}

pub fn sites_of(conn: &mut DbConn, customer_id: &str) -> Result<Vec<Site>, RecordError> {
    Ok(on_conn!(conn, |c| sites::table
        .filter(sites::customer_id.eq(customer_id))
        .order(sites::created_at)
        .select(Site::as_select())
        .load(c))?)
}

pub fn create_asset(
    conn: &mut DbConn,
    customer_id: &str,
    new: NewAsset,
) -> Result<Asset, RecordError> {
    get_customer(conn, customer_id)?;
    required("product", &new.product)?;
    if let Some(site) = &new.site_id {
        if !sites_of(conn, customer_id)?.iter().any(|s| &s.id == site) {
            return Err(RecordError::Invalid(format!(
                "site `{site}` does not belong to this customer"
            )));
        }
    }
    let a = Asset {
        id: new_id(),
        customer_id: customer_id.to_string(),
        site_id: new.site_id,
        product: new.product,
        model: new.model,
        serial: new.serial,
        purchased_at: new.purchased_at,
        warranty_until: new.warranty_until,
        created_at: now_millis(),
        version: 1,
    };
    on_conn!(conn, |c| diesel::insert_into(assets::table)
        .values(&a)
        .execute(c))?;
    Ok(a)
}

pub fn assets_of(conn: &mut DbConn, customer_id: &str) -> Result<Vec<Asset>, RecordError> {
    Ok(on_conn!(conn, |c| assets::table
        .filter(assets::customer_id.eq(customer_id))
        .order(assets::created_at)
        .select(Asset::as_select())
        .load(c))?)
}

pub fn get_asset(conn: &mut DbConn, id: &str) -> Result<Asset, RecordError> {
    on_conn!(conn, |c| assets::table
        .find(id)
        .select(Asset::as_select())
        .first(c)
        .optional())?
    .ok_or_else(|| RecordError::NotFound(format!("no asset `{id}`")))
}

/// Replaces an asset's fields (it stays with its customer).
pub fn update_asset(
    conn: &mut DbConn,
    id: &str,
    new: NewAsset,
    expect: Option<&Expect>,
) -> Result<Asset, RecordError> {
    required("product", &new.product)?;
    let current = get_asset(conn, id)?;
    let guard = versioning::guard(expect, current.version)?;
    if let Some(site) = &new.site_id {
        if !sites_of(conn, &current.customer_id)?
            .iter()
            .any(|s| &s.id == site)
        {
            return Err(RecordError::Invalid(format!(
                "site `{site}` does not belong to this customer"
            )));
        }
    }
    let n = on_conn!(conn, |c| {
        let mut q = diesel::update(assets::table.find(id))
            .set((
                assets::site_id.eq(&new.site_id),
                assets::product.eq(&new.product),
                assets::model.eq(&new.model),
                assets::serial.eq(&new.serial),
                assets::purchased_at.eq(&new.purchased_at),
                assets::warranty_until.eq(&new.warranty_until),
                assets::version.eq(assets::version + 1),
            ))
            .into_boxed();
        if let Some(v) = guard {
            q = q.filter(assets::version.eq(v));
        }
        q.execute(c)
    })?;
    versioning::updated(n, guard)?;
    get_asset(conn, id)
}

/// Adds a part to the catalogue or updates its name, cost and active flag.
/// With `expect` (an `If-Match`), only an existing part at an expected
/// version is updated; without, the part is created or overwritten.
pub fn upsert_part(
    conn: &mut DbConn,
    mut part: Part,
    expect: Option<&Expect>,
) -> Result<Part, RecordError> {
    required("part_no", &part.part_no)?;
    required("name", &part.name)?;
    if part.unit_cost_cents < 0 {
        return Err(RecordError::Invalid(
            "`unit_cost_cents` must not be negative".into(),
        ));
    }
    let part_no = part.part_no.clone();
    if let Some(expect) = expect {
        // No current part: an If-Match cannot hold (RFC 9110 §13.1.1).
        let read = get_part(conn, &part_no)?.ok_or(Stale::Missing)?.version;
        let guard = versioning::guard(Some(expect), read)?;
        let n = on_conn!(conn, |c| diesel::update(
            parts::table.find(&part_no).filter(parts::version.eq(read))
        )
        .set((
            parts::name.eq(&part.name),
            parts::unit_cost_cents.eq(part.unit_cost_cents),
            parts::active.eq(part.active),
            parts::version.eq(read + 1),
        ))
        .execute(c))?;
        versioning::updated(n, guard)?;
    } else {
        part.created_at = now_millis();
        part.version = 1;
        on_conn!(conn, |c| diesel::insert_into(parts::table)
            .values(&part)
            .on_conflict(parts::part_no)
            .do_update()
            .set((
                parts::name.eq(&part.name),
                parts::unit_cost_cents.eq(part.unit_cost_cents),
                parts::active.eq(part.active),
                parts::version.eq(parts::version + 1),
            ))
            .execute(c))?;
    }
    get_part(conn, &part_no)?.ok_or_else(|| RecordError::NotFound(format!("no part `{part_no}`")))
}

pub fn get_part(conn: &mut DbConn, part_no: &str) -> Result<Option<Part>, RecordError> {
    Ok(on_conn!(conn, |c| parts::table
        .find(part_no)
        .select(Part::as_select())
        .first(c)
        .optional())?)
}

pub fn list_parts(conn: &mut DbConn) -> Result<Vec<Part>, RecordError> {
    list_parts_after(conn, None, i64::MAX)
}

/// By part number, at most `limit` after `after`.
pub fn list_parts_after(
    conn: &mut DbConn,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Part>, RecordError> {
    Ok(on_conn!(conn, |c| {
        let mut q = parts::table
            .order(parts::part_no)
            .select(Part::as_select())
            .limit(limit)
            .into_boxed();
        if let Some(a) = after {
            q = q.filter(parts::part_no.gt(a));
        }
        q.load(c)
    })?)
}

/// Van stock rules, in one place. A part used on a ticket leaves the van
/// only if it is a catalogue part in a plausible quantity; anything else is
/// kept on the ticket and listed for the back office (`stock_anomalies`),
/// never stocked: a device must not be able to raise its own van stock.
pub const MAX_PART_QTY: i64 = 10_000;
/// Largest restock or correction in one movement.
pub const MAX_MOVEMENT_QTY: i64 = 1_000_000;

pub fn is_plausible_part_qty(qty: i64) -> bool {
    (1..=MAX_PART_QTY).contains(&qty)
}

/// A restock (positive) or correction of a technician's van stock.
pub fn record_movement(
    conn: &mut DbConn,
    technician_id: &str,
    part_no: &str,
    qty_delta: i64,
    reason: &str,
) -> Result<MovementRow, RecordError> {
    if qty_delta == 0 || qty_delta.unsigned_abs() > MAX_MOVEMENT_QTY as u64 {
        return Err(RecordError::Invalid(format!(
            "`qty_delta` must be a non-zero quantity of at most {MAX_MOVEMENT_QTY} either way"
        )));
    }
    if !list_parts(conn)?.iter().any(|p| p.part_no == part_no) {
        return Err(RecordError::Invalid(format!(
            "`{part_no}` is not in the parts catalogue"
        )));
    }
    let m = MovementRow {
        id: new_id(),
        technician_id: technician_id.to_string(),
        part_no: part_no.to_string(),
        qty_delta,
        reason: reason.to_string(),
        doc_id: None,
        at: crate::db::now_rfc3339(),
    };
    on_conn!(conn, |c| diesel::insert_into(stock_movements::table)
        .values(&m)
        .execute(c))?;
    Ok(m)
}

#[derive(Debug, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct StockLevel {
    pub part_no: String,
    pub quantity: i64,
}

/// A technician's van stock: the sum of all movements per part, and the
/// movements themselves (newest first).
pub fn van_stock(
    conn: &mut DbConn,
    technician_id: &str,
) -> Result<(Vec<StockLevel>, Vec<MovementRow>), RecordError> {
    let movements: Vec<MovementRow> = on_conn!(conn, |c| stock_movements::table
        .filter(stock_movements::technician_id.eq(technician_id))
        .order((stock_movements::at.desc(), stock_movements::id))
        .select(MovementRow::as_select())
        .load(c))?;
    let mut levels = std::collections::BTreeMap::<String, i64>::new();
    for m in &movements {
        let level = levels.entry(m.part_no.clone()).or_default();
        *level = level.checked_add(m.qty_delta).ok_or_else(|| {
            RecordError::Invalid(format!("the stock level of `{}` overflows", m.part_no))
        })?;
    }
    Ok((
        levels
            .into_iter()
            .map(|(part_no, quantity)| StockLevel { part_no, quantity })
            .collect(),
        movements,
    ))
}

/// A van part on a ticket that did not move stock, for the back office.
#[derive(Debug, Serialize, PartialEq, Eq, Queryable, utoipa::ToSchema)]
pub struct StockAnomaly {
    pub doc_id: String,
    pub part_entry_id: String,
    pub part_no: String,
    pub qty: i64,
    pub technician_id: String,
    pub problem: String,
}

/// Van parts used on tickets that were not taken from stock: unknown part
/// numbers and implausible quantities.
pub fn stock_anomalies(conn: &mut DbConn) -> Result<Vec<StockAnomaly>, RecordError> {
    use crate::db::schema::parts_used as pu;
    let rows: Vec<(String, String, String, i64, String, bool)> = on_conn!(conn, |c| pu::table
        .filter(pu::source.eq("van"))
        .filter(
            pu::qty
                .lt(1)
                .or(pu::qty.gt(MAX_PART_QTY))
                .or(diesel::dsl::not(
                    pu::part_no.eq_any(parts::table.select(parts::part_no))
                )),
        )
        .order((pu::doc_id, pu::position))
        .select((
            pu::doc_id,
            pu::part_entry_id,
            pu::part_no,
            pu::qty,
            pu::technician_id,
            pu::part_no.eq_any(parts::table.select(parts::part_no)),
        ))
        .limit(1000)
        .load(c))?;
    Ok(rows
        .into_iter()
        .map(
            |(doc_id, part_entry_id, part_no, qty, technician_id, known)| StockAnomaly {
                problem: if !known {
                    format!("`{part_no}` is not in the parts catalogue")
                } else {
                    format!("quantity {qty} is not between 1 and {MAX_PART_QTY}")
                },
                doc_id,
                part_entry_id,
                part_no,
                qty,
                technician_id,
            },
        )
        .collect())
}
