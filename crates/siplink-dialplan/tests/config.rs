//! Loading a plan from TOML (`PlanConfig`), as the `dialplan` example does.
#![cfg(feature = "serde")]

use siplink_dialplan::{ConnectionConfig, Error, Limits, MatchMode, PlanConfig};

const PLAN: &str = r#"
# Connections are tried in order.
[[connection]]
name = "alice-pbx"
patterns = ["4[0-9]{3}"]

[[connection]]
name = "pstn"
patterns = ["9(0[0-9]+)", "^0([0-9]{9,10})$", '\+[1-9][0-9]+']
rewrite  = ["$1",         "+44$1",            ""]

[[connection]]
name = "no-patterns-yet"
patterns = []
"#;

fn line(config: &PlanConfig, mode: MatchMode, number: &str) -> String {
    let plan = config.build(mode, Limits::default()).unwrap();
    match plan.lookup(number) {
        Some(route) => format!("{number} -> {route}"),
        None => format!("{number} -> no route"),
    }
}

#[test]
fn parses_connections_in_order() {
    let config = PlanConfig::from_toml(PLAN).unwrap();
    assert_eq!(
        config.connections,
        [
            ConnectionConfig {
                name: "alice-pbx".into(),
                patterns: vec!["4[0-9]{3}".into()],
                rewrite: vec![],
            },
            ConnectionConfig {
                name: "pstn".into(),
                patterns: vec![
                    "9(0[0-9]+)".into(),
                    "^0([0-9]{9,10})$".into(),
                    r"\+[1-9][0-9]+".into()
                ],
                rewrite: vec!["$1".into(), "+44$1".into(), "".into()],
            },
            ConnectionConfig {
                name: "no-patterns-yet".into(),
                patterns: vec![],
                rewrite: vec![],
            },
        ]
    );
    let plan = config
        .build(MatchMode::FullMatch, Limits::default())
        .unwrap();
    assert_eq!(
        plan.connections().map(String::as_str).collect::<Vec<_>>(),
        ["alice-pbx", "pstn", "no-patterns-yet"]
    );
    assert_eq!(plan.pattern_count(), 4);
}

#[test]
fn routes_print_as_the_example_tool_prints_them() {
    let config = PlanConfig::from_toml(PLAN).unwrap();
    let full = MatchMode::FullMatch;
    assert_eq!(
        line(&config, full, "4711"),
        "4711 -> alice-pbx (pattern 1: 4[0-9]{3}) as 4711"
    );
    assert_eq!(
        line(&config, full, "902081230958"),
        "902081230958 -> pstn (pattern 1: 9(0[0-9]+)) as 02081230958"
    );
    assert_eq!(
        line(&config, full, "02081230958"),
        "02081230958 -> pstn (pattern 2: ^0([0-9]{9,10})$) as +442081230958"
    );
    // An empty template means no rewrite: the number goes out as dialled.
    assert_eq!(
        line(&config, full, "+4930123"),
        r"+4930123 -> pstn (pattern 3: \+[1-9][0-9]+) as +4930123"
    );
    assert_eq!(line(&config, full, "14000"), "14000 -> no route");
    assert_eq!(
        line(&config, MatchMode::Search, "14000"),
        "14000 -> alice-pbx (pattern 1: 4[0-9]{3}) as 14000"
    );
}

#[test]
fn empty_file_is_an_empty_plan() {
    let config = PlanConfig::from_toml("").unwrap();
    assert!(config.connections.is_empty());
    let plan = config
        .build(MatchMode::FullMatch, Limits::default())
        .unwrap();
    assert_eq!(plan.connection_count(), 0);
    assert!(plan.lookup("4711").is_none());
}

#[test]
fn malformed_files_are_config_errors_with_location() {
    let cases = [
        // typo in a key: must not silently drop the patterns
        (
            "[[connection]]\nname = \"x\"\npattern = [\"1\"]\n",
            "unknown field `pattern`",
        ),
        (
            "[[connection]]\npatterns = [\"1\"]\n",
            "missing field `name`",
        ),
        ("[[connection]]\nname = \"x\"\n", "missing field `patterns`"),
        (
            "[[connection]]\nname = \"x\"\npatterns = [\"1\"\n",
            "line 3",
        ),
        (
            "[[connection]]\nname = \"x\"\npatterns = [1]\n",
            "invalid type",
        ),
        (
            "[connection]\nname = \"x\"\npatterns = []\n",
            "invalid type",
        ),
        (
            "[[connections]]\nname = \"x\"\npatterns = []\n",
            "unknown field `connections`",
        ),
    ];
    for (text, expected) in cases {
        match PlanConfig::from_toml(text) {
            Err(Error::Config { message }) => {
                assert!(message.contains(expected), "{text:?}: {message}");
            }
            other => panic!("{text:?}: {other:?}"),
        }
    }
}

#[test]
fn rewrite_list_must_match_patterns() {
    let text = "[[connection]]\nname = \"a\"\npatterns = [\"1\"]\n\
                [[connection]]\nname = \"b\"\npatterns = [\"1\", \"2\"]\nrewrite = [\"x\"]\n";
    let config = PlanConfig::from_toml(text).unwrap();
    let err = config
        .build(MatchMode::FullMatch, Limits::default())
        .unwrap_err();
    assert_eq!(
        err,
        Error::Config {
            message: "connection 2 (\"b\") has 2 patterns but 1 rewrite \
                      (give one per pattern, \"\" for none)"
                .into()
        }
    );
}

#[test]
fn build_errors_name_the_connection_from_the_file() {
    let text = "[[connection]]\nname = \"ok\"\npatterns = [\"1\"]\n\
                [[connection]]\nname = \"pstn\"\npatterns = [\"0[0-9]+\", \"4[0-9\"]\n";
    let err = PlanConfig::from_toml(text)
        .unwrap()
        .build(MatchMode::FullMatch, Limits::default())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "connection \"pstn\", pattern 2 `4[0-9`: unclosed character class (at offset 1)"
    );

    let text = "[[connection]]\nname = \"uk\"\npatterns = [\"0([0-9]+)\"]\nrewrite = [\"+44$2\"]\n";
    let err = PlanConfig::from_toml(text)
        .unwrap()
        .build(MatchMode::FullMatch, Limits::default())
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidRewrite { ref connection, index: 1, .. } if connection == "uk")
    );
}

#[test]
fn to_builder_lets_callers_set_options() {
    let config = PlanConfig::from_toml(PLAN).unwrap();
    let plan = config
        .to_builder()
        .unwrap()
        .match_mode(MatchMode::Search)
        .limits(Limits::default().with_max_number_len(4))
        .build()
        .unwrap();
    assert_eq!(plan.match_mode(), MatchMode::Search);
    assert_eq!(plan.lookup("x4711").map(|r| r.connection().clone()), None);
    assert_eq!(
        plan.lookup("4711").map(|r| r.connection().clone()),
        Some("alice-pbx".to_string())
    );
}
