//! What the service provider publishes about itself (RFC 7643 §5–7): its configuration, its
//! resource types and the schemas of the attributes it keeps. Only attributes we store are
//! listed, so a client never sets one that would be dropped.
//!
//! Three attributes the core schema leaves optional are required here: `emails` and (through
//! it, or userName) an email, because every account has one; and `active`, because an account
//! is always either active or deprovisioned, so removing the attribute has no meaning.

use serde_json::{Value, json};

use super::{GROUP_SCHEMA, MAX_PAGE, USER_SCHEMA};

const SCHEMA_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";
const RESOURCE_TYPE_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
const CONFIG_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";

pub fn service_provider_config(base: &str) -> Value {
    json!({
        "schemas": [CONFIG_SCHEMA],
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": MAX_PAGE},
        "changePassword": {"supported": false},
        "sort": {"supported": false},
        "etag": {"supported": false},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "Bearer token",
            "description": "A SCIM token made by a global admin at POST /api/scim/tokens, sent as Authorization: Bearer <token>.",
            "primary": true
        }],
        "meta": {"resourceType": "ServiceProviderConfig", "location": format!("{base}/ServiceProviderConfig")}
    })
}

pub fn resource_types(base: &str) -> Vec<Value> {
    [("User", "Users", USER_SCHEMA, "An account"), ("Group", "Groups", GROUP_SCHEMA, "A group of accounts, mapped to roles and workspaces")]
        .into_iter()
        .map(|(id, endpoint, schema, description)| {
            json!({
                "schemas": [RESOURCE_TYPE_SCHEMA],
                "id": id,
                "name": id,
                "endpoint": format!("/{endpoint}"),
                "description": description,
                "schema": schema,
                "schemaExtensions": [],
                "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/{id}")}
            })
        })
        .collect()
}

struct Attr {
    name: &'static str,
    kind: &'static str,
    multi: bool,
    required: bool,
    mutability: &'static str,
    description: &'static str,
    subs: Vec<Attr>,
    canonical: &'static [&'static str],
    references: &'static [&'static str],
    unique: bool,
}

fn attr(name: &'static str, kind: &'static str, description: &'static str) -> Attr {
    Attr { name, kind, multi: false, required: false, mutability: "readWrite", description, subs: vec![], canonical: &[], references: &[], unique: false }
}

impl Attr {
    fn multi(mut self) -> Self {
        self.multi = true;
        self
    }
    fn required(mut self) -> Self {
        self.required = true;
        self
    }
    fn mutability(mut self, m: &'static str) -> Self {
        self.mutability = m;
        self
    }
    fn subs(mut self, subs: Vec<Attr>) -> Self {
        self.subs = subs;
        self
    }
    fn canonical(mut self, values: &'static [&'static str]) -> Self {
        self.canonical = values;
        self
    }
    fn references(mut self, types: &'static [&'static str]) -> Self {
        self.references = types;
        self
    }
    fn unique(mut self) -> Self {
        self.unique = true;
        self
    }

    fn to_json(&self) -> Value {
        let mut out = json!({
            "name": self.name,
            "type": self.kind,
            "multiValued": self.multi,
            "description": self.description,
            "required": self.required,
            "caseExact": false,
            "mutability": self.mutability,
            "returned": "default",
            "uniqueness": if self.unique { "server" } else { "none" },
        });
        let fields = out.as_object_mut().expect("an object");
        if !self.subs.is_empty() {
            fields.insert("subAttributes".into(), Value::Array(self.subs.iter().map(Attr::to_json).collect()));
        }
        if !self.canonical.is_empty() {
            fields.insert("canonicalValues".into(), json!(self.canonical));
        }
        if !self.references.is_empty() {
            fields.insert("referenceTypes".into(), json!(self.references));
        }
        out
    }
}

fn user_attributes() -> Vec<Attr> {
    vec![
        attr("userName", "string", "The name the user signs in with at the identity provider, unique.").required().unique(),
        attr("name", "complex", "The user's name.").subs(vec![
            attr("formatted", "string", "The full name, as displayed."),
            attr("familyName", "string", "The family name."),
            attr("givenName", "string", "The given name."),
        ]),
        attr("displayName", "string", "The name shown for the user."),
        attr("emails", "complex", "Email addresses; the primary one (else the first) is the account's email.").multi().required().subs(vec![
            attr("value", "string", "The address.").required(),
            attr("type", "string", "work, home or other.").canonical(&["work", "home", "other"]),
            attr("primary", "boolean", "Whether this is the account's email."),
        ]),
        attr("active", "boolean", "false deprovisions the account: its sessions end and its API keys are revoked.").required(),
        attr("groups", "complex", "The groups the user is in (change them through Groups).").multi().mutability("readOnly").subs(vec![
            attr("value", "string", "The group's id.").mutability("readOnly"),
            attr("$ref", "reference", "The group's URI.").mutability("readOnly").references(&["Group"]),
            attr("display", "string", "The group's name.").mutability("readOnly"),
        ]),
    ]
}

fn group_attributes() -> Vec<Attr> {
    vec![
        attr("displayName", "string", "The group's name, as the group mapping names it.").required(),
        attr("members", "complex", "The users in the group.").multi().subs(vec![
            attr("value", "string", "The user's id.").mutability("immutable"),
            attr("$ref", "reference", "The user's URI.").mutability("immutable").references(&["User"]),
            attr("type", "string", "Always User: groups do not nest.").mutability("immutable").canonical(&["User"]),
        ]),
    ]
}

pub fn schemas(base: &str) -> Vec<Value> {
    [(USER_SCHEMA, "User", "User Account", user_attributes()), (GROUP_SCHEMA, "Group", "Group", group_attributes())]
        .into_iter()
        .map(|(id, name, description, attributes)| {
            json!({
                "schemas": [SCHEMA_SCHEMA],
                "id": id,
                "name": name,
                "description": description,
                "attributes": attributes.iter().map(Attr::to_json).collect::<Vec<_>>(),
                "meta": {"resourceType": "Schema", "location": format!("{base}/Schemas/{id}")}
            })
        })
        .collect()
}
