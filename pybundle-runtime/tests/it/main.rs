//! Integration tests of pybundle-runtime (one binary; modules per area).

mod bundle;
mod hostile;
mod script;
mod worker;
