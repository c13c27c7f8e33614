//! What the plan tests (`plan.rs`, `media_plan.rs`) share: building a plan
//! and reading its errors.

#![allow(dead_code)]

use siplink_proxy::{Config, Plan, PlanErrors};

/// The plan of `config`; panics with every problem if there is one.
pub fn plan(config: &Config) -> Plan {
    Plan::from_config(config).unwrap_or_else(|e| panic!("{e}"))
}

/// The problems of `config`; panics if it makes a plan.
pub fn errors(config: &Config) -> PlanErrors {
    match Plan::from_config(config) {
        Ok(_) => panic!("the configuration was accepted"),
        Err(e) => e,
    }
}

/// Asserts an issue at exactly `location` whose message contains `text`.
#[track_caller]
pub fn assert_issue(e: &PlanErrors, location: &str, text: &str) {
    assert!(
        e.issues
            .iter()
            .any(|i| i.location == location && i.message.contains(text)),
        "no issue at {location:?} containing {text:?} in:\n{e}"
    );
}
