//! Integration tests: one binary, real parts on 127.0.0.1 (oidc-provider from
//! npm as the IdP, small upstream servers, the gateway in-process).

mod harness;

mod admin;
mod attacks;
mod attacks_admin;
mod bearer;
mod claims_rules;
mod cli;
mod cognito;
mod connections;
mod dev_idp;
mod docs;
mod faults;
mod flow;
mod forward_auth;
mod hardening;
mod hostile;
mod lifecycle;
mod machine;
mod moto;
mod negative;
mod operations;
mod promises;
mod proxy;
mod redis;
mod revalidate;
mod store_suite;
mod traefik;
mod upstreams;
