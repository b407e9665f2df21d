//! The OpenAPI 3.1 document, built from the route table and the response types' JSON
//! Schemas (2020-12, which OpenAPI 3.1 uses as is).

use schemars::generate::{Contract, SchemaSettings};
use serde_json::{Map, Value, json};

use super::reply::ApiError;
use super::routes::{Body, In, Route};

fn status_text(code: u16) -> &'static str {
    match code {
        400 => {
            "The request's parameters are wrong (a bad value, a parameter given twice); `error` says which."
        }
        401 => "A bearer token is required (`--api-token-file`), or the token given expired.",
        403 => {
            "The token's scope does not cover this path (a `metrics` token reads /metrics only)."
        }
        404 => "No such object, run or route.",
        405 => "Only GET and HEAD are allowed: the API is read-only.",
        409 => "It cannot be sent as asked; `error` says why.",
        500 => "holdfast could not read its own state.",
        503 => "Not ready, or Docker is unreachable.",
        _ => "Error.",
    }
}

/// The whole document.
pub fn document(routes: &[Route]) -> Value {
    let mut settings = SchemaSettings::draft2020_12();
    settings.definitions_path = "/components/schemas".into();
    settings.meta_schema = None;
    // These are responses: what is written, not what would be accepted.
    settings.contract = Contract::Serialize;
    let mut generator = settings.into_generator();
    let error_schema = generator.subschema_for::<ApiError>();
    let mut paths = Map::new();
    for route in routes {
        let parameters: Vec<Value> = route
            .params
            .iter()
            .map(|p| {
                json!({
                    "name": p.name,
                    "in": match p.location { In::Path => "path", In::Query => "query" },
                    "required": p.location == In::Path,
                    "description": p.description,
                    "schema": p.schema,
                })
            })
            .collect();
        let ok = match &route.body {
            Body::Json(schema) => json!({
                "description": "OK",
                "content": {"application/json": {"schema": schema(&mut generator)}},
            }),
            Body::Text(content_type) => json!({
                "description": "OK",
                "content": {*content_type: {"schema": {"type": "string"}}},
            }),
            Body::EventStream(schema) => json!({
                "description": "A stream of server-sent events; each `data` line is JSON of this schema.",
                "content": {"text/event-stream": {
                    "schema": {"type": "string"},
                    "x-event-data-schema": schema(&mut generator),
                }},
            }),
        };
        let mut responses = Map::new();
        if route.unavailable_same_body {
            let mut unavailable = ok.clone();
            unavailable["description"] = json!(status_text(503));
            responses.insert("503".into(), unavailable);
        }
        responses.insert("200".into(), ok);
        for code in route.errors.iter().chain(&[401, 403, 405]) {
            responses.insert(
                code.to_string(),
                json!({
                    "description": status_text(*code),
                    "content": {"application/json": {"schema": error_schema}},
                }),
            );
        }
        let mut get = json!({
            "operationId": route.operation_id,
            "summary": route.summary,
            "parameters": parameters,
            "responses": responses,
        });
        if let Some(description) = route.description {
            get["description"] = json!(description);
        }
        paths.insert(route.path.to_string(), json!({ "get": get }));
    }
    let schemas: Map<String, Value> = generator.take_definitions(true).into_iter().collect();
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "holdfast",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The read-only state API of the holdfast daemon: specs with their status, runs and their logs, Docker stacks, the backups in the repository (/api/v1/backups; /api/v1/archives lists Archive specs), and live events. Every method but GET and HEAD is refused with 405, and every refusal is a JSON `{\"error\": ...}` body; secrets never appear in a response.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Required when holdfast runs with --api-token-file.",
                }
            },
        },
        // Without a token file no security applies; with one, the bearer token does.
        "security": [{}, {"bearer": []}],
    })
}
