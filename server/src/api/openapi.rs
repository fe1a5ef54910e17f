//! The OpenAPI 3 document at `/api/v1/openapi.json`, generated from the
//! route table in `api/mod.rs` (the same table the router is built from).

use actix_web::HttpResponse;
use serde_json::{json, Map, Value};

/// One route of the table.
pub struct RouteDoc {
    pub method: &'static str,
    pub path: &'static str,
    pub operation: &'static str,
    pub summary: &'static str,
    pub public: bool,
    pub body: Option<&'static str>,
}

pub fn document() -> Value {
    let mut paths = Map::new();
    for r in super::ROUTES {
        let params: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        let mut op = json!({
            "operationId": r.operation.replace("::", "_").replace("crate_sync_batch_", ""),
            "summary": r.summary,
            "parameters": params,
            "responses": {
                "200": { "description": "OK (201 when something was created)" },
                "400": { "$ref": "#/components/responses/Error" },
                "401": { "$ref": "#/components/responses/Error" },
                "403": { "$ref": "#/components/responses/Error" },
                "404": { "$ref": "#/components/responses/Error" },
            },
        });
        if r.public {
            op["security"] = json!([]);
        }
        if let Some(example) = r.body {
            let example: Value = serde_json::from_str(example).unwrap_or(Value::Null);
            op["requestBody"] = json!({ "required": true, "content": { "application/json": { "example": example } } });
        } else if r.method == "put" && r.path.starts_with("/blobs/") {
            op["requestBody"] =
                json!({ "required": true, "content": { "application/octet-stream": {} } });
        }
        let item = paths
            .entry(format!("/api/v1{}", r.path))
            .or_insert_with(|| json!({}));
        item[r.method] = op;
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "fieldsync REST API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Dispatcher, back-office and device API of fieldsync. Documents themselves sync over the automerge-repo WebSocket protocol at /sync?token=&device= (or POST /api/v1/sync/batch).",
        },
        "paths": paths,
        "security": [{ "bearer": [] }],
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" } },
            "responses": {
                "Error": {
                    "description": "Error",
                    "content": { "application/json": { "schema": {
                        "type": "object",
                        "properties": { "error": { "type": "object", "properties": {
                            "code": { "type": "string" }, "message": { "type": "string" } } } },
                    } } },
                },
            },
        },
    })
}

pub async fn serve() -> HttpResponse {
    HttpResponse::Ok().json(document())
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_example_body_is_valid_json() {
        for r in super::super::ROUTES {
            if let Some(b) = r.body {
                assert!(
                    serde_json::from_str::<serde_json::Value>(b).is_ok(),
                    "{} {}",
                    r.method,
                    r.path
                );
            }
        }
    }
}
