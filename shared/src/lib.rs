//! Tollgate's common library: everything the Lambda functions and the local server share.
//! `store` and `secrets` are the two storage traits (with DynamoDB/Secrets Manager and
//! embedded implementations), `identity` holds the rules about users and sessions, `http` the
//! thin handlers grouped by resource group, `runtime` how a group is served.

pub mod account_deletion;
pub mod admission;
pub mod audit;
pub mod budget_events;
pub mod cache;
pub mod canonical;
pub mod catalog;
pub mod clock;
pub mod config;
pub mod doors;
pub mod dynamic_providers;
pub mod egress;
pub mod error;
pub mod group_mapping;
pub mod health;
pub mod http;
pub mod identity;
pub mod integrations;
pub mod invalidate;
pub mod keys;
pub mod limits;
pub mod metrics;
pub mod money;
pub mod names;
pub mod notify;
pub mod outbox;
pub mod pagination;
pub mod projects;
pub mod provider_type;
pub mod providers;
pub mod proxy;
pub mod readiness;
pub mod response_cache;
pub mod responses;
pub mod runtime;
pub mod scim;
pub mod secrets;
pub mod settings;
pub mod sovereignty;
pub mod state;
pub mod store;
pub mod traces;
pub mod usage;
pub mod usage_visibility;
pub mod workspaces;

pub use config::Config;
pub use http::Group;
pub use state::AppState;
