//! Each argument form of a worker call, against the host's CPython: positional (a tuple),
//! none, one value whatever its shape, keyword (`Kwargs`, `kwargs`, `kwarg`), both at once,
//! byte buffers in both; and the functions a worker serves (exports).

use std::collections::BTreeMap;

use pybundle_runtime::{Buffer, Error, Kwargs, Worker};
use serde::Serialize;
use serde_json::{json, Value};

use crate::script::env_for;

fn worker(modules: &[&str]) -> Worker {
    env_for(&testkit::pyenv::host_python())
        .worker(modules.iter().copied())
        .forward_stderr(false)
        .start()
        .unwrap()
}

#[derive(Serialize)]
struct Fit {
    x: Vec<f64>,
    scale: f64,
}

#[derive(Serialize)]
struct Scale {
    scale: f64,
    offset: f64,
}

#[test]
fn a_tuple_is_the_positional_arguments_and_unit_is_none() {
    let w = worker(&["wargs"]);
    let shown: Value = w.call("wargs.show", &(1, "two", [3.5])).unwrap();
    assert_eq!(shown["args"], json!([1, "two", [3.5]]));
    assert_eq!(shown["kwargs"], json!({}));
    let shown: Value = w.call("wargs.show", &()).unwrap();
    assert_eq!(shown["args"], json!([]));
    let shown: Value = w.call("wargs.show", &(vec![1, 2],)).unwrap();
    assert_eq!(shown["args"], json!([[1, 2]]));
}

#[test]
fn any_other_value_is_one_argument() {
    let w = worker(&["wargs"]);
    // A Vec is one list (it used to be unpacked, and raised TypeError).
    assert_eq!(w.call::<f64>("wargs.total", &vec![1.0, 2.5]).unwrap(), 3.5);
    // A map, a struct, a JSON object or array: one dict or list.
    let shown: Value = w.call("wargs.show", &json!({"a": 1})).unwrap();
    assert_eq!(
        (&shown["args"], &shown["kwargs"]),
        (&json!([{"a": 1}]), &json!({}))
    );
    let shown: Value = w.call("wargs.show", &BTreeMap::from([("k", 2)])).unwrap();
    assert_eq!(shown["args"], json!([{"k": 2}]));
    let shown: Value = w
        .call(
            "wargs.show",
            &Scale {
                scale: 2.0,
                offset: 0.5,
            },
        )
        .unwrap();
    assert_eq!(shown["args"], json!([{"scale": 2.0, "offset": 0.5}]));
    let shown: Value = w.call("wargs.show", &json!([1, 2])).unwrap();
    assert_eq!(shown["args"], json!([[1, 2]]));
    let shown: Value = w.call("wargs.show", "text").unwrap();
    assert_eq!(
        (&shown["args"], &shown["types"]),
        (&json!(["text"]), &json!(["str"]))
    );
}

#[test]
fn kwargs_are_said_as_such() {
    let w = worker(&["wargs"]);
    let fit = Fit {
        x: vec![1.0, 2.0],
        scale: 3.0,
    };
    assert_eq!(
        w.call::<Vec<f64>>("wargs.fit", &Kwargs(&fit)).unwrap(),
        [3.0, 6.0]
    );
    let map = BTreeMap::from([("x", json!([1, 2])), ("offset", json!(10))]);
    assert_eq!(
        w.call::<Vec<f64>>("wargs.fit", &Kwargs(map)).unwrap(),
        [11.0, 12.0]
    );
    let shown: Value = w
        .call("wargs.show", &Kwargs(json!({"a": 1, "b": [2]})))
        .unwrap();
    assert_eq!(
        (&shown["args"], &shown["kwargs"]),
        (&json!([]), &json!({"a": 1, "b": [2]}))
    );
    // Not an object: refused before anything is sent, naming what was given.
    let err = w
        .call::<Value>("wargs.show", &Kwargs(vec![1, 2]))
        .unwrap_err();
    let Error::Json { action, source, .. } = &err else {
        panic!("wrong error: {err}")
    };
    assert_eq!(*action, "cannot encode the arguments");
    assert!(source.to_string().contains("not `[1,2]`"), "{source}");
}

#[test]
fn positional_and_keyword_arguments_at_once() {
    let w = worker(&["wargs"]);
    // fit(x, scale=2, offset=1)
    let fitted: Vec<f64> = w
        .request("wargs.fit")
        .arg(&vec![1.0, 2.0])
        .kwarg("scale", &2)
        .kwarg("offset", &1)
        .call()
        .unwrap();
    assert_eq!(fitted, [3.0, 5.0]);
    let fitted: Vec<f64> = w
        .request("wargs.fit")
        .args(&(vec![1.0, 2.0],))
        .kwargs(&Scale {
            scale: 10.0,
            offset: 0.5,
        })
        .call()
        .unwrap();
    assert_eq!(fitted, [10.5, 20.5]);
    // A keyword-only parameter given positionally is Python's own TypeError.
    let err = w
        .request("wargs.fit")
        .args(&(vec![1.0], 2, 3))
        .call::<Value>()
        .unwrap_err();
    assert_eq!(
        err.python_error().map(|e| e.type_name.as_str()),
        Some("TypeError")
    );
    // Byte buffers in both kinds, numbered across the whole call.
    let got: Value = w
        .request("wargs.blobs")
        .arg(&Buffer::new(vec![1; 10]))
        .kwarg("second", &Buffer::new(vec![2; 20]))
        .call()
        .unwrap();
    assert_eq!(got, json!(["bytes", 10, "bytes", 20]));
}

#[test]
fn a_worker_serves_its_exports_and_names_them_for_an_unknown_call() {
    let w = worker(&["wargs", "wexports", "wall"]);
    assert_eq!(
        w.functions(),
        [
            "wall.basename",
            "wall.listed",
            "wargs.blobs",
            "wargs.fit",
            "wargs.show",
            "wargs.total",
            "wexports.also_served",
            "wexports.served",
        ]
    );
    assert_eq!(w.call::<i64>("wexports.served", &(1,)).unwrap(), 2);
    assert_eq!(
        w.call::<String>("wall.basename", &("/a/b.txt",)).unwrap(),
        "b.txt"
    );
    let pid = w.pid();
    for missing in [
        "wexports.helper",
        "wall.unlisted",
        "wargs._private",
        "wargs.fti",
        "os.system",
    ] {
        let err = w.call::<Value>(missing, &()).unwrap_err();
        let Error::UnknownFunction { available, .. } = &err else {
            panic!("{missing}: wrong error: {err}")
        };
        assert_eq!(available, &w.functions());
        assert!(
            err.to_string().contains(&format!("call `{missing}`")),
            "{err}"
        );
        assert!(err.to_string().contains("wargs.fit, wargs.show"), "{err}");
    }
    // Refused on this side: the process never saw them.
    assert_eq!(w.pid(), pid);
    assert_eq!(w.in_flight(), 0);
}
