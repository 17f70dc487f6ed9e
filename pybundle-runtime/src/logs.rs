//! Python `logging` records as `tracing` events. A worker or script asked to forward them
//! (`forward_logging`) installs a handler on Python's root logger that sends each record as a
//! `log` message; here it becomes an event with target `pybundle::python`, the record's level,
//! a `logger` field and the message, inside the span that was current where the call was
//! made (or the worker started, for records outside a call), emitted through that span's own
//! subscriber, whichever thread reads the record.

use tracing::{Level, Span};

use crate::protocol::LogRecord;

/// The target of the events.
pub const TARGET: &str = "pybundle::python";

/// The Python level (`logging.INFO` = 20) from which records are forwarded for `level`.
pub(crate) fn python_level(level: Level) -> u32 {
    match level {
        Level::ERROR => 40,
        Level::WARN => 30,
        Level::INFO => 20,
        Level::DEBUG => 10,
        // Below DEBUG: everything (logging.NOTSET would mean "inherit").
        Level::TRACE => 1,
    }
}

macro_rules! event_at {
    ($parent:expr, $level:expr, $record:expr) => {
        match $level {
            Level::ERROR => tracing::event!(target: TARGET, parent: $parent, Level::ERROR, logger = %$record.logger, "{}", $record.message),
            Level::WARN => tracing::event!(target: TARGET, parent: $parent, Level::WARN, logger = %$record.logger, "{}", $record.message),
            Level::INFO => tracing::event!(target: TARGET, parent: $parent, Level::INFO, logger = %$record.logger, "{}", $record.message),
            Level::DEBUG => tracing::event!(target: TARGET, parent: $parent, Level::DEBUG, logger = %$record.logger, "{}", $record.message),
            _ => tracing::event!(target: TARGET, parent: $parent, Level::TRACE, logger = %$record.logger, "{}", $record.message),
        }
    };
}

/// Emits `record` as an event inside `span` (see the module docs).
pub(crate) fn emit(span: &Span, record: &LogRecord) {
    let level = match record.level {
        40.. => Level::ERROR,
        30..=39 => Level::WARN,
        20..=29 => Level::INFO,
        10..=19 => Level::DEBUG,
        _ => Level::TRACE,
    };
    let sent = span.with_subscriber(|(_, dispatch)| {
        tracing::dispatcher::with_default(dispatch, || event_at!(span, level, record))
    });
    if sent.is_none() {
        // No subscriber where the call was made: this thread's default gets it, if any.
        event_at!(span, level, record);
    }
}
