//! Integration tests of pybundle-runtime (one binary; modules per area).

mod arguments;
mod asyncs;
mod bundle;
mod data;
mod guardrails;
mod hostile;
mod lifecycle;
mod limits;
mod logging;
mod misbehave;
mod python_half;
mod script;
mod soak;
mod users;
mod worker;
