//! `cargo test` of the example: the script's reply, through the same API as the program.
//! Without a bundle (plain `cargo test`) this runs in development mode, against the pixi
//! environment `cargo pybundle build` installed; under `cargo pybundle test`, against the bundle.

#[test]
fn the_script_greets_by_name() {
    let env = pybundle_runtime::Bundle::embedded()
        .and_then(|b| b.ready())
        .expect("a bundle or a development environment");
    let reply: serde_json::Value = env
        .script("hello")
        .input(&serde_json::json!({ "name": "tests" }))
        .run()
        .expect("hello.py replies")
        .reply;
    assert_eq!(reply["greeting"], "hello, tests", "{reply}");
}
