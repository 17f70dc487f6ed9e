//! Python `logging` records as `tracing` events in the caller's span, when asked for.

use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

use crate::script::env_for;

#[derive(Clone, Debug, PartialEq)]
struct Record {
    level: Level,
    target: String,
    logger: String,
    message: String,
    span: Option<String>,
}

/// Collects every event with its fields and the name of the span it happened in.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Record>>>);

#[derive(Default)]
struct Fields {
    logger: String,
    message: String,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "logger" => self.logger = format!("{value:?}"),
            "message" => self.message = format!("{value:?}"),
            _ => {}
        }
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Seen {
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        self.0.lock().unwrap().push(Record {
            level: *event.metadata().level(),
            target: event.metadata().target().to_owned(),
            logger: fields.logger,
            message: fields.message,
            span: ctx.event_span(event).map(|s| s.name().to_owned()),
        });
    }
}

impl Seen {
    fn python(&self) -> Vec<Record> {
        let all = self.0.lock().unwrap();
        all.iter()
            .filter(|r| r.target == "pybundle::python")
            .cloned()
            .collect()
    }
}

fn record(level: Level, logger: &str, message: &str, span: &str) -> Record {
    Record {
        level,
        target: "pybundle::python".into(),
        logger: logger.into(),
        message: message.into(),
        span: Some(span.into()),
    }
}

#[test]
fn worker_log_records_become_events_in_the_callers_span() {
    let seen = Seen::default();
    let subscriber = tracing_subscriber::registry().with(seen.clone());
    tracing::subscriber::with_default(subscriber, || {
        let env = env_for(&testkit::pyenv::host_python());
        let w = tracing::info_span!("service").in_scope(|| {
            env.worker(["wlog"])
                .forward_logging(Level::INFO)
                .forward_stderr(false)
                .start()
                .unwrap()
        });
        let n: i64 = tracing::info_span!("request", id = 7)
            .in_scope(|| w.call("wlog.work", &(3,)))
            .unwrap();
        assert_eq!(n, 3);
        assert_eq!(
            seen.python(),
            [
                record(Level::INFO, "wlog.model", "working on 3", "request"),
                record(Level::WARN, "wlog.model", "careful with that", "request"),
            ]
        );
        // From a call awaited elsewhere the span still comes along: the worker's own thread
        // reads this one (a submitted call, waited for later).
        seen.0.lock().unwrap().clear();
        let handle = tracing::info_span!("batch")
            .in_scope(|| w.submit::<String>("wlog.fail_logged", &()))
            .unwrap();
        assert_eq!(handle.wait().unwrap(), "logged");
        let records = seen.python();
        assert_eq!(records.len(), 1, "{records:?}");
        assert_eq!(
            (records[0].level, records[0].span.as_deref()),
            (Level::ERROR, Some("batch"))
        );
        assert!(
            records[0].message.starts_with("lookup failed\nTraceback")
                && records[0].message.contains("KeyError: 'missing'"),
            "{}",
            records[0].message
        );
        // A thread outside any call logs into the span the worker was started in.
        seen.0.lock().unwrap().clear();
        w.call::<String>("wlog.from_a_thread", &()).unwrap();
        assert_eq!(
            seen.python(),
            [record(
                Level::ERROR,
                "wlog.thread",
                "from a thread",
                "service"
            )]
        );
    });
}

#[test]
fn without_forwarding_no_record_arrives_and_scripts_forward_too() {
    let seen = Seen::default();
    let subscriber = tracing_subscriber::registry().with(seen.clone());
    tracing::subscriber::with_default(subscriber, || {
        let env = env_for(&testkit::pyenv::host_python());
        let w = env.worker(["wlog"]).forward_stderr(false).start().unwrap();
        tracing::info_span!("request").in_scope(|| w.call::<i64>("wlog.work", &(1,)).unwrap());
        assert_eq!(seen.python(), []);
        // Python's own last-resort handler still printed the warning to stderr.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !w.stderr_tail().contains("careful with that") {
            assert!(std::time::Instant::now() < deadline, "{}", w.stderr_tail());
            std::thread::sleep(std::time::Duration::from_millis(10));
        }

        let out = tracing::info_span!("job")
            .in_scope(|| {
                env.script("logs")
                    .forward_logging(Level::DEBUG)
                    .run::<String>()
            })
            .unwrap();
        assert_eq!(out.reply, "ok");
        assert_eq!(
            seen.python(),
            [
                record(Level::DEBUG, "script.logs", "debug from a script", "job"),
                record(Level::INFO, "script.logs", "info from a script", "job"),
            ]
        );
    });
}
