//! The command line's shape: parsing, help text, output formats.
use super::*;

#[test]
fn segments() {
    assert_eq!(crate::percent::encode("a b/c"), "a%20b%2Fc");
}

/// Every command and every argument says what it is for in `--help`.
#[test]
fn every_command_and_argument_has_help() {
    fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if id != "help" && id != "version" && arg.get_help().is_none() {
                missing.push(format!("{path} <{id}>"));
            }
        }
        for sub in cmd.get_subcommands() {
            let p = format!("{path} {}", sub.get_name());
            if sub.get_name() != "help" && sub.get_about().is_none() {
                missing.push(p.clone());
            }
            walk(sub, &p, missing);
        }
    }
    let mut missing = Vec::new();
    walk(
        &<Cli as clap::CommandFactory>::command(),
        "realmctl",
        &mut missing,
    );
    assert!(missing.is_empty(), "without help text: {missing:#?}");
}

#[test]
fn output_json_and_completions_parse() {
    let cli = Cli::try_parse_from(["realmctl", "tenant", "list", "-o", "json"]).expect("parse");
    assert!(cli.output == Output::Json && !cli.json);
    let cli = Cli::try_parse_from(["realmctl", "completions", "bash"]).expect("parse");
    assert!(matches!(cli.command, Command::Completions { .. }));
    assert!(Cli::try_parse_from(["realmctl", "tenant", "list", "-o", "yaml"]).is_err());
}

#[test]
fn cli_parses() {
    let cli = Cli::try_parse_from([
        "realmctl",
        "--json",
        "tenant",
        "create",
        "acme",
        "--host",
        "acme.test",
        "--upstream",
        "app",
        "--wait",
    ])
    .expect("parse");
    let Command::Tenant(TenantCmd::Create { id, fields }) = cli.command else {
        panic!("wrong command");
    };
    assert_eq!(id, "acme");
    let body = fields.body().expect("body");
    assert_eq!(body["hosts"], json!(["acme.test"]));
    assert_eq!(body["routes"][0]["upstream"], "app");
    assert!(cli.json && fields.wait);
}
