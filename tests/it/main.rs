//! Integration tests: one binary, real parts on 127.0.0.1 (oidc-provider from
//! npm as the IdP, small upstream servers, the gateway in-process).

mod harness;

mod cli;
mod flow;
mod negative;
