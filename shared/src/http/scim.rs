//! Auth group, SCIM 2.0 at `/scim/v2` (RFC 7644): what an identity provider calls with a SCIM
//! token. Answers are `application/scim+json`, errors SCIM's own shape
//! (`{"schemas": [...Error], "status": "404", "scimType"?, "detail"}`). Rules live in `scim`.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::ApiError;
use crate::identity::users::{self as accounts, User};
use crate::scim::{self, ListParams, MAX_PAGE, Shape, groups, schema, tokens, users};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(scim_service_provider_config))
        .routes(routes!(scim_list_resource_types))
        .routes(routes!(scim_get_resource_type))
        .routes(routes!(scim_list_schemas))
        .routes(routes!(scim_get_schema))
        .routes(routes!(scim_search))
        .routes(routes!(scim_list_users, scim_create_user))
        .routes(routes!(scim_get_user, scim_replace_user, scim_patch_user, scim_delete_user))
        .routes(routes!(scim_list_groups, scim_create_group))
        .routes(routes!(scim_get_group, scim_replace_group, scim_patch_group, scim_delete_group))
}

const SCIM_JSON: &str = "application/scim+json";
/// The scimType values of RFC 7644 §3.12 that our errors carry as their code.
const SCIM_TYPES: [&str; 9] = ["invalidFilter", "tooMany", "uniqueness", "mutability", "invalidSyntax", "invalidPath", "noTarget", "invalidValue", "sensitive"];

/// An error in SCIM's shape.
pub struct ScimError(ApiError);

impl From<ApiError> for ScimError {
    fn from(e: ApiError) -> Self {
        ScimError(e)
    }
}

impl From<crate::store::StoreError> for ScimError {
    fn from(e: crate::store::StoreError) -> Self {
        ScimError(e.into())
    }
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let status = self.0.status_code();
        let detail = match &self.0 {
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                "The server failed to handle this request; it has been logged. Retry, and report the x-request-id header if it persists.".to_string()
            }
            other => other.to_string(),
        };
        let mut body = json!({"schemas": [scim::ERROR_SCHEMA], "status": status.to_string(), "detail": detail});
        let code = self.0.code();
        let scim_type = match status {
            400 => Some(if SCIM_TYPES.contains(&code) { code } else { "invalidValue" }),
            // Other conflicts (the last admin) are no uniqueness clash: they carry no scimType.
            409 if code == "uniqueness" => Some("uniqueness"),
            _ => None,
        };
        if let Some(t) = scim_type {
            body["scimType"] = json!(t);
        }
        scim_json(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), &body)
    }
}

fn scim_json(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
    response
}

type ScimResult<T = Response> = Result<T, ScimError>;

/// A SCIM token's id, from `Authorization: Bearer scim_...`; it is the audit log's actor.
pub struct ScimCaller {
    pub token_id: Uuid,
}

impl FromRequestParts<AppState> for ScimCaller {
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ScimError> {
        let unauthorized = || ScimError(ApiError::unauthorized("send Authorization: Bearer <SCIM token>; a global admin makes one at POST /api/scim/tokens"));
        let token = super::extract::bearer(parts).map_err(|_| unauthorized())?;
        let token_id = tokens::authenticate(state.store.as_ref(), token).await?.ok_or_else(unauthorized)?;
        crate::audit::context::identify(crate::audit::Actor::ScimToken { id: token_id });
        Ok(ScimCaller { token_id })
    }
}

/// What a SCIM operation works from: the caller authenticated (as [`ScimCaller`] does), the
/// state, and the request's headers for the base URL. One extractor, so that each route's
/// signature says only what sets it apart (an id, a query, a body).
struct Scim {
    state: AppState,
    headers: HeaderMap,
}

impl FromRequestParts<AppState> for Scim {
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ScimError> {
        ScimCaller::from_request_parts(parts, state).await?;
        Ok(Scim { state: state.clone(), headers: parts.headers.clone() })
    }
}

/// `http(s)://host/scim/v2`, for `meta.location` and `$ref`: under the public URL when one is
/// configured (as invite links and sign-in are), else the host the request named.
async fn base_url(state: &AppState, headers: &HeaderMap) -> ScimResult<String> {
    if let Some(url) = super::configured_public_url(state).await? {
        return Ok(format!("{}/scim/v2", url.trim_end_matches('/')));
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    let scheme = headers.get("x-forwarded-proto").and_then(|h| h.to_str().ok()).filter(|p| *p == "https").unwrap_or("http");
    Ok(format!("{scheme}://{host}/scim/v2"))
}

fn ok(body: &Value) -> ScimResult {
    Ok(scim_json(StatusCode::OK, body))
}

fn created(body: &Value) -> ScimResult {
    let mut response = scim_json(StatusCode::CREATED, body);
    if let Some(location) = body["meta"]["location"].as_str().and_then(|l| HeaderValue::from_str(l).ok()) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

fn json_body(body: Result<Bytes, BytesRejection>) -> ScimResult<Value> {
    let bytes = body.map_err(|e| ApiError::Status {
        status: e.status().as_u16(),
        code: "invalidSyntax",
        message: format!("the body could not be read: {}", e.body_text()),
    })?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request("invalidSyntax", format!("the body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::bad_request("invalidSyntax", "the body must be a JSON object").into());
    }
    Ok(value)
}

/// A resource id from the path: anything but one of ours is simply not found.
fn resource_id(raw: &str, kind: &str) -> Result<Uuid, ScimError> {
    raw.parse().map_err(|_| ScimError(ApiError::not_found(format!("no {kind} with id {raw:?}"))))
}

#[derive(Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    /// A SCIM filter, such as `userName eq "ada@example.com"`.
    filter: Option<String>,
    /// 1-based index of the first result (default 1).
    start_index: Option<String>,
    /// Results per page (default and at most 200).
    count: Option<String>,
    /// Only these attributes (comma-separated).
    attributes: Option<String>,
    /// All but these attributes (comma-separated).
    excluded_attributes: Option<String>,
}

#[derive(Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct ShapeQuery {
    /// Only these attributes (comma-separated).
    attributes: Option<String>,
    /// All but these attributes (comma-separated).
    excluded_attributes: Option<String>,
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> ScimResult<T> {
    q.map(|Query(q)| q).map_err(|e| ScimError(ApiError::bad_request("invalidValue", format!("the query string is not valid: {}", e.body_text()))))
}

fn number(raw: Option<&str>, name: &str, default: i64) -> ScimResult<i64> {
    match raw {
        None => Ok(default),
        Some(s) => s.trim().parse().map_err(|_| ScimError(ApiError::bad_request("invalidValue", format!("{name} must be a whole number, not {s:?}")))),
    }
}

fn list_params(q: ListQuery) -> ScimResult<ListParams> {
    let start_index = number(q.start_index.as_deref(), "startIndex", 1)?.max(1);
    let count = number(q.count.as_deref(), "count", MAX_PAGE as i64)?.clamp(0, MAX_PAGE as i64);
    Ok(ListParams {
        filter: q.filter.as_deref().map(scim::filter::parse).transpose()?,
        start_index: usize::try_from(start_index).unwrap_or(1),
        count: usize::try_from(count).unwrap_or(0),
        shape: Shape::parse(q.attributes.as_deref(), q.excluded_attributes.as_deref())?,
    })
}

// Discovery.

#[utoipa::path(get, path = "/scim/v2/ServiceProviderConfig", tag = "scim",
    responses((status = 200, body = Object, content_type = "application/scim+json"), (status = 401, body = Object, content_type = "application/scim+json")))]
async fn scim_service_provider_config(Scim { state, headers }: Scim) -> ScimResult {
    ok(&schema::service_provider_config(&base_url(&state, &headers).await?))
}

fn list_of(resources: Vec<Value>) -> Value {
    let n = resources.len();
    json!({"schemas": [scim::LIST_RESPONSE], "totalResults": n, "startIndex": 1, "itemsPerPage": n, "Resources": resources})
}

fn find_by_id(resources: Vec<Value>, id: &str, kind: &str) -> ScimResult {
    match resources.into_iter().find(|r| r["id"] == id) {
        Some(r) => ok(&r),
        None => Err(ApiError::not_found(format!("no {kind} {id:?}")).into()),
    }
}

#[utoipa::path(get, path = "/scim/v2/ResourceTypes", tag = "scim",
    responses((status = 200, body = Object, content_type = "application/scim+json"), (status = 401, body = Object, content_type = "application/scim+json")))]
async fn scim_list_resource_types(Scim { state, headers }: Scim) -> ScimResult {
    ok(&list_of(schema::resource_types(&base_url(&state, &headers).await?)))
}

#[utoipa::path(get, path = "/scim/v2/ResourceTypes/{id}", tag = "scim", params(("id" = String, Path)),
    responses((status = 200, body = Object, content_type = "application/scim+json"), (status = 401, body = Object, content_type = "application/scim+json"), (status = 404, body = Object, content_type = "application/scim+json")))]
async fn scim_get_resource_type(Scim { state, headers }: Scim, Path(id): Path<String>) -> ScimResult {
    find_by_id(schema::resource_types(&base_url(&state, &headers).await?), &id, "ResourceType")
}

#[utoipa::path(get, path = "/scim/v2/Schemas", tag = "scim",
    responses((status = 200, body = Object, content_type = "application/scim+json"), (status = 401, body = Object, content_type = "application/scim+json")))]
async fn scim_list_schemas(Scim { state, headers }: Scim) -> ScimResult {
    ok(&list_of(schema::schemas(&base_url(&state, &headers).await?)))
}

#[utoipa::path(get, path = "/scim/v2/Schemas/{id}", tag = "scim", params(("id" = String, Path)),
    responses((status = 200, body = Object, content_type = "application/scim+json"), (status = 401, body = Object, content_type = "application/scim+json"), (status = 404, body = Object, content_type = "application/scim+json")))]
async fn scim_get_schema(Scim { state, headers }: Scim, Path(id): Path<String>) -> ScimResult {
    find_by_id(schema::schemas(&base_url(&state, &headers).await?), &id, "Schema")
}

/// Searching several resource types at once is not offered: search each with GET and `filter`.
#[utoipa::path(post, path = "/scim/v2/.search", tag = "scim",
    responses((status = 401, body = Object, content_type = "application/scim+json"), (status = 501, body = Object, content_type = "application/scim+json")))]
async fn scim_search(_caller: ScimCaller) -> ScimResult {
    Err(ApiError::Status {
        status: 501,
        code: "not_implemented",
        message: "searching several resource types at once is not supported; GET /Users or /Groups with filter".into(),
    }
    .into())
}

// Users and Groups. The six operations are written once, over `Kind`; each route below only
// names its resource type, since utoipa wants one annotated function for each path and method.

/// What sets a SCIM resource type apart: how it is read, stored and shown. The steps around
/// (parsing the query and body, the base URL, shaping, the answer) are the same for every type.
trait Kind: Sized {
    /// The resource type's name, as errors say it.
    const NAME: &'static str;
    /// A create or replace body, checked.
    type Input;
    /// The resource with this id, if SCIM may see it.
    async fn find(state: &AppState, id: Uuid) -> ScimResult<Option<Self>>;
    /// Every resource of this type, as SCIM JSON.
    async fn all(state: &AppState, base: &str) -> ScimResult<Vec<Value>>;
    async fn resource(&self, state: &AppState, base: &str) -> ScimResult<Value>;
    fn parse(body: &Value) -> ScimResult<Self::Input>;
    async fn replace(&self, state: &AppState, input: Self::Input) -> ScimResult<Self>;
    async fn create(state: &AppState, input: Self::Input) -> ScimResult<Self>;
    async fn delete(&self, state: &AppState) -> ScimResult<()>;
}

impl Kind for User {
    const NAME: &'static str = "User";
    type Input = users::Input;

    async fn find(state: &AppState, id: Uuid) -> ScimResult<Option<User>> {
        Ok(accounts::get(state.store.as_ref(), id).await?.filter(|u| u.deleting_since.is_none()))
    }

    /// Every account but those being deleted.
    async fn all(state: &AppState, base: &str) -> ScimResult<Vec<Value>> {
        let store = state.store.as_ref();
        let groups = groups::list(store).await?;
        let mut out = Vec::new();
        for user in accounts::list(store).await?.into_iter().filter(|u| u.deleting_since.is_none()) {
            let profile = users::profile(store, user.id).await?;
            out.push(users::resource(&user, profile.as_ref(), &groups::of_user(&groups, user.id), base));
        }
        Ok(out)
    }

    async fn resource(&self, state: &AppState, base: &str) -> ScimResult<Value> {
        let store = state.store.as_ref();
        let groups = groups::list(store).await?;
        Ok(users::resource(self, users::profile(store, self.id).await?.as_ref(), &groups::of_user(&groups, self.id), base))
    }

    fn parse(body: &Value) -> ScimResult<users::Input> {
        Ok(users::parse(body)?)
    }

    async fn replace(&self, state: &AppState, input: users::Input) -> ScimResult<User> {
        Ok(users::replace(state.store.as_ref(), self, input, state.clock.now(), state.hot.as_ref()).await?)
    }

    async fn create(state: &AppState, input: users::Input) -> ScimResult<User> {
        Ok(users::create(state.store.as_ref(), input, state.clock.now()).await?)
    }

    async fn delete(&self, state: &AppState) -> ScimResult<()> {
        let now = state.clock.now();
        users::delete(state.store.as_ref(), state.secrets.as_ref(), self, now, state.hot.as_ref()).await?;
        Ok(groups::forget_user(state.store.as_ref(), self.id, now).await?)
    }
}

impl Kind for groups::Group {
    const NAME: &'static str = "Group";
    type Input = groups::Input;

    async fn find(state: &AppState, id: Uuid) -> ScimResult<Option<groups::Group>> {
        Ok(groups::get(state.store.as_ref(), id).await?)
    }

    async fn all(state: &AppState, base: &str) -> ScimResult<Vec<Value>> {
        let store = state.store.as_ref();
        let everyone: Vec<User> = accounts::list(store).await?.into_iter().filter(|u| u.deleting_since.is_none()).collect();
        Ok(groups::list(store).await?.iter().map(|g| groups::resource(g, &everyone, base)).collect())
    }

    /// Members being deleted are left out, as they are of the Users list.
    async fn resource(&self, state: &AppState, base: &str) -> ScimResult<Value> {
        let mut members = Vec::with_capacity(self.members.len());
        for id in &self.members {
            if let Some(user) = accounts::get(state.store.as_ref(), *id).await?.filter(|u| u.deleting_since.is_none()) {
                members.push(user);
            }
        }
        Ok(groups::resource(self, &members, base))
    }

    fn parse(body: &Value) -> ScimResult<groups::Input> {
        Ok(groups::parse(body)?)
    }

    async fn replace(&self, state: &AppState, input: groups::Input) -> ScimResult<groups::Group> {
        Ok(groups::replace(state.store.as_ref(), self, input, state.clock.now()).await?)
    }

    async fn create(state: &AppState, input: groups::Input) -> ScimResult<groups::Group> {
        Ok(groups::create(state.store.as_ref(), input, state.clock.now()).await?)
    }

    async fn delete(&self, state: &AppState) -> ScimResult<()> {
        Ok(groups::delete(state.store.as_ref(), self, state.clock.now()).await?)
    }
}

async fn require<K: Kind>(state: &AppState, raw: &str) -> ScimResult<K> {
    let id = resource_id(raw, K::NAME)?;
    K::find(state, id).await?.ok_or_else(|| ApiError::not_found(format!("no {} with id {id}", K::NAME)).into())
}

async fn list<K: Kind>(Scim { state, headers }: Scim, q: Result<Query<ListQuery>, QueryRejection>) -> ScimResult {
    let params = list_params(query(q)?)?;
    let base = base_url(&state, &headers).await?;
    ok(&scim::list_response(K::all(&state, &base).await?, &params))
}

async fn create<K: Kind>(Scim { state, headers }: Scim, body: Result<Bytes, BytesRejection>) -> ScimResult {
    let input = K::parse(&json_body(body)?)?;
    let made = K::create(&state, input).await?;
    let base = base_url(&state, &headers).await?;
    created(&made.resource(&state, &base).await?)
}

async fn get<K: Kind>(Scim { state, headers }: Scim, id: String, q: Result<Query<ShapeQuery>, QueryRejection>) -> ScimResult {
    let q = query(q)?;
    let shape = Shape::parse(q.attributes.as_deref(), q.excluded_attributes.as_deref())?;
    let found = require::<K>(&state, &id).await?;
    let base = base_url(&state, &headers).await?;
    ok(&shape.apply(found.resource(&state, &base).await?))
}

async fn replace<K: Kind>(Scim { state, headers }: Scim, id: String, body: Result<Bytes, BytesRejection>) -> ScimResult {
    let before = require::<K>(&state, &id).await?;
    let input = K::parse(&json_body(body)?)?;
    let after = before.replace(&state, input).await?;
    let base = base_url(&state, &headers).await?;
    ok(&after.resource(&state, &base).await?)
}

/// A PATCH is applied to the resource as SCIM shows it, and the result stored as a PUT would be.
async fn patch<K: Kind>(Scim { state, headers }: Scim, id: String, body: Result<Bytes, BytesRejection>) -> ScimResult {
    let before = require::<K>(&state, &id).await?;
    let operations = scim::patch::parse_request(&json_body(body)?)?;
    let base = base_url(&state, &headers).await?;
    let mut resource = before.resource(&state, &base).await?;
    scim::patch::apply(&mut resource, &operations)?;
    let after = before.replace(&state, K::parse(&resource)?).await?;
    ok(&after.resource(&state, &base).await?)
}

async fn delete<K: Kind>(Scim { state, .. }: Scim, id: String) -> ScimResult {
    require::<K>(&state, &id).await?.delete(&state).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(get, path = "/scim/v2/Users", tag = "scim", params(ListQuery),
    responses((status = 200, body = Object, content_type = "application/scim+json"), (status = 400, body = Object, content_type = "application/scim+json"), (status = 401, body = Object, content_type = "application/scim+json")))]
async fn scim_list_users(scim: Scim, q: Result<Query<ListQuery>, QueryRejection>) -> ScimResult {
    list::<User>(scim, q).await
}

#[utoipa::path(post, path = "/scim/v2/Users", tag = "scim", request_body(content = Object, content_type = "application/scim+json"),
    responses((status = 201, body = Object, content_type = "application/scim+json"), (status = 400, body = Object, content_type = "application/scim+json"),
        (status = 401, body = Object, content_type = "application/scim+json"), (status = 409, body = Object, content_type = "application/scim+json")))]
async fn scim_create_user(scim: Scim, body: Result<Bytes, BytesRejection>) -> ScimResult {
    create::<User>(scim, body).await
}

#[utoipa::path(get, path = "/scim/v2/Users/{id}", tag = "scim", params(("id" = String, Path), ShapeQuery),
    responses((status = 200, body = Object, content_type = "application/scim+json"), (status = 400, body = Object, content_type = "application/scim+json"), (status = 401, body = Object, content_type = "application/scim+json"), (status = 404, body = Object, content_type = "application/scim+json")))]
async fn scim_get_user(scim: Scim, Path(id): Path<String>, q: Result<Query<ShapeQuery>, QueryRejection>) -> ScimResult {
    get::<User>(scim, id, q).await
}

#[utoipa::path(put, path = "/scim/v2/Users/{id}", tag = "scim", params(("id" = String, Path)), request_body(content = Object, content_type = "application/scim+json"),
    responses((status = 200, body = Object, content_type = "application/scim+json"), (status = 400, body = Object, content_type = "application/scim+json"),
        (status = 401, body = Object, content_type = "application/scim+json"), (status = 404, body = Object, content_type = "application/scim+json"), (status = 409, body = Object, content_type = "application/scim+json")))]
async fn scim_replace_user(scim: Scim, Path(id): Path<String>, body: Result<Bytes, BytesRejection>) -> ScimResult {
    replace::<User>(scim, id, body).await
}

#[utoipa::path(patch, path = "/scim/v2/Users/{id}", tag = "scim", params(("id" = String, Path)), request_body(content = Object, content_type = "application/scim+json"),
    responses((status = 200, body = Object, content_type = "application/scim+json"), (status = 400, body = Object, content_type = "application/scim+json"),
        (status = 401, body = Object, content_type = "application/scim+json"), (status = 404, body = Object, content_type = "application/scim+json"), (status = 409, body = Object, content_type = "application/scim+json")))]
async fn scim_patch_user(scim: Scim, Path(id): Path<String>, body: Result<Bytes, BytesRejection>) -> ScimResult {
    patch::<User>(scim, id, body).await
}

#[utoipa::path(delete, path = "/scim/v2/Users/{id}", tag = "scim", params(("id" = String, Path)),
    responses((status = 204), (status = 401, body = Object, content_type = "application/scim+json"), (status = 404, body = Object, content_type = "application/scim+json"), (status = 409, body = Object, content_type = "application/scim+json")))]
async fn scim_delete_user(scim: Scim, Path(id): Path<String>) -> ScimResult {
    delete::<User>(scim, id).await
}

#[utoipa::path(get, path = "/scim/v2/Groups", tag = "scim", params(ListQuery),
    responses((status = 200, body = Object, content_type = "application/scim+json"), (status = 400, body = Object, content_type = "application/scim+json"), (status = 401, body = Object, content_type = "application/scim+json")))]
async fn scim_list_groups(scim: Scim, q: Result<Query<ListQuery>, QueryRejection>) -> ScimResult {
    list::<groups::Group>(scim, q).await
}

#[utoipa::path(post, path = "/scim/v2/Groups", tag = "scim", request_body(content = Object, content_type = "application/scim+json"),
    responses((status = 201, body = Object, content_type = "application/scim+json"), (status = 400, body = Object, content_type = "application/scim+json"), (status = 401, body = Object, content_type = "application/scim+json")))]
async fn scim_create_group(scim: Scim, body: Result<Bytes, BytesRejection>) -> ScimResult {
    create::<groups::Group>(scim, body).await
}

#[utoipa::path(get, path = "/scim/v2/Groups/{id}", tag = "scim", params(("id" = String, Path), ShapeQuery),
    responses((status = 200, body = Object, content_type = "application/scim+json"), (status = 400, body = Object, content_type = "application/scim+json"), (status = 401, body = Object, content_type = "application/scim+json"), (status = 404, body = Object, content_type = "application/scim+json")))]
async fn scim_get_group(scim: Scim, Path(id): Path<String>, q: Result<Query<ShapeQuery>, QueryRejection>) -> ScimResult {
    get::<groups::Group>(scim, id, q).await
}

#[utoipa::path(put, path = "/scim/v2/Groups/{id}", tag = "scim", params(("id" = String, Path)), request_body(content = Object, content_type = "application/scim+json"),
    responses((status = 200, body = Object, content_type = "application/scim+json"), (status = 400, body = Object, content_type = "application/scim+json"),
        (status = 401, body = Object, content_type = "application/scim+json"), (status = 404, body = Object, content_type = "application/scim+json")))]
async fn scim_replace_group(scim: Scim, Path(id): Path<String>, body: Result<Bytes, BytesRejection>) -> ScimResult {
    replace::<groups::Group>(scim, id, body).await
}

#[utoipa::path(patch, path = "/scim/v2/Groups/{id}", tag = "scim", params(("id" = String, Path)), request_body(content = Object, content_type = "application/scim+json"),
    responses((status = 200, body = Object, content_type = "application/scim+json"), (status = 400, body = Object, content_type = "application/scim+json"),
        (status = 401, body = Object, content_type = "application/scim+json"), (status = 404, body = Object, content_type = "application/scim+json")))]
async fn scim_patch_group(scim: Scim, Path(id): Path<String>, body: Result<Bytes, BytesRejection>) -> ScimResult {
    patch::<groups::Group>(scim, id, body).await
}

#[utoipa::path(delete, path = "/scim/v2/Groups/{id}", tag = "scim", params(("id" = String, Path)),
    responses((status = 204), (status = 401, body = Object, content_type = "application/scim+json"), (status = 404, body = Object, content_type = "application/scim+json")))]
async fn scim_delete_group(scim: Scim, Path(id): Path<String>) -> ScimResult {
    delete::<groups::Group>(scim, id).await
}

/// The SCIM error for a path under `/scim/` that no route serves (the router's fallbacks).
pub fn unknown(status: u16, message: String) -> Response {
    ScimError(ApiError::Status { status, code: "not_found", message }).into_response()
}
