//! Integration tests of pybundle-runtime (one binary; modules per area).

mod bundle;
mod hostile;
mod limits;
mod misbehave;
mod script;
mod soak;
mod users;
mod worker;
