//! The command line itself: help, version, usage errors.

use crate::support::*;

#[test]
fn version_and_help_on_every_command() {
    let o = run(dlenv().arg("--version"));
    assert!(o.status.success());
    assert!(stdout(&o).starts_with("dlenv "), "{}", stdout(&o));
    for args in [
        vec!["--help"],
        vec!["engine", "--help"],
        vec!["engine", "info", "--help"],
        vec!["base", "--help"],
        vec!["base", "bootstrap", "--help"],
        vec!["base", "list", "--help"],
        vec!["doctor", "--help"],
        vec!["setup", "--help"],
        vec!["resolve", "--help"],
        vec!["matrix", "--help"],
        vec!["compat", "--help"],
        vec!["compat", "info", "--help"],
        vec!["compat", "update", "--help"],
        vec!["compat", "reset", "--help"],
    ] {
        let o = run(dlenv().args(&args));
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        assert!(stdout(&o).contains("Usage:"), "{args:?}");
    }
}

#[test]
fn usage_errors_exit_2() {
    let o = run(dlenv().arg("frobnicate"));
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("unrecognized subcommand"),
        "{}",
        stderr(&o)
    );
    let o = run(dlenv().args(["engine", "info", "--no-such-flag"]));
    assert_eq!(o.status.code(), Some(2));
}
